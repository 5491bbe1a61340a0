"""Prometheus metrics, counted across all gunicorn workers (prometheus_client multiprocess mode).

gunicorn.conf.py points PROMETHEUS_MULTIPROC_DIR at a fresh folder before any
worker starts; without it (tests, a single process) the default registry is used.
"""

import bisect
import os
import threading
from collections import defaultdict

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

REQUESTS = Counter(
    "shield_requests_total", "Image requests answered, by status and cache result.", ["status", "cache"]
)
LATENCY = Histogram(
    "shield_request_seconds", "Image request latency, by cache result.", ["cache"], buckets=LATENCY_BUCKETS
)
COUNTERS = {
    "bytes_served": Counter("shield_bytes_served_total", "Image bytes sent."),
    "origin_fetches": Counter("shield_origin_fetches_total", "Requests made to origins."),
    "transforms": Counter("shield_transforms_total", "Images transformed."),
    "purged": Counter("shield_purged_variants_total", "Variants removed by purges."),
}
CACHE_BYTES = Gauge("shield_cache_bytes", "Bytes held by the cache.", multiprocess_mode="max")


_children = {}
# Counts and each request's latency are added up here and written to the samples (in
# multiprocess mode, a locked write into a mapped file per sample) by flush(): at each
# stats flush (every stats.FLUSH_INTERVAL under gevent), before every exposition, at exit.
_pending = defaultdict(float)
_pending_lock = threading.Lock()


def observe_request(status, cache, seconds):
    children = _children.get((status, cache))
    if children is None:
        label = (cache or "none").lower()
        latency = LATENCY.labels(cache=label)
        # The histogram's own values (the sum and each bucket's count), as Histogram.observe
        # adds to them: prometheus_client has no call that adds a batch of observations.
        children = _children[(status, cache)] = (
            REQUESTS.labels(status=str(status), cache=label)._value,
            latency._sum,
            latency._buckets,
        )
    requests, total, buckets = children
    bucket = buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)]  # the last one is +Inf
    with _pending_lock:
        _pending[requests] += 1
        _pending[total] += seconds
        _pending[bucket] += 1


def flush():
    """Write the requests counted since the last flush into their samples."""
    global _pending
    with _pending_lock:
        if not _pending:
            return
        pending, _pending = _pending, defaultdict(float)
    for value, amount in pending.items():
        value.inc(amount)


_COUNTER_VALUES = {name: counter._value for name, counter in COUNTERS.items()}


def count(name, value):
    counter = _COUNTER_VALUES.get(name)
    if counter is not None:
        with _pending_lock:
            _pending[counter] += value


def exposition(cache_bytes):
    flush()
    CACHE_BYTES.set(cache_bytes)
    if MULTIPROCESS:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return generate_latest(registry), CONTENT_TYPE_LATEST
