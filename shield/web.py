"""The Flask layer: translates HTTP to the core and back, and nothing more."""

import hmac
import json
import logging
import os
import socket
import time

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException
from werkzeug.wsgi import wrap_file

from . import logs, metrics
from . import settings as settings_mod
from .admin import admin
from .delivery import Delivery, Request
from .errors import MethodNotAllowed, NotFound, ShieldError, Unauthorized
from .flight import Flight
from .headers import SECURITY_HEADERS
from .pool import TransformPool
from .projects import Registry
from .purge import Purger
from .security import ClientAddress, Guard
from .stats import Stats
from .store import Store

ERROR_HEADERS = {"Cache-Control": "no-store", **SECURITY_HEADERS}


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

    served_by = f"{socket.gethostname()}-{{pid}}"

    @app.after_request
    def security_headers(resp):
        for name, value in SECURITY_HEADERS.items():
            resp.headers.setdefault(name, value)
        if settings.served_by_header:
            resp.headers["X-Served-By"] = served_by.format(pid=os.getpid())
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

    @app.route("/<project>/<path:path>", methods=["GET", "HEAD"])
    def image(project, path):
        started = time.perf_counter()
        req = Request(
            project=project,
            path=path,
            args=request.args,
            accept=request.headers.get("Accept", ""),
            if_none_match=request.headers.get("If-None-Match", ""),
            referer=request.headers.get("Referer", ""),
            client_ip=services.client_address.of(
                request.remote_addr or "", request.headers.get("X-Forwarded-For", "")
            ),
            head=request.method == "HEAD",
        )
        status, x_cache, sent = 500, "", 0
        try:
            reply = services.delivery.serve(req)
            status, x_cache = reply.status, reply.x_cache
            sent = int(reply.headers.get("Content-Length", 0)) if status == 200 and not req.head else 0
            return to_response(reply)
        except ShieldError as exc:
            status = exc.status
            raise
        finally:
            count(services.stats, project, status, x_cache, sent)
            metrics.observe_request(status, x_cache, time.perf_counter() - started)
            logs.event(
                "request",
                method=request.method,
                path=request.path,
                status=status,
                cache=x_cache or None,
                bytes=sent,
                ms=round((time.perf_counter() - started) * 1000, 2),
            )

    return app


def count(stats, project, status, x_cache, sent):
    stats.incr(project, "requests")
    if status >= 400:
        stats.incr(project, "errors")
    elif status == 304:
        stats.incr(project, "not_modified")
    name = {"HIT": "hits", "MISS": "misses", "STALE": "stale", "BYPASS": "bypass"}.get(x_cache)
    if name:
        stats.incr(project, name)
    if sent:
        stats.incr(project, "bytes_served", sent)
    stats.maybe_flush()


def to_response(reply):
    body = reply.body
    if isinstance(body, (bytes, bytearray)):
        resp = Response(body, status=reply.status, headers=reply.headers)
        # HEAD and 304 send no body but keep the length the body would have.
        if "Content-Length" in reply.headers:
            resp.headers["Content-Length"] = reply.headers["Content-Length"]
        elif not body:
            resp.headers.remove("Content-Length")
    else:
        # A cached file: the server sends it (sendfile where it can), Python never reads it.
        resp = Response(
            wrap_file(request.environ, body),
            status=reply.status,
            headers=reply.headers,
            direct_passthrough=True,
        )
    return resp


def error_response(exc):
    headers = dict(ERROR_HEADERS)
    if exc.retry_after is not None:
        headers["Retry-After"] = str(int(exc.retry_after))
    if exc.status >= 500:
        logs.event("error", logging.WARNING, code=exc.code, status=exc.status, message=exc.message)
    return Response(
        json.dumps(exc.to_json()), status=exc.status, headers=headers, mimetype="application/json"
    )
