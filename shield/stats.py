"""Request counters in minute buckets, summed across workers and kept across restarts.

Each worker adds to an in-memory buffer and writes it to `stats.db` (SQLite,
next to the cache) at most twice a second, so counting costs a request no I/O.
"""

import atexit
import os
import sqlite3
import threading
import time
from collections import defaultdict

from . import logs, metrics, pid
from .statedb import StateDB

FLUSH_INTERVAL = 0.5
COUNTERS = (
    "requests",
    "hits",
    "misses",
    "stale",
    "bypass",
    "not_modified",
    "errors",
    "bytes_served",
    "origin_fetches",
    "transforms",
    "purged",
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS counters (
    minute INTEGER NOT NULL, project TEXT NOT NULL, name TEXT NOT NULL, value INTEGER NOT NULL,
    PRIMARY KEY (minute, project, name)) WITHOUT ROWID;
"""


class Stats:
    def __init__(self, cache_dir):
        self.on_flush = None  # cluster mode: called with each flushed batch of buckets
        self._state = StateDB(os.path.join(cache_dir, "stats.db"), _SCHEMA)
        self._buffer = defaultdict(int)
        self._last_flush = time.monotonic()
        self._lock = threading.Lock()
        self._flusher_pid = None

    def _conn(self):
        return self._state.get()

    def incr(self, project, name, value=1):
        self.incr_many(project, ((name, value),))

    def incr_many(self, project, counts):
        """incr for several (name, value) pairs of one request, at once."""
        minute, project, buffer = int(time.time() // 60), project or "", self._buffer
        for name, value in counts:
            buffer[(minute, project, name)] += value
            metrics.count(name, value)
        if self._flusher_pid != pid.current():
            self._start_flusher()

    def _start_flusher(self):
        """Under gevent, a greenlet writes the buffer out even when the worker goes idle."""
        self._flusher_pid = pid.current()
        atexit.register(self.flush)
        try:
            from gevent import monkey
        except ImportError:  # pragma: no cover
            return
        if not monkey.is_module_patched("socket"):
            return
        import gevent

        def loop():
            while True:
                gevent.sleep(FLUSH_INTERVAL)
                self.flush()

        gevent.spawn(loop)

    def maybe_flush(self):
        if time.monotonic() - self._last_flush >= FLUSH_INTERVAL:
            self.flush()

    def flush(self):
        metrics.flush()
        with self._lock:
            self._last_flush = time.monotonic()
            if not self._buffer:
                return
            pending, self._buffer = self._buffer, defaultdict(int)
            db = self._conn()
            if db is None:
                return
            try:
                db.execute("BEGIN IMMEDIATE")
                db.executemany(
                    "INSERT INTO counters (minute, project, name, value) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (minute, project, name) DO UPDATE SET value = value + excluded.value",
                    [(m, p, n, v) for (m, p, n), v in pending.items()],
                )
                db.execute("COMMIT")
                if self.on_flush is not None:
                    self.on_flush(pending)  # cluster mode: the same buckets into Redis
            except sqlite3.Error as exc:
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                for key, value in pending.items():  # keep them for the next flush
                    self._buffer[key] += value
                logs.fault_once("stats_flush_failed", error=str(exc))

    def query(self, project=None, start=None, end=None):
        """Totals of the minutes from start's to end's, both included (Unix seconds), for one project or all."""
        self.flush()
        totals = {name: 0 for name in COUNTERS}
        db = self._conn()
        if db is not None:
            sql = "SELECT name, sum(value) FROM counters WHERE minute >= ? AND minute <= ?"
            args = [
                int(start // 60) if start is not None else 0,
                int(end // 60) if end is not None else 2**62,
            ]
            if project is not None:
                sql += " AND project = ?"
                args.append(project)
            for name, value in db.execute(sql + " GROUP BY name", args):
                totals[name] = int(value)
        return with_hit_ratio(totals)


def with_hit_ratio(totals):
    """The counters with their hit_ratio: hits and stale answers over everything served from the cache path."""
    served = totals.get("hits", 0) + totals.get("misses", 0) + totals.get("stale", 0)
    hits = totals.get("hits", 0) + totals.get("stale", 0)
    totals["hit_ratio"] = round(hits / served, 4) if served else 0.0
    return totals
