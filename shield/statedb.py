"""Small SQLite files in state_dir, one connection per worker process."""

import os
import sqlite3
import time

from . import logs, pid


class StateDB:
    """A SQLite file opened lazily, once per process (workers fork after the app is built).

    `get()` answers the connection, or None when the file cannot be opened;
    the fault is then logged once and callers carry on without it. A failed open
    (the file locked by a worker starting at the same moment) is tried again on a
    later call, at most every RETRY_SECONDS, never given up for the process's life.
    """

    RETRY_SECONDS = 0.5

    def __init__(self, path, schema, private=False):
        self.path = path
        self.schema = schema
        self.private = private  # readable by its owner only: it holds secrets
        self._db = None
        self._pid = None
        self._failed_at = None

    def get(self):
        if self._pid != pid.current():
            self._db, self._pid, self._failed_at = None, pid.current(), None
        if self._db is None and (
            self._failed_at is None or time.monotonic() - self._failed_at >= self.RETRY_SECONDS
        ):
            try:
                os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
                if self.private:
                    self._make_private()
                db = sqlite3.connect(self.path, timeout=5, isolation_level=None, check_same_thread=False)
                try:
                    db.execute("PRAGMA journal_mode=WAL")
                    db.execute("PRAGMA synchronous=NORMAL")
                    db.executescript(self.schema)
                except sqlite3.Error:
                    db.close()
                    raise
                self._db, self._failed_at = db, None
            except (OSError, sqlite3.Error) as exc:
                self._failed_at = time.monotonic()
                logs.fault_once(
                    f"state_db_unavailable:{os.path.basename(self.path)}", path=self.path, error=str(exc)
                )
        return self._db

    def _make_private(self):
        # SQLite gives its -wal and -shm files the database file's mode: create that 0600 first.
        for suffix in ("", "-wal", "-shm"):
            path = self.path + suffix
            if suffix == "" or os.path.exists(path):
                os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
                os.chmod(path, 0o600)
