"""diskcache as the store uses it: reads that take no write lock, one SQLite connection per OS thread."""

import sqlite3
import time

import diskcache

from ..pool import os_threading

# Reads do not write: access times are refreshed at most this often per entry,
# which keeps "least recently used goes first" to within a minute.
TOUCH_INTERVAL = 60.0


def real_thread_local():
    """threading.local of the OS thread, even under gevent's monkey-patching.

    diskcache keeps its SQLite connection in a threading.local; patched, that
    is greenlet-local and every concurrent request would open its own
    connection (three file descriptors and a dozen PRAGMAs each). SQLite calls
    never yield to gevent, so the greenlets of one thread can share one.
    """
    return os_threading("local")()


class ReadCache(diskcache.Cache):
    """diskcache with a read path that takes no write lock.

    Cache.get under the least-recently-used policy opens a write transaction
    on every read to bump access_time; with several workers every hit would
    queue on SQLite's single writer. `read` selects without a transaction and
    refreshes access_time only when it is older than TOUCH_INTERVAL.
    """

    def read(self, key):
        db_key, raw = self._disk.put(key)
        now = time.time()
        rows = self._sql(
            "SELECT rowid, access_time, mode, filename, value FROM Cache"
            " WHERE key = ? AND raw = ? AND (expire_time IS NULL OR expire_time > ?)",
            (db_key, raw, now),
        ).fetchall()
        if not rows:
            return None
        ((rowid, access_time, mode, filename, value),) = rows
        try:
            found = self._disk.fetch(mode, filename, value, True)
        except OSError:
            return None
        if now - (access_time or 0) > TOUCH_INTERVAL:
            try:
                self._sql("UPDATE Cache SET access_time = ? WHERE rowid = ?", (now, rowid))
            except sqlite3.OperationalError:
                pass  # another writer is busy; the next read will touch it
        return found
