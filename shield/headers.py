"""Response headers of the contract's table, as pure functions."""

import hashlib

PUBLIC_CACHE_CONTROL = "public, max-age=31536000, immutable"
PRIVATE_CACHE_CONTROL = "private, max-age=300"
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'",
}


def cache_status(result, stored=False, fwd_status=None):
    """RFC 9211 Cache-Status for one outcome: HIT, MISS, STALE or BYPASS."""
    if result == "HIT":
        return "shield; hit"
    if result == "STALE":
        status = f"; fwd-status={fwd_status}" if fwd_status else ""
        return f"shield; fwd=stale{status}; detail=stale-if-error"
    if result == "BYPASS":
        return "shield; fwd=bypass"
    return "shield; fwd=miss" + ("; stored" if stored else "")


def server_timing(result, cache_ms, origin_ms=None, process=None, process_ms=None):
    parts = [f'cache;desc="{result}";dur={cache_ms:.2f}']
    if origin_ms is not None:
        parts.append(f"origin;dur={origin_ms:.2f}")
    if process is not None:
        parts.append(f'process;desc="{process}";dur={(process_ms or 0):.2f}')
    return ", ".join(parts)


def etag_matches(if_none_match, etag):
    """Weak comparison, as RFC 9110 asks of If-None-Match."""
    if not if_none_match or not etag:
        return False
    if if_none_match.strip() == "*":
        return True
    want = etag[2:] if etag.startswith("W/") else etag
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate.startswith("W/"):
            candidate = candidate[2:]
        if candidate == want:
            return True
    return False


def image_headers(
    *, content_type, length, etag, x_cache, cache_status_value, timing, tags, private=False, smart_crop=False
):
    headers = {
        "Content-Type": content_type,
        "Content-Length": str(length),
        "Cache-Control": PRIVATE_CACHE_CONTROL if private else PUBLIC_CACHE_CONTROL,
        "Vary": "Accept",
        "ETag": etag,
        "X-Cache": x_cache,
        "Cache-Status": cache_status_value,
        "Server-Timing": timing,
    }
    if tags:
        headers["Cache-Tag"] = ",".join(tags)
    if smart_crop:
        headers["X-Smart-Crop"] = "ok"
    headers.update(SECURITY_HEADERS)
    return headers


def not_modified_headers(full):
    """A 304 keeps the validators and caching headers, not the body's."""
    return {k: v for k, v in full.items() if k not in ("Content-Type", "Content-Length")}


def strong_etag(body):
    """A strong validator from the bytes themselves: equal bytes, equal ETag, in every worker."""
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'
