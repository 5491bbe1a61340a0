"""gunicorn settings for shield: gevent workers, image work on OS threads.

Workers: one per CPU core (at least 2, so one busy worker never stops the
service). Each worker runs a pool of OS threads for ImageMagick; the pools
together get one thread per core, so transforms never oversubscribe the CPU
while hits keep flowing on every worker's event loop.
Override with WEB_CONCURRENCY (workers) and SHIELD_TRANSFORM_THREADS.
"""

import os
import secrets as _secrets

_cores = os.cpu_count() or 1

bind = os.environ.get("SHIELD_BIND", f"0.0.0.0:{os.environ.get('PORT', '8000')}")
worker_class = "gevent"
workers = int(os.environ.get("WEB_CONCURRENCY", max(2, _cores)))
worker_connections = 1000
timeout = 60
graceful_timeout = 10
keepalive = 5
accesslog = None  # shield logs each request itself, as JSON
errorlog = "-"
loglevel = "warning"

# Request size: a request line of up to 8,190 bytes (gunicorn's most) is served, so long
# signed URLs work; at most 100 header fields of up to 8,190 bytes each. Past those,
# gunicorn answers before the app runs: shield.api.wire makes that the contract's JSON
# error (414 uri_too_long, 431 headers_too_large) with the security headers.
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190

os.environ.setdefault("SHIELD_TRANSFORM_THREADS", str(max(1, _cores // workers)))
os.environ.setdefault("MAGICK_THREAD_LIMIT", "1")

# Prometheus multiprocess mode: every worker writes its samples to this folder,
# and whichever worker answers /metrics adds them all up.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    import tempfile

    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="shield-metrics-")


# This run of the node: cluster mode's /health/ready trusts only a replay made in this run
# (a pid would repeat when a container restarts its gunicorn as pid 1).
os.environ["SHIELD_RUN_ID"] = _secrets.token_hex(8)


def on_starting(server):
    from shield.api import wire

    wire.install()


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


# admin_bind: serve /v1 on a second, private address as well (the app refuses /v1 on
# the public one).
try:
    from shield import settings as _shield_settings

    _admin_bind = _shield_settings.load().admin_bind
except Exception:  # noqa: BLE001 - a bad configuration is reported by the app itself
    _admin_bind = ""
if _admin_bind:
    bind = [bind, _admin_bind]
