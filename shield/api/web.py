"""The HTTP layer: translates HTTP to the core and back, and nothing more.

Image GETs and HEADs, nearly all of the traffic, are answered straight from
WSGI in front of Flask (`ImageFrontDoor`): building Flask's request and
response objects cost more than the cache lookup itself. Everything else
(the admin API, /health, /metrics, other methods) goes through Flask.
"""

import hmac
import json
import logging
import os
import re
import socket
import time

from flask import Flask, Response, request
from werkzeug.datastructures import Headers
from werkzeug.exceptions import HTTPException
from werkzeug.http import remove_entity_headers
from werkzeug.wsgi import FileWrapper, wrap_file

from .. import logs, metrics
from .. import settings as settings_mod
from ..cache.flight import Flight
from ..cache.purge import Purger
from ..cache.store import Store
from ..delivery import Delivery, Request
from ..errors import MethodNotAllowed, NotFound, ShieldError, Unauthorized
from ..guard.security import ClientAddress, Guard
from ..headers import SECURITY_HEADERS
from ..pool import TransformPool
from ..projects import Registry
from ..stats import Stats
from .admin import admin

ERROR_HEADERS = {"Cache-Control": "no-store", **SECURITY_HEADERS}
IMAGE_METHODS = ("GET", "HEAD")
FILE_CHUNK = 64 * 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_STATUS_LINES = {}


class Services:
    """Everything a worker process holds: built once per app."""

    def __init__(self, settings):
        self.settings = settings
        self.store = Store(settings.cache_dir, settings.cache_max_bytes)
        self.stats = Stats(settings.state_dir)
        self.pool = TransformPool(settings.threads, settings.transform_queue)
        self.flight = Flight(os.path.join(settings.cache_dir, "locks"))
        self.projects = Registry(settings)
        self.purger = Purger(self.store, self.stats, settings.state_dir)
        self.client_address = ClientAddress(settings.trusted_proxies)
        self.delivery = Delivery(
            settings, self.store, self.stats, self.pool, self.flight, self.projects, guard=Guard(settings)
        )
        self.served_by = f"{socket.gethostname()}-{{pid}}" if settings.served_by_header else None


def create_app(config=None):
    """Build the WSGI app. `config`: a Settings, a dict shaped like the TOML file, or None (load it)."""
    if isinstance(config, settings_mod.Settings):
        settings = config
    else:
        settings = settings_mod.load(overrides=config)
    logs.configure(settings.log_level)
    services = Services(settings)
    app = Flask("shield")
    app.url_map.merge_slashes = False
    app.extensions["shield"] = services

    @app.errorhandler(ShieldError)
    def shield_error(exc):
        return error_response(exc)

    @app.errorhandler(HTTPException)
    def http_error(exc):
        if exc.code == 405:
            return error_response(MethodNotAllowed())
        if exc.code == 404:
            return error_response(NotFound("Nothing here: image URLs are /<project>/<path>."))
        err = ShieldError(exc.description)
        err.status, err.code = exc.code, (exc.name or "error").lower().replace(" ", "_")
        return error_response(err)

    @app.errorhandler(Exception)
    def unexpected(exc):
        logs.logger.exception("unhandled_error", extra={"fields": {"path": request.path}})
        return error_response(ShieldError())

    @app.after_request
    def security_headers(resp):
        for name, value in SECURITY_HEADERS.items():
            resp.headers.setdefault(name, value)
        if services.served_by:
            resp.headers["X-Served-By"] = services.served_by.format(pid=os.getpid())
        return resp

    @app.get("/health")
    def health():
        store_ok = services.store.available
        body = {"status": "ok" if store_ok else "degraded", "cache": "ok" if store_ok else "unavailable"}
        return body, 200

    @app.get("/metrics")
    def prometheus():
        if settings.metrics_token:
            given = request.headers.get("Authorization", "").partition(" ")[2].strip()
            if not hmac.compare_digest(given.encode(), settings.metrics_token.encode()):
                raise Unauthorized("Send Authorization: Bearer <metrics_token>.")
        body, content_type = metrics.exposition(services.store.volume())
        return Response(body, headers={"Content-Type": content_type, "Cache-Control": "no-store"})

    app.register_blueprint(admin)

    @app.route("/<project>/<path:path>", methods=IMAGE_METHODS)
    def image(project, path):
        # Image URLs the front door leaves to Flask (odd paths): the same exchange.
        query = request.query_string.decode(errors="replace")  # as the front door decodes it
        status, headers, body = answer_image(services, request.environ, request.path, project, path, query)
        if hasattr(body, "read"):
            return Response(wrap_file(request.environ, body), status, headers, direct_passthrough=True)
        resp = Response(body, status)
        # Set after the body, which would put its own length (0 for HEAD) in Content-Length.
        resp.headers = Headers(headers)
        return resp

    app.wsgi_app = ImageFrontDoor(app.wsgi_app, services, reserved_segments(app.url_map, "image"))
    return app


