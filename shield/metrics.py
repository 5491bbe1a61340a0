"""Prometheus metrics, counted across all gunicorn workers (prometheus_client multiprocess mode).

gunicorn.conf.py points PROMETHEUS_MULTIPROC_DIR at a fresh folder before any
worker starts; without it (tests, a single process) the default registry is used.
"""

import os

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


def observe_request(status, cache, seconds):
    children = _children.get((status, cache))
    if children is None:
        label = (cache or "none").lower()
        children = _children[(status, cache)] = (
            REQUESTS.labels(status=str(status), cache=label),
            LATENCY.labels(cache=label),
        )
    children[0].inc()
    children[1].observe(seconds)


def count(name, value):
    counter = COUNTERS.get(name)
    if counter is not None:
        counter.inc(value)


def exposition(cache_bytes):
    CACHE_BYTES.set(cache_bytes)
    if MULTIPROCESS:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return generate_latest(registry), CONTENT_TYPE_LATEST
