"""The HTTP layer: translates HTTP to the core and back, and nothing more.

Image GETs and HEADs, nearly all of the traffic, are answered straight from
WSGI in front of Flask (`ImageFrontDoor`): building Flask's request and
response objects cost more than the cache lookup itself. Everything else
(the admin API, /health, /metrics, other methods) goes through Flask.
"""

import hmac
import os
import re
import socket

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException
from werkzeug.wsgi import FileWrapper

from .. import logs, metrics, pid
from .. import settings as settings_mod
from ..assets import AssetStore
from ..cache.flight import Flight
from ..cache.purge import Purger
from ..cache.store import Store
from ..delivery import Delivery
from ..errors import (
    HeadersTooLarge,
    MethodNotAllowed,
    NotFound,
    NotReady,
    ShieldError,
    Unauthorized,
    UriTooLong,
)
from ..guard.keys import KeyRing
from ..guard.security import ClientAddress, Guard
from ..headers import SECURITY_HEADERS
from ..optimize import Optimizer
from ..origin import gevent_patched
from ..pool import TransformPool
from ..projects import Registry
from ..settings import RESERVED_NAMES
from ..stats import Stats
from ..uploads import SWEEP_EVERY, Uploads
from . import path_urls
from .admin import admin
from .dashboard import dashboard
from .distributions import cdn
from .edge import edge
from .exchange import (
    account,
    answer_image,
    answer_method_not_allowed,
    answer_options,
    error_response,
    flask_response,
)
from .keys import keys_api
from .uploads import uploads_api

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
        self.pool = TransformPool(settings.threads, settings.transform_queue, settings.transform_timeout)
        self.flight = Flight(os.path.join(settings.cache_dir, "locks"))
        self.projects = Registry(settings)
        self.assets = AssetStore(settings.assets_path)
        self.keys = KeyRing(settings.state_dir)
        self.purger = Purger(self.store, self.stats, settings.state_dir, self.assets)
        self.client_address = ClientAddress(settings.trusted_proxies)
        self.guard = Guard(settings)
        self.delivery = Delivery(
            settings,
            self.store,
            self.stats,
            self.pool,
            self.flight,
            self.projects,
            self.assets,
            guard=self.guard,
        )
        self.uploads = Uploads(settings, self.assets, self.pool, self.store)
        self._background_pid = None
        self.optimizer = Optimizer(
            settings, self.delivery.originals, self.pool, self.flight, self.assets, self.stats
        )
        self.served_by = f"{socket.gethostname()}-{{pid}}" if settings.served_by_header else None
        self.cluster = None
        self.fleet_stats = self.stats  # /v1/stats: this node, or every node in cluster mode
        if settings.redis_url:
            from ..cluster import node as cluster_node

            self.cluster = cluster_node.Node(settings, self)
            self.purger = self.cluster.purger
            self.fleet_stats = self.cluster.stats
            if settings.served_by_header:
                self.served_by = f"{self.cluster.node_id}-{{pid}}"

    def start_background(self):
        """Once per worker process, under gevent: the loop that sweeps expired temporary uploads."""
        self._background_pid = pid.current()
        if self.cluster is not None:
            self.cluster.start()
        if not gevent_patched():
            return
        import gevent

        def loop():
            while True:
                gevent.sleep(SWEEP_EVERY)
                self.uploads.maybe_sweep()

        gevent.spawn(loop)

    def delete_project(self, name):
        """Delete a project with its keys and assets: a new one of that name starts with neither."""
        if not self.projects.delete(name):
            return False
        self.keys.revoke_project(name)
        for asset in self.assets.all(name):
            self.assets.delete(asset)
        return True


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
            allowed = sorted(getattr(exc, "valid_methods", None) or ()) or ["GET", "HEAD"]
            return error_response(MethodNotAllowed(allowed))
        if exc.code == 404:
            return error_response(NotFound("Nothing here: image URLs are /<project>/<path>."))
        err = ShieldError(exc.description)
        err.status, err.code = exc.code, (exc.name or "error").lower().replace(" ", "_")
        return error_response(err)

    @app.errorhandler(Exception)
    def unexpected(exc):
        logs.logger.exception("unhandled_error", extra={"fields": {"path": request.path}})
        return error_response(ShieldError())

    @app.before_request
    def cluster_writes():
        if services.cluster is not None:
            services.cluster.check_writable(request.method, request.path)

    @app.after_request
    def security_headers(resp):
        for name, value in SECURITY_HEADERS.items():
            resp.headers.setdefault(name, value)
        if services.served_by:
            resp.headers["X-Served-By"] = services.served_by.format(pid=pid.current())
        return resp

    @app.get("/health")
    def health():
        # Still 200 when degraded: images are served from the origin meanwhile.
        cache = services.store.health()
        return {"status": "ok" if cache == "ok" else "degraded", "cache": cache}, 200

    @app.get("/health/ready")
    def ready():
        """200 when this node serves: always on one node; in a cluster, once it has replayed the log."""
        if services.cluster is None:
            return {"status": "ready"}, 200
        if not services.cluster.ready():
            raise NotReady()
        return {"status": "ready", "node": services.cluster.node_id, "epoch": services.cluster.epoch()}, 200

    @app.get("/metrics")
    def prometheus():
        if settings.metrics_token:
            given = request.headers.get("Authorization", "").partition(" ")[2].strip()
            if not hmac.compare_digest(given.encode(), settings.metrics_token.encode()):
                raise Unauthorized("Send Authorization: Bearer <metrics_token>.")
        body, content_type = metrics.exposition(services.store.volume())
        return Response(body, headers={"Content-Type": content_type, "Cache-Control": "no-store"})

    app.register_blueprint(admin)
    app.register_blueprint(keys_api)
    app.register_blueprint(edge)
    app.register_blueprint(cdn)
    app.register_blueprint(uploads_api)
    app.register_blueprint(dashboard)

    @app.route("/api/v1/<path:rest>", methods=IMAGE_METHODS)
    def path_style(rest):
        query = request.query_string.decode(errors="replace")
        return flask_response(path_urls.answer(services, request.environ, request.path, query))

    @app.route("/<project>/<path:path>", methods=IMAGE_METHODS)
    def image(project, path):
        # Image URLs the front door leaves to Flask (odd paths): the same exchange.
        query = request.query_string.decode(errors="replace")  # as the front door decodes it
        return flask_response(answer_image(services, request.environ, request.path, project, path, query))

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
        if self.services._background_pid != pid.current():
            self.services.start_background()
        too_large = _too_large(environ)
        if too_large is not None:
            return self.respond(environ, start_response, refuse(self.services, environ, too_large))
        route = self.route(environ)
        if route is not None:
            method = environ.get("REQUEST_METHOD")
            if method in IMAGE_METHODS:
                return self.serve(environ, start_response, *route)
            path, project, _rest, _query = route
            if not path.startswith(path_urls.PREFIX):
                if method == "OPTIONS":
                    answer = answer_options(self.services, environ, path, project)
                else:
                    answer = answer_method_not_allowed(self.services, environ, path, project)
                return self.respond(environ, start_response, answer)
        return self.flask_wsgi(environ, start_response)

    def _domain_project(self, environ):
        """The project whose `domain` this request's Host is (port and case ignored), or None."""
        host = environ.get("HTTP_HOST")
        if not host or host[0] == "[":
            return None
        return self.services.projects.by_domain(host.partition(":")[0].lower().rstrip("."))

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
        if _CONTROL.search(path):
            return None
        project, sep, rest = path[1:].partition("/")
        domain = self._domain_project(environ)
        if domain is not None and project not in RESERVED_NAMES and project not in self.reserved:
            # A Host that is a project's domain: the whole path is the file's.
            return path, domain.name, path[1:], query
        if not sep or not rest or rest[0] == "/":
            return None
        if project in self.reserved and not path.startswith(path_urls.PREFIX):
            return None
        return path, project, rest, query

    def serve(self, environ, start_response, path, project, rest, query):
        if project == "api" and path.startswith(path_urls.PREFIX):
            answer = path_urls.answer(self.services, environ, path, query)
        else:
            answer = answer_image(self.services, environ, path, project, rest, query)
        return self.respond(environ, start_response, answer)

    def respond(self, environ, start_response, answer):
        status, headers, body = answer
        start_response(_status_line(status), headers)
        if environ["REQUEST_METHOD"] == "HEAD":
            return []
        if hasattr(body, "read"):
            wrapper = environ.get("wsgi.file_wrapper", FileWrapper)
            return wrapper(body, FILE_CHUNK)
        return [body] if body else []


