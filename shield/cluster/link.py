"""The Redis connection of a node: short timeouts, and a brief back-off once it fails.

Every call goes through `Link.call(fn)`; a Redis that is down, slow or gone answers
ClusterDown within about `TIMEOUT` seconds, and for BACKOFF seconds after a failure
calls fail at once, so a request never waits on Redis twice.
"""

import hashlib
import os
import re
import secrets
import socket
import time

import redis

from .. import logs

TIMEOUT = 0.3  # seconds, connect and each reply
BACKOFF = 0.5
PREFIX = "shield:"
EPOCH = PREFIX + "epoch"  # a random value made when this Redis first served shield


class ClusterDown(Exception):
    """Redis could not be reached or did not answer in time."""


def node_id_of(settings):
    """The configured node_id, or the host name and a hash of the cache folder (stable per node)."""
    if settings.node_id:
        return settings.node_id
    folder = os.path.realpath(settings.cache_dir).encode()
    return f"{socket.gethostname()}-{hashlib.blake2b(folder, digest_size=3).hexdigest()}"


class Link:
    def __init__(self, url):
        self.url = url
        self._clients = {}
        self._down_until = 0.0

    def client(self, blocking_for=None):
        """A client of this process (a forked worker makes its own); `blocking_for` seconds of XREAD BLOCK."""
        key = (os.getpid(), blocking_for)
        found = self._clients.get(key)
        if found is None:
            read_timeout = TIMEOUT if blocking_for is None else blocking_for + 1.0
            found = self._clients[key] = redis.Redis.from_url(
                self.url,
                socket_timeout=read_timeout,
                socket_connect_timeout=TIMEOUT,
                retry_on_timeout=False,
                decode_responses=True,
            )
        return found

    @property
    def down(self):
        return time.monotonic() < self._down_until

    def call(self, fn, blocking_for=None):
        if self.down:
            raise ClusterDown()
        try:
            return fn(self.client(blocking_for))
        except (redis.RedisError, OSError) as exc:
            self._down_until = time.monotonic() + BACKOFF
            logs.fault_once("cluster_redis_unreachable", url=_safe(self.url), error=str(exc)[:200])
            raise ClusterDown() from None

    def epoch(self):
        """This Redis's epoch, made on first use: a node that saw another one must not trust its cache."""

        def run(r):
            r.set(EPOCH, secrets.token_hex(8), nx=True)
            return r.get(EPOCH)

        return self.call(run)


def _safe(url):
    """The URL without a password (user:password@ or ?password=)."""
    url = re.sub(r"([?&]password=)[^&]*", r"\1***", url)
    if "@" in url:
        scheme, _, rest = url.partition("://")
        return f"{scheme}://***@{rest.rpartition('@')[2]}"
    return url
