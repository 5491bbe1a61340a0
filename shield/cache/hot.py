"""The hot set: each worker's own memory of its most requested answers.

A cache hit read from disk costs two SQLite lookups (the original's metadata,
then the variant). For the few images that take most of the traffic a worker
keeps the finished answer in memory instead: the variant's bytes and headers,
keyed by the exact request line and Accept header.

An entry never outlives what made it right:
- the original's freshness (it ends before refresh-ahead would start, so the
  disk path revalidates on time),
- HOT_TTL seconds (the disk path then runs again and keeps the entry's LRU
  position in the disk cache current),
- the project's settings (the entry holds the Project it was made under; a
  changed project is a new object),
- the cache's generation: a counter in a shared file that every purge and
  every replaced original moves forward, in whichever process runs it.

Requests still pass every per-request check (signature, referer, rate
limits) before an entry is used; private images are never kept here.
"""

import fcntl
import os
import struct
import time
from collections import OrderedDict
from dataclasses import dataclass

from .. import logs, pid

HOT_BYTES = 8 * 1024 * 1024  # per worker; the hot_cache_bytes setting
HOT_MAX_BODY = 128 * 1024
HOT_TTL = 30.0
_COUNTER = struct.Struct("<Q")


class Generation:
    """A counter shared by every process on the machine, through a small file.

    Read with pread, never mapped: a file someone truncates, deletes or
    replaces can make a read come up short, never kill the process (a mapped
    page past the end of a truncated file is a SIGBUS). A short or missing file
    is written again with a value no process has seen (the clock in
    microseconds), and every CHECK_EVERY seconds each process makes sure its
    descriptor is still the file at `path`, so a replaced file is noticed by
    every worker: each sees the value change and lets go of what it kept.
    """

    CHECK_EVERY = 0.25  # seconds

    def __init__(self, path):
        self.path = path
        self._fd = None
        self._pid = None
        self._checked_at = 0.0
        self._identity = None

    def _open(self):
        now = time.monotonic()
        if self._pid == pid.current() and now - self._checked_at < self.CHECK_EVERY:
            return self._fd
        if self._pid == pid.current():
            self._checked_at = now
            try:
                st = os.stat(self.path)
                if (st.st_dev, st.st_ino) == self._identity:
                    return self._fd
            except OSError:
                pass  # deleted: made again below
            logs.fault_once("generation_replaced", path=self.path)
            os.close(self._fd)
        self._fd = None
        try:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            st = os.fstat(fd)
            self._fd, self._pid, self._checked_at = fd, pid.current(), now
            self._identity = (st.st_dev, st.st_ino)
            if st.st_size < _COUNTER.size:
                self._repair()
        except OSError as exc:
            logs.fault_once("generation_unavailable", path=self.path, error=str(exc))  # tried again next time
        return self._fd

    def _repair(self, locked=False):
        """A new or cut-short file: a starting value that no earlier file held."""
        if not locked:
            fcntl.lockf(self._fd, fcntl.LOCK_EX)
        try:
            if os.fstat(self._fd).st_size < _COUNTER.size:
                os.pwrite(self._fd, _COUNTER.pack(time.time_ns() // 1000), 0)
        finally:
            if not locked:
                fcntl.lockf(self._fd, fcntl.LOCK_UN)

    def _read(self, fd, locked=False):
        data = os.pread(fd, _COUNTER.size, 0)
        if len(data) < _COUNTER.size:
            logs.fault_once("generation_truncated", path=self.path)
            self._repair(locked)
            data = os.pread(fd, _COUNTER.size, 0)
        return _COUNTER.unpack(data)[0]

    def current(self):
        """The counter, or None when the file cannot be used (then nothing may be kept)."""
        fd = self._open()
        if fd is None:
            return None
        try:
            return self._read(fd)
        except (OSError, struct.error) as exc:
            logs.fault_once("generation_unavailable", path=self.path, error=str(exc))
            return None

    def bump(self):
        fd = self._open()
        if fd is None:
            return
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX)
            try:
                os.pwrite(fd, _COUNTER.pack(self._read(fd, locked=True) + 1), 0)
            finally:
                fcntl.lockf(fd, fcntl.LOCK_UN)
        except (OSError, struct.error) as exc:
            logs.fault_once("generation_unavailable", path=self.path, error=str(exc))


@dataclass(slots=True)
class HotEntry:
    generation: int
    valid_until: float  # time.time()
    project: object
    headers: dict
    etag: str
    body: bytes
    modified: int = 0  # Last-Modified, Unix seconds


ENTRY_OVERHEAD = 1024  # the headers dict, the entry and the table slot, roughly
MAX_KEY_CHARS = 2048


def _cost(key, body_size):
    return body_size + sum(len(part) for part in key) + ENTRY_OVERHEAD


class HotSet:
    """Least recently used entries, bounded by what they hold: bodies, keys and headers."""

    def __init__(self, max_bytes=HOT_BYTES, max_body=HOT_MAX_BODY):
        self.max_bytes = max_bytes
        self.max_body = max_body
        self.bytes = 0
        self._entries = OrderedDict()

    def __len__(self):
        return len(self._entries)

    def get(self, key):
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def admits(self, body_size, key):
        """Whether an answer of this size under this key may be kept at all."""
        return (
            self.max_bytes > 0
            and body_size <= self.max_body
            and sum(len(part) for part in key) <= MAX_KEY_CHARS
            and _cost(key, body_size) <= self.max_bytes
        )

    def put(self, key, entry):
        if not self.admits(len(entry.body), key):
            return
        self.discard(key)
        self._entries[key] = entry
        self.bytes += _cost(key, len(entry.body))
        while self.bytes > self.max_bytes:
            old_key, old = self._entries.popitem(last=False)
            self.bytes -= _cost(old_key, len(old.body))

    def discard(self, key):
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= _cost(key, len(old.body))

    def clear(self):
        self._entries.clear()
        self.bytes = 0