MAX_REQUEST_LINE = 8190  # as gunicorn.conf.py's limit_request_line
MAX_HEADER_FIELDS = 100
MAX_HEADER_BYTES = 8190
_PLAIN_ENVIRON = 40  # a WSGI environ without headers holds fewer keys than this


def _too_large(environ):
    """414 or 431 for a request over the limits gunicorn applies, under any WSGI server; else None."""
    if (
        len(environ) < _PLAIN_ENVIRON
        and len(environ.get("PATH_INFO", "")) + len(environ.get("QUERY_STRING", "")) < 8000
    ):
        return None  # nearly every request: far from both limits
    uri = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if uri is None:
        uri = environ.get("PATH_INFO", "")
        if environ.get("QUERY_STRING"):
            uri += "?" + environ["QUERY_STRING"]
    line = len(environ.get("REQUEST_METHOD", "")) + len(uri) + len(environ.get("SERVER_PROTOCOL", "")) + 2
    if line > MAX_REQUEST_LINE:
        return UriTooLong()
    if len(environ) > _PLAIN_ENVIRON + MAX_HEADER_FIELDS // 2:  # only then are the headers counted
        fields = [k for k in environ if k.startswith("HTTP_") or k in ("CONTENT_TYPE", "CONTENT_LENGTH")]
        if len(fields) > MAX_HEADER_FIELDS:
            return HeadersTooLarge()
    return None


def refuse(services, environ, exc):
    """A request refused before routing, answered and counted like any other."""

    def produce():
        raise exc

    path = environ.get("PATH_INFO", "")[:200]
    return account(services, environ, path, "", produce)


def _status_line(status):
    line = _STATUS_LINES.get(status)
    if line is None:
        from http import HTTPStatus

        line = _STATUS_LINES[status] = f"{status} {HTTPStatus(status).phrase}"
    return line
