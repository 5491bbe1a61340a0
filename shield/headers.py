"""Response headers of the contract's table, and the request's conditions, as pure functions."""

import calendar
import email.utils
import hashlib
import os
import time

IMMUTABLE_CACHE_CONTROL = "public, max-age=31536000, immutable"
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


class Profile:
    """What a project's public image answers say about caching and cross-origin use.

    Worked out once per Project (projects are immutable: a change is a new
    object), so a hit pays one dict update for all of it.
    """

    __slots__ = ("cache_control", "origins", "shared", "vary", "vary_json")

    def __init__(self, project):
        self.cache_control = (
            IMMUTABLE_CACHE_CONTROL
            if project.immutable
            else f"public, max-age={project.browser_ttl}, stale-while-revalidate=60"
        )
        any_origin = "*" in project.cors_origins
        # A listed Origin is echoed per request; everything else is the same for every answer.
        self.origins = frozenset() if any_origin else frozenset(project.cors_origins)
        self.shared = {"Cross-Origin-Resource-Policy": "cross-origin"}
        if any_origin:
            self.shared.update(CORS_ANY)
        self.vary = "Accept" if any_origin else "Accept, Origin"
        self.vary_json = None if any_origin else "Origin"

    def cors_for(self, origin):
        """The per-request CORS headers for a listed Origin, or None."""
        granted = allowed_origin(self.origins, origin)
        return {"Access-Control-Allow-Origin": granted, "Timing-Allow-Origin": granted} if granted else None


CORS_ANY = {"Access-Control-Allow-Origin": "*", "Timing-Allow-Origin": "*"}


def allowed_origin(cors_origins, origin):
    """The Access-Control-Allow-Origin a project's cors_origins gives this Origin, or None."""
    if "*" in cors_origins:
        return "*"
    return origin if origin and origin in cors_origins else None


def profile_of(project):
    """The project's Profile, made on first use and kept on the Project."""
    try:
        return project._http
    except AttributeError:
        profile = Profile(project)
        object.__setattr__(project, "_http", profile)
        return profile


def image_headers(
    *,
    content_type,
    length,
    etag,
    x_cache,
    cache_status_value,
    timing,
    tags,
    private=False,
    smart_crop=False,
    profile=None,
    cache_control=None,
    modified=0,
):
    """Every header of a 200 image answer; `profile` (Profile) for a public one."""
    json_answer = content_type == "application/json"
    headers = {
        "Content-Type": content_type,
        "Content-Length": str(length),
        "Cache-Control": PRIVATE_CACHE_CONTROL
        if private
        else (cache_control or (profile.cache_control if profile else IMMUTABLE_CACHE_CONTROL)),
        "ETag": etag,
        "X-Cache": x_cache,
        "Cache-Status": cache_status_value,
        "Server-Timing": timing,
        "Accept-Ranges": "bytes",
    }
    public = profile is not None and not private
    if json_answer:  # a placeholder's JSON does not depend on Accept
        vary = profile.vary_json if public else None
    else:
        vary = profile.vary if public else "Accept"
    if vary:
        headers["Vary"] = vary
    if modified:
        headers["Last-Modified"] = http_date(modified)
    if tags:
        headers["Cache-Tag"] = ",".join(tags)
    if smart_crop:
        headers["X-Smart-Crop"] = "ok"
    if public:
        headers.update(profile.shared)
    headers.update(SECURITY_HEADERS)
    return headers


# -- dates and the request's conditions (RFC 9110 section 13)


def http_date(ts):
    return email.utils.formatdate(ts, usegmt=True)


def parse_http_date(text):
    """Unix seconds of an HTTP date, or None when it is not one."""
    if not text or len(text) > 64:
        return None
    parsed = email.utils.parsedate(text)
    if parsed is None:
        return None
    try:
        return calendar.timegm(parsed)
    except (ValueError, OverflowError):
        return None


def modified_of(meta):
    """An original's Last-Modified in Unix seconds: the origin's, else when it was fetched."""
    found = meta.get("modified")
    if found is None:
        found = parse_http_date(meta.get("last_modified"))
        if found is None or found > time.time():
            found = meta.get("fetched_at") or time.time()
        found = int(found)
    return found


def _strong_match(header, etag):
    if header.strip() == "*":
        return True
    return any(c.strip() == etag for c in header.split(",") if not c.strip().startswith("W/"))


def precondition(req, etag, modified):
    """200, 304 or 412 for a GET/HEAD with this validator pair (RFC 9110 section 13.2.2)."""
    if req.if_match:
        if not _strong_match(req.if_match, etag):
            return 412
    elif req.if_unmodified_since:
        since = parse_http_date(req.if_unmodified_since)
        if since is not None and modified > since:
            return 412
    if req.if_none_match:
        return 304 if etag_matches(req.if_none_match, etag) else 200
    if req.if_modified_since:
        since = parse_http_date(req.if_modified_since)
        if since is not None and modified <= since:
            return 304
    return 200


def byte_range(req, size, etag, modified):
    """(start, end) inclusive for a single satisfiable `Range`, "unsatisfiable", or None for the whole body.

    Multiple ranges, other units and malformed values are ignored (the whole
    body, as RFC 9110 allows); a failing If-Range means the whole body too.
    """
    header = req.range
    if not header or req.head:
        return None
    if req.if_range:
        if_range = req.if_range.strip()
        if if_range.startswith(('"', "W/")):
            if if_range != etag:
                return None
        elif parse_http_date(if_range) != modified:
            return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash or not (first.isdigit() or last.isdigit()) or len(spec) > 40:
        return None
    if not first:  # the last N bytes
        if not last.isdigit():
            return None
        n = int(last)
        if n == 0:
            return "unsatisfiable"
        return max(0, size - n), size - 1
    if not first.isdigit() or (last and not last.isdigit()):
        return None
    start = int(first)
    end = int(last) if last else size - 1
    if start >= size:
        return "unsatisfiable"
    if end < start:
        return None
    return start, min(end, size - 1)


class FilePart:
    """`length` bytes of an open file from its current position: sent by sendfile, or read."""

    def __init__(self, fh, start, length):
        self._fh = fh
        fh.seek(start, os.SEEK_CUR)
        self._end = fh.tell() + length
        self._left = length

    def fileno(self):
        return self._fh.fileno()

    def tell(self):
        return self._fh.tell()

    def seek(self, offset, whence=os.SEEK_SET):
        """As a file's seek (sendfile fallbacks seek before they read); the part's end stays."""
        position = self._fh.seek(offset, whence)
        self._left = max(0, self._end - position)
        return position

    def read(self, size=-1):
        if self._left <= 0:
            return b""
        size = self._left if size is None or size < 0 else min(size, self._left)
        data = self._fh.read(size)
        self._left -= len(data)
        return data

    def close(self):
        self._fh.close()


def not_modified_headers(full):
    """A 304 keeps the validators and caching headers, not the body's."""
    return {k: v for k, v in full.items() if k not in ("Content-Type", "Content-Length")}


def strong_etag(body):
    """A strong validator from the bytes themselves: equal bytes, equal ETag, in every worker."""
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'
