"""Path-style signed URLs (contract section 11):

    GET|HEAD /api/v1/<project>/<operations>/<host[:port]/path>?key=<pk>&sig=<sig>&exp=<unix>

Checked in the contract's order (key, operations, signature, expiry, project,
the key's project, rate limits, Referer, source), so a URL that fails early
spends no quota. A GET is then served by Delivery like any image URL, from
the same original cache; a HEAD never transforms: it answers from the stored
original, or from one HEAD request to the source.
"""

import hmac
import time
import urllib.parse

from .. import params
from ..answer import Reply
from ..delivery import admit
from ..errors import (
    Expired,
    ForbiddenSource,
    Gone,
    InvalidParam,
    InvalidSignature,
    NotFound,
    OriginPrivateAddress,
    ProjectNotFound,
    Unauthorized,
    cacheable,
)
from ..guard.signing import path_signature as signature
from ..headers import SECURITY_HEADERS, profile_of
from ..image import negotiate
from ..image.probe import SourceInfo
from ..sources import SourceRefused, resolve_host_path
from .exchange import account, request_of

PREFIX = "/api/v1/"
CACHE_CONTROL = "public, s-maxage=31536000, max-age=31536000, immutable"
_TYPES = {v: k for k, v in negotiate.CONTENT_TYPES.items()}


def split(path):
    """'/api/v1/<project>/<ops>/<imageUrl>' -> (project, ops, imageUrl), or None."""
    project, _, rest = path[len(PREFIX) :].partition("/")
    ops, _, image_url = rest.partition("/")
    if not project or not ops or not image_url:
        return None
    return project, ops, image_url


def answer(services, environ, path, query):
    """One path-style exchange: (status, header list, body), counted and logged like the others."""
    parts = split(path)
    project_name = parts[0] if parts else ""
    return account(services, environ, path, project_name, lambda: _serve(services, environ, parts, query))