def reserved_segments(url_map, image_endpoint):
    """First path segments that belong to other routes (/v1/...), never to a project."""
    reserved = set()
    for rule in url_map.iter_rules():
        if rule.endpoint != image_endpoint:
            first = rule.rule.lstrip("/").split("/", 1)[0]
            if first and "<" not in first:
                reserved.add(first)
    return frozenset(reserved)


class ImageFrontDoor:
    """WSGI middleware: answers GET/HEAD /<project>/<path> itself, passes the rest to Flask.

    It takes exactly the requests Flask's image route would (one segment, then
    a path not starting with a slash, outside the other routes' prefixes) and
    answers them as that route does; anything unusual falls through to Flask.
    """

    def __init__(self, flask_wsgi, services, reserved):
        self.flask_wsgi = flask_wsgi
        self.services = services
        self.reserved = reserved

    def __call__(self, environ, start_response):
        if environ.get("REQUEST_METHOD") in IMAGE_METHODS:
            route = self.route(environ)
            if route is not None:
                return self.serve(environ, start_response, *route)
        return self.flask_wsgi(environ, start_response)

    def route(self, environ):
        """(path, project, rest, query) for an image URL, or None to leave it to Flask."""
        raw = environ.get("PATH_INFO") or ""
        if raw[:1] != "/" or raw[1:2] == "/":
            return None
        try:
            path = raw.encode("latin1").decode(errors="replace")
            # Bytes that are not UTF-8 become U+FFFD: such a value is a bad parameter (400)
            # or an ignored one, never a server error.
            query = environ.get("QUERY_STRING", "").encode("latin1").decode(errors="replace")
        except UnicodeError:  # not latin-1 text: not what a WSGI server hands over
            return None
        project, sep, rest = path[1:].partition("/")
        if not sep or not rest or rest[0] == "/" or project in self.reserved or _CONTROL.search(path):
            return None
        return path, project, rest, query

    def serve(self, environ, start_response, path, project, rest, query):
        status, headers, body = answer_image(self.services, environ, path, project, rest, query)
        start_response(_status_line(status), headers)
        if environ["REQUEST_METHOD"] == "HEAD":
            return []
        if hasattr(body, "read"):
            wrapper = environ.get("wsgi.file_wrapper", FileWrapper)
            return wrapper(body, FILE_CHUNK)
        return [body] if body else []


def _status_line(status):
    line = _STATUS_LINES.get(status)
    if line is None:
        from http import HTTPStatus

        line = _STATUS_LINES[status] = f"{status} {HTTPStatus(status).phrase}"
    return line


def answer_image(services, environ, path, project, rest, query):
    """One image exchange, accounted for: (status, header list, body bytes or open file).

    The query is parsed (params.parse_query) only when the answer needs it.
    """
    started = time.perf_counter()
    method = environ["REQUEST_METHOD"]
    head = method == "HEAD"
    req = Request(
        project=project,
        path=rest,
        query=query,
        accept=environ.get("HTTP_ACCEPT", ""),
        if_none_match=environ.get("HTTP_IF_NONE_MATCH", ""),
        referer=environ.get("HTTP_REFERER", ""),
        client_ip=services.client_address.of(
            environ.get("REMOTE_ADDR") or "", environ.get("HTTP_X_FORWARDED_FOR", "")
        ),
        head=head,
    )
    x_cache, sent = "", 0
    try:
        reply = services.delivery.serve(req)
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
        else:
            if "Content-Length" not in headers:
                headers["Content-Length"] = str(len(body))
            sent = 0 if head or status != 200 else int(headers["Content-Length"])
            headers = list(headers.items())
    if services.served_by:
        headers.append(("X-Served-By", services.served_by.format(pid=os.getpid())))
    count(services.stats, project, status, x_cache, sent)
    elapsed = time.perf_counter() - started
    metrics.observe_request(status, x_cache, elapsed)
    logs.line(
        "request",
        method=method,
        path=path,
        status=status,
        cache=x_cache or None,
        bytes=sent,
        ms=round(elapsed * 1000, 2),
    )
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
    headers = [("Content-Type", "application/json"), *ERROR_HEADERS.items()]
    if exc.retry_after is not None:
        headers.append(("Retry-After", str(int(exc.retry_after))))
    headers.append(("Content-Length", str(len(body))))
    if exc.status >= 500:
        logs.event("error", logging.WARNING, code=exc.code, status=exc.status, message=exc.message)
    return headers, body


def error_response(exc):
    headers, body = error_parts(exc)
    return Response(body, status=exc.status, headers=headers)
