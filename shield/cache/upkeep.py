"""Keeping the cache folder within cache_max_bytes, its index true, and its health known.

diskcache bounds the values it stores and its own database pages. The rest of
what shield writes in cache_dir (SQLite's write-ahead logs, the tag index,
the rate-limit table, the counter files, the fetch locks) is measured here
and taken off diskcache's limit, so the whole folder stays under the bound.
The same pass drops tag-index rows whose variants diskcache has evicted, a
few hundred at a time, and remembers whether writes are failing, which
/health reports as `degraded`.
"""

import os
import sqlite3
import time

from .. import logs

EVERY = 2.0  # seconds between passes in one process (run after writes)
PRUNE_BATCH = 500  # index rows checked per pass
CHECKPOINT_OVER = 4 * 1024 * 1024  # a write-ahead log this large is folded back
FAILING_FOR = 60.0  # a write failure this recent makes the cache `degraded`
MIN_SHARE = 0.5  # diskcache always keeps at least half of cache_max_bytes for values


def folder_overhead(cache_dir):
    """Bytes in cache_dir that diskcache's volume() does not count."""
    total = 0
    try:
        with os.scandir(cache_dir) as entries:
            for entry in entries:
                if entry.name == "cache.db":  # counted by volume() in pages
                    continue
                if entry.is_file(follow_symlinks=False):
                    total += entry.stat().st_size
                elif entry.name == "locks" and entry.is_dir(follow_symlinks=False):
                    with os.scandir(entry.path) as locks:
                        total += sum(e.stat().st_size for e in locks if e.is_file(follow_symlinks=False))
    except OSError:
        pass
    return total


class Upkeep:
    PROBE_EVERY = 5.0  # seconds between write probes for /health

    def __init__(self, store):
        self.store = store
        self._last = 0.0
        self._cursor = 0
        self.write_failed_at = None
        self._probed_at = 0.0
        self._probe_ok = True

    def probe(self, cache, index):
        """Whether a small write to the values and to the index succeeds now (at most every PROBE_EVERY)."""
        now = time.monotonic()
        if now - self._probed_at >= self.PROBE_EVERY:
            self._probed_at = now
            try:
                cache.set("health|probe", os.getpid())
                index.execute("BEGIN IMMEDIATE")
                index.execute("INSERT OR REPLACE INTO files (project, path) VALUES ('', '')")
                index.execute("DELETE FROM files WHERE project = '' AND path = ''")
                index.execute("COMMIT")
                self._probe_ok = True
            except (OSError, sqlite3.Error) as exc:
                rollback(index)
                self._probe_ok = False
                self.failed()
                logs.fault_once("cache_write_probe_failed", cache_dir=self.store.cache_dir, error=str(exc))
        return self._probe_ok

    def failed(self):
        self.write_failed_at = time.monotonic()

    @property
    def failing(self):
        return self.write_failed_at is not None and time.monotonic() - self.write_failed_at < FAILING_FOR

    def maybe_run(self, cache, index):
        now = time.monotonic()
        if now - self._last < EVERY:
            return
        self._last = now
        try:
            self.bound(cache, index)
            self.prune(cache, index)
        except (OSError, sqlite3.Error) as exc:
            logs.fault_once("cache_upkeep_failed", cache_dir=self.store.cache_dir, error=str(exc))

    def bound(self, cache, index):
        """Give diskcache what is left of cache_max_bytes after everything else in the folder."""
        wal = os.path.join(self.store.cache_dir, "cache.db-wal")
        if _size(wal) > CHECKPOINT_OVER:
            cache._sql("PRAGMA wal_checkpoint(TRUNCATE)")
        if _size(os.path.join(self.store.cache_dir, "index.db-wal")) > CHECKPOINT_OVER:
            index.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        overhead = folder_overhead(self.store.cache_dir)
        limit = max(int(self.store.max_bytes * MIN_SHARE), self.store.max_bytes - overhead)
        if cache.size_limit != limit:
            cache.reset("size_limit", limit)
        if cache.volume() > limit:
            cache.cull()

    def prune(self, cache, index):
        """Drop index rows of variants diskcache no longer holds (evicted least recently used)."""
        rows = index.execute(
            "SELECT rowid, key FROM variants WHERE rowid > ? ORDER BY rowid LIMIT ?",
            (self._cursor, PRUNE_BATCH),
        ).fetchall()
        if not rows:
            self._cursor = 0
            return
        self._cursor = rows[-1][0]
        keys = [key for _rowid, key in rows]
        marks = ",".join("?" * len(keys))
        held = {k for (k,) in cache._sql(f"SELECT key FROM Cache WHERE raw = 1 AND key IN ({marks})", keys)}
        gone = [k for k in keys if k not in held]
        if not gone:
            return
        marks = ",".join("?" * len(gone))
        index.execute("BEGIN IMMEDIATE")
        try:
            index.execute(f"DELETE FROM variants WHERE key IN ({marks})", gone)
            index.execute(f"DELETE FROM variant_tags WHERE key IN ({marks})", gone)
            index.execute("COMMIT")
        except sqlite3.Error:
            rollback(index)
            raise


def rollback(conn):
    """ROLLBACK that never hides the error that made it necessary (a full disk may have ended it)."""
    try:
        conn.execute("ROLLBACK")
    except sqlite3.Error:
        pass


def _size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
