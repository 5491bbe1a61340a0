"""The hit-path baseline: the same bytes as shield's cached variant, straight from memory.

Started with shield's own gunicorn.conf.py (gevent workers, the same worker count and
connection settings), so the only difference from shield is shield's work per request:
routing, parsing, the cache lookup, headers, stats, metrics and the log line.

With BENCH_BASELINE_HEADERS (a JSON list of [name, value] pairs: shield's own answer's
headers) it answers with those instead of its five, which shows what the response headers
alone cost gunicorn.
"""

import hashlib
import json
import os

with open(os.environ["BENCH_BASELINE_BODY"], "rb") as fh:
    BODY = fh.read()

HEADERS = [
    ("Content-Type", os.environ.get("BENCH_BASELINE_TYPE", "image/webp")),
    ("Content-Length", str(len(BODY))),
    ("Cache-Control", "public, max-age=31536000, immutable"),
    ("ETag", '"' + hashlib.blake2b(BODY, digest_size=16).hexdigest() + '"'),
    ("Vary", "Accept"),
]
if os.environ.get("BENCH_BASELINE_HEADERS"):
    HEADERS = [(name, value) for name, value in json.loads(os.environ["BENCH_BASELINE_HEADERS"])]


def app(environ, start_response):
    if environ["PATH_INFO"] == "/health":
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "2")])
        return [b"{}"]
    start_response("200 OK", HEADERS)
    return [BODY]
