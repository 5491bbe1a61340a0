"""One image exchange, accounted for: the request's parts in, (status, headers, body) out.

Shared by the WSGI front door, Flask's image route and the edge API's resize,
so every image answer is counted, measured and logged the same way.
"""

import json
import logging
import re
import time

from flask import Response, request
from werkzeug.datastructures import Headers
from werkzeug.http import remove_entity_headers
from werkzeug.wsgi import wrap_file

from .. import logs, metrics, pid
from ..answer import Reply
from ..delivery import Request
from ..errors import MethodNotAllowed, ProjectNotFound, ShieldError
from ..headers import SECURITY_HEADERS, allowed_origin

ERROR_HEADERS = tuple(SECURITY_HEADERS.items())
# /c/<10 characters of Crockford base32>.<ext>: an edge API asset (contract section 8).
ASSET_FILE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{10}\.[a-z0-9]{1,5}$")


def answer_image(services, environ, path, project, rest, query):
    """One image exchange, accounted for: (status, header list, body bytes or open file).

    The query is parsed (params.parse_query) only when the answer needs it.
    """
    req = request_of(services, environ, project, rest, query, path)
    if project == "c" and ASSET_FILE.match(rest):
        req.asset = rest
    return account(services, environ, path, project, lambda: services.delivery.serve(req))


def request_of(services, environ, project, path, query, url_path, args=None, checked=False, immutable=False):
    """A delivery Request with every header the image answer depends on."""
    get = environ.get
    method = environ["REQUEST_METHOD"]
    inm, im, ius, ims, rng, ifr = (
        get("HTTP_IF_NONE_MATCH", ""),
        get("HTTP_IF_MATCH", ""),
        get("HTTP_IF_UNMODIFIED_SINCE", ""),
        get("HTTP_IF_MODIFIED_SINCE", ""),
        get("HTTP_RANGE", ""),
        get("HTTP_IF_RANGE", ""),
    )
    return Request(  # positional, in the dataclass's field order: this runs on every hit
        project,
        path,
        args,
        query,
        get("HTTP_ACCEPT", ""),
        inm,
        get("HTTP_REFERER", ""),
        services.client_address.of(get("REMOTE_ADDR") or "", get("HTTP_X_FORWARDED_FOR", "")),
        method == "HEAD",
        checked,
        None,
        None,
        method,
        services.client_address.scheme(environ),
        get("HTTP_HOST") or get("SERVER_NAME", ""),
        url_path,
        get("HTTP_ORIGIN", ""),
        im,
        ius,
        ims,
        rng,
        ifr,
        immutable,
        bool(inm or im or ius or ims or rng),
    )


def answer_options(services, environ, path, project_name):
    """OPTIONS on an image URL: 204 with Allow, and a CORS preflight's answer when it is one."""

    def produce():
        if project_name == "c":  # edge API assets: public to any page
            allowed, cors = "GET, HEAD, OPTIONS", ("*",)
        else:
            project = services.projects.get(project_name)
            if project is None or not project.enabled:
                raise ProjectNotFound(f"No project named {project_name!r}.")
            if "OPTIONS" not in project.allowed_methods:
                raise MethodNotAllowed(project.allowed_methods)
            allowed, cors = ", ".join(project.allowed_methods), project.cors_origins
        headers = {"Allow": allowed, "Cache-Control": "no-store", **SECURITY_HEADERS}
        origin = environ.get("HTTP_ORIGIN")
        granted = allowed_origin(cors, origin) if origin else None
        if granted and environ.get("HTTP_ACCESS_CONTROL_REQUEST_METHOD"):
            headers["Access-Control-Allow-Origin"] = granted
            if granted != "*":
                headers["Vary"] = "Origin"
            headers["Access-Control-Allow-Methods"] = allowed
            asked = environ.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS", "")
            if asked and len(asked) <= 1024:
                # Range, If-None-Match and the like: an image URL reads no header it could be harmed by.
                headers["Access-Control-Allow-Headers"] = asked
            headers["Access-Control-Max-Age"] = "86400"
        return Reply(204, headers, b"", "", project_name, {"length_unknown": True})

    return account(services, environ, path, project_name, produce)


def answer_method_not_allowed(services, environ, path, project_name):
    """Any other method on an image URL: 405 with the project's Allow."""

    def produce():
        project = services.projects.get(project_name)
        raise MethodNotAllowed(project.allowed_methods if project is not None else ("GET", "HEAD", "OPTIONS"))

    return account(services, environ, path, project_name, produce)


def account(services, environ, path, project, produce):
    """Run produce() -> Reply and answer it, counted, measured and logged: (status, headers, body)."""
    started = time.perf_counter()
    method = environ["REQUEST_METHOD"]
    head = method == "HEAD"
    x_cache, sent = "", 0
    try:
        reply = produce()
    except ShieldError as exc:
        status = exc.status
        headers, body = error_parts(exc)
    except Exception:
        logs.logger.exception("unhandled_error", extra={"fields": {"path": path}})
        status = 500
        headers, body = error_parts(ShieldError())
    else:
        status, x_cache, body = reply.status, reply.x_cache, reply.body
        headers = reply.headers
        if head and hasattr(body, "close"):
            body.close()
            body = b""
        if status == 304:
            headers = list(headers.items())
            remove_entity_headers(headers)
        elif reply.extra.get("length_unknown"):
            headers = list(headers.items())  # a HEAD answered without making the body
        else:
            if "Content-Length" not in headers:
                headers["Content-Length"] = str(len(body))
            sent = 0 if head or status not in (200, 206) else int(headers["Content-Length"])
            headers = list(headers.items())
    if services.served_by:
        headers.append(("X-Served-By", services.served_by.format(pid=pid.current())))
    count(services.stats, project, status, x_cache, sent)
    elapsed = time.perf_counter() - started
    metrics.observe_request(status, x_cache, elapsed)
    logs.request(method, path, status, x_cache, sent, round(elapsed * 1000, 2))
    return status, headers, body


_CACHE_COUNTERS = {"HIT": "hits", "MISS": "misses", "STALE": "stale", "BYPASS": "bypass"}


def count(stats, project, status, x_cache, sent):
    counts = [("requests", 1)]
    if status >= 400:
        counts.append(("errors", 1))
    elif status == 304:
        counts.append(("not_modified", 1))
    name = _CACHE_COUNTERS.get(x_cache)
    if name:
        counts.append((name, 1))
    if sent:
        counts.append(("bytes_served", sent))
    stats.incr_many(project, counts)
    stats.maybe_flush()


def error_parts(exc):
    """The contract's JSON error: (header list, body)."""
    body = json.dumps(exc.to_json()).encode()
    headers = [("Content-Type", "application/json"), ("Cache-Control", exc.cache_control), *ERROR_HEADERS]
    if exc.retry_after is not None:
        headers.append(("Retry-After", str(int(exc.retry_after))))
    headers.extend(exc.headers)
    headers.append(("Content-Length", str(len(body))))
    if exc.status >= 500:
        logs.event("error", logging.WARNING, code=exc.code, status=exc.status, message=exc.message)
    return headers, body


def error_response(exc):
    headers, body = error_parts(exc)
    return Response(body, status=exc.status, headers=headers)


def flask_response(answer):
    """An answer_image result as a Flask response (file bodies streamed)."""
    status, headers, body = answer
    if hasattr(body, "read"):
        return Response(wrap_file(request.environ, body), status, headers, direct_passthrough=True)
    resp = Response(body, status)
    # Set after the body, which would put its own length (0 for HEAD) in Content-Length.
    resp.headers = Headers(headers)
    return resp
