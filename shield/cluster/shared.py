"""What the nodes count together: rate limits and stats.

Rate limits: the same sliding minute as on one node (this minute's count plus the
previous minute's, weighted by how much of it still lies within the last 60 s),
counted in Redis by one Lua script, so a client gets its limit across the whole
fleet, not per node. Redis's own clock decides the minute. When Redis is slow or
down (link.TIMEOUT), each node falls back to its own limiter with its share of the
limit (the limit divided by the live nodes).

Stats: every flush of a node's minute buckets is also added to its hash in Redis
(`shield:stats:<node>:<day>`, kept 40 days), and /v1/stats sums every node's and
lists each. While Redis is away a node keeps what it could not send and adds it
at the next flush that reaches Redis.
"""

import math
import threading
import time
from collections import defaultdict

from .. import logs
from ..stats import with_hit_ratio
from .link import PREFIX, ClusterDown

_WINDOW = 60
_HIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local window = math.floor(now / 60)
local elapsed = now - window * 60
local cur_key = KEYS[1] .. ':' .. window
local prev = tonumber(redis.call('GET', KEYS[1] .. ':' .. (window - 1)) or '0')
local cur = tonumber(redis.call('GET', cur_key) or '0')
local limit = tonumber(ARGV[1])
if prev * (60 - elapsed) + (cur + 1) * 60 > limit * 60 then
  return {0, tostring(prev), tostring(cur), tostring(elapsed)}
end
redis.call('INCR', cur_key)
redis.call('EXPIRE', cur_key, 130)
return {1, '0', '0', '0'}
"""
STATS_DAYS = 40


class SharedLimiter:
    """RateLimiter's hit(key, limit), counted across the fleet (the local limiter as fallback)."""

    NODES_EVERY = 5.0  # seconds between refreshes of how many nodes share a limit

    def __init__(self, link, local, log):
        self.link = link
        self.local = local
        self.log = log  # its `known` nodes share the limit when Redis is away
        self._script = None
        self._nodes_at = 0.0

    def hit(self, key, limit, now=None):
        if limit <= 0:
            return True, 0

        def run(r):
            if self._script is None:
                self._script = r.register_script(_HIT)
            return self._script(keys=[PREFIX + "rl:" + key], args=[limit])

        try:
            allowed, prev, cur, elapsed = self.link.call(run)
            if time.monotonic() - self._nodes_at > self.NODES_EVERY:
                self._nodes_at = time.monotonic()
                self.log.live_nodes()
        except ClusterDown:
            share = max(1, math.ceil(limit / max(1, len(self.log.known))))
            return self.local.hit(key, share, now)
        if int(allowed):
            return True, 0
        from ..guard.ratelimit import _retry_after

        return False, _retry_after(int(prev), int(cur), limit, float(elapsed))


class FleetStats:
    """The node's Stats, with its buckets added up in Redis and /v1/stats answered for every node."""

    def __init__(self, link, node_id, local):
        self.link = link
        self.node_id = node_id
        self.local = local
        self._unsent = defaultdict(int)
        self._lock = threading.Lock()
        local.on_flush = self.push

    def push(self, pending):
        """Add flushed buckets ({(minute, project, name): n}) to this node's hashes in Redis."""
        with self._lock:
            for k, v in pending.items():
                self._unsent[k] += v
            batch, self._unsent = self._unsent, defaultdict(int)

        def run(r):
            pipe = r.pipeline(transaction=False)
            days = set()
            for (minute, project, name), value in batch.items():
                day = minute // 1440
                days.add(day)
                pipe.hincrby(f"{PREFIX}stats:{self.node_id}:{day}", f"{minute}|{project}|{name}", value)
            for day in days:
                pipe.expire(f"{PREFIX}stats:{self.node_id}:{day}", STATS_DAYS * 86400)
            pipe.sadd(PREFIX + "stats:nodes", self.node_id)
            pipe.execute()

        if not batch:
            return
        try:
            self.link.call(run)
        except ClusterDown:
            with self._lock:
                for k, v in batch.items():
                    self._unsent[k] += v

    def query(self, project=None, start=None, end=None):
        """The fleet's totals, with each node's under "nodes"; this node's alone when Redis is away."""
        own = self.local.query(project=project, start=start, end=end)
        try:
            per_node = self.link.call(lambda r: self._fleet(r, project, start, end))
        except ClusterDown:
            logs.fault_once("cluster_stats_local_only")
            return dict(own, nodes={self.node_id: own})
        totals = {name: 0 for name in own if name != "hit_ratio"}
        for counts in per_node.values():
            for name, value in counts.items():
                totals[name] = totals.get(name, 0) + value
        nodes = {
            node: with_hit_ratio(dict({n: 0 for n in totals}, **counts)) for node, counts in per_node.items()
        }
        return dict(with_hit_ratio(totals), nodes=nodes)

    def _fleet(self, r, project, start, end):
        lo = int(start // 60) if start is not None else int(time.time() // 60) - STATS_DAYS * 1440
        hi = int(end // 60) if end is not None else 2**62
        out = {}
        now_day = int(time.time() // 86400)
        first_day = max(lo // 1440, now_day - STATS_DAYS)
        last_day = min(hi // 1440, now_day)
        for node in sorted(r.smembers(PREFIX + "stats:nodes")):
            counts = defaultdict(int)
            for day in range(first_day, last_day + 1):
                for field, value in r.hgetall(f"{PREFIX}stats:{node}:{day}").items():
                    minute, p, name = field.split("|", 2)
                    if lo <= int(minute) <= hi and (project is None or p == project):
                        counts[name] += int(value)
            out[node] = dict(counts)
        return out