def _raw_image_url(environ, parts):
    """The imageUrl as the client wrote it (still percent-encoded), when the server tells."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or ""
    raw = raw.split("?", 1)[0]
    prefix = f"{PREFIX}{parts[0]}/{parts[1]}/"
    return raw[len(prefix) :] if raw.startswith(prefix) else None


def _serve(services, environ, parts, query):
    started = time.perf_counter()
    if parts is None:
        raise InvalidParam("path", "expected /api/v1/<project>/<operations>/<host>/<path>")
    project_name, ops, image_url = parts
    args = params.parse_query(query)
    key_id, sig, exp = args.get("key"), args.get("sig"), args.get("exp")
    if not key_id or not sig:
        raise Unauthorized("A path-style URL needs key=<public key id> and sig.")
    key = services.keys.by_id(key_id)
    if key is None or "images" not in key.scopes:
        raise Unauthorized("This key is unknown, revoked or expired, or may not sign image URLs.")
    image_args = params.parse_ops(ops)
    if exp is not None and not (exp.isascii() and exp.isdigit() and len(exp) <= 12):
        raise InvalidParam("exp", "expected Unix seconds")
    candidates = {image_url, _raw_image_url(environ, parts)} - {None}
    given = sig.encode("utf-8", "surrogateescape")
    if not any(
        hmac.compare_digest(signature(key.secret, ops, url, exp).encode(), given) for url in candidates
    ):
        raise InvalidSignature("sig does not match this URL for this key.")
    if exp is not None and int(exp) < time.time():
        raise Expired()
    project = services.projects.get(project_name)
    if project is None or not project.enabled:
        raise ProjectNotFound(f"No project named {project_name[:63]!r}.")
    if key.project != project.name:
        raise Unauthorized("This key belongs to another project.")
    req = request_of(
        services,
        environ,
        project=project.name,
        path="",
        args=image_args,
        query=urllib.parse.urlencode(image_args),
        url_path=environ.get("PATH_INFO", ""),
        checked=True,  # the checks below replace the query-style ones
        immutable=True,  # a signed URL names its bytes for good
    )
    admit(project, req)
    services.guard.check_rate(project, req)
    services.guard.check_referer(project, req)
    try:
        req.path, req.via = resolve_host_path(project, image_url)
    except SourceRefused as exc:
        raise ForbiddenSource(f"imageUrl: {exc}") from None
    auth_ms = (time.perf_counter() - started) * 1000
    try:
        reply = _head(services, project, req) if req.head else services.delivery.serve(req)
    except OriginPrivateAddress:
        raise ForbiddenSource("imageUrl: the host resolves to a private address") from None
    total_ms = (time.perf_counter() - started) * 1000
    probe_ms = reply.extra.get("probe_ms")
    _path_style_headers(
        reply, project, req, auth_ms, probe_ms, total_ms - auth_ms - (probe_ms or 0), total_ms
    )
    return reply


def _head(services, project, req):
    """HEAD: the stored original's facts, or one HEAD to the source; never a transform."""
    transform = params.parse(
        params.with_preset(req.args, project), project.quality, project.max_width, project.max_height
    )
    klass = services.delivery.accept_class(project, req, transform)
    meta = services.delivery.originals.stored(project, req.path, req.via)
    extra = {"length_unknown": True, "probed": meta is None}
    if meta is None:
        services.guard.check_miss(project, req)  # a probe costs the origin a request
    if meta is not None:
        info = SourceInfo(**meta["info"])
        has_alpha, animated, source_type = info.has_alpha, info.animated, info.format
    else:
        started = time.perf_counter()
        try:
            probed = services.delivery.originals.origin_for(project, req.via).head(req.path)
        except (NotFound, Gone) as exc:
            services.delivery.originals.remember_missing(project, req.path, req.via, exc.status)
            cacheable(exc, project.negative_ttl)
            raise
        extra["probe_ms"] = (time.perf_counter() - started) * 1000
        source_type = _TYPES.get((probed.content_type or "").split(";")[0].strip().lower(), "jpeg")
        has_alpha, animated = source_type in ("png", "webp", "avif", "gif"), source_type == "gif"
    out = negotiate.output_format(transform.fmt, klass, has_alpha, animated)
    if transform.is_passthrough_candidate and negotiate.passthrough_ok(source_type, klass) and animated:
        out = source_type  # an animation the client shows goes as it is (a still is re-encoded when smaller)
    headers = {
        "Content-Type": "application/json" if transform.blur else negotiate.CONTENT_TYPES[out],
        "Cache-Control": "private, max-age=300" if project.private else CACHE_CONTROL,
        "X-Cache": "HIT" if meta is not None else "MISS",
        **SECURITY_HEADERS,
    }
    if not project.private:
        profile = profile_of(project)
        headers.update(profile.shared)
        headers.update(profile.cors_for(req.origin) or {})
    return Reply(200, headers, b"", headers["X-Cache"], project.name, extra)


def _path_style_headers(reply, project, req, auth_ms, probe_ms, transform_ms, total_ms):
    headers = reply.headers
    if reply.status in (200, 206, 304) and not project.private:
        headers["Cache-Control"] = CACHE_CONTROL
        vary = profile_of(project).vary  # "Accept", or "Accept, Origin" when cors_origins lists origins
        headers["Vary"] = vary + ", Referer" if project.allowed_referers else vary
    headers["X-Processing-Time"] = f"{round(total_ms)}ms"
    headers["X-Head-Fast-Path"] = "1" if req.head else "0"
    headers["X-Original-Size-Sampled"] = "1" if reply.extra.get("probed") else "0"
    timing = [f"auth;dur={auth_ms:.2f}"]
    if probe_ms is not None:
        timing.append(f"probe;dur={probe_ms:.2f}")
    timing += [f"transform;dur={max(0.0, transform_ms):.2f}", f"total;dur={total_ms:.2f}"]
    before = headers.get("Server-Timing")
    headers["Server-Timing"] = ", ".join(([before] if before else []) + timing)
