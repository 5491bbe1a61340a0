"""Per-minute rate limits whose counts every worker process on the machine shares.

A sliding-window approximation over one-minute windows: a key's weight is the
count of the current minute plus the previous minute's count scaled by how
much of that minute still lies within the last 60 seconds. A burst over a
minute boundary therefore cannot get twice the limit, as it could with plain
fixed windows, and only two counters per key are kept.

The counters live in a fixed-size table in a file (`RateLimiter(path)`, under
the cache folder), shared by every worker. The table is cut into groups of
slots; a key always lands in the same group (by a hash that is the same in
every process), and each of its windows takes one slot there. A hit locks its
group's byte range with a POSIX record lock (`fcntl.lockf`), reads the group
with pread, updates it and writes it back with pwrite, and unlocks: no
blocking wait, and no mapping a truncated file could turn into a SIGBUS. A
deleted or replaced file is noticed within CHECK_EVERY seconds. The lock is tried without blocking; when another process holds
it (for a few microseconds), the caller yields to the event loop and tries
again, so under gevent a hit never stalls a worker. POSIX locks do not exclude
the threads of one process, so an in-process lock is taken first.

Limits of the design, chosen on purpose:
- A group holds GROUP_SLOTS windows. When more keys than that are live in one
  group, the least-used slot of the oldest window is taken over and its count
  lost: under a flood of distinct keys the limiter lets through more, never
  fewer, requests than it should.
- When the file cannot be opened (an unwritable folder), counts are kept in
  memory per process and the fault is logged once; when a lock cannot be had
  within LOCK_TIMEOUT, the hit is allowed. A limiter fault never refuses a
  request.
- After a fork the child opens the file again (per pid) at its first hit. It
  drops the inherited mapping before taking any lock of its own, because
  closing any descriptor of the file drops every lock the closing process
  holds on it.
- Opening waits (blocking) for the header lock, which another process holds
  only while it creates the file: once per process, for microseconds.
"""

import fcntl
import hashlib
import math
import os
import struct
import threading
import time

from .. import logs, pid

WINDOW = 60  # seconds
MAGIC = b"SHRL"
VERSION = 1
GROUP_SLOTS = 16
GROUPS = 8192  # 131,072 slots: 4 MiB of file
# One group: the key hashes (u64), then the windows (u32, minutes since the
# epoch), then the counts (u32), each as an array of GROUP_SLOTS.
_HASHES = struct.Struct(f"<{GROUP_SLOTS}Q")
_WINDOWS_COUNTS = struct.Struct(f"<{2 * GROUP_SLOTS}I")
GROUP_BYTES = _HASHES.size + _WINDOWS_COUNTS.size
_WINDOWS_AT = _HASHES.size
_COUNTS_AT = _HASHES.size + 4 * GROUP_SLOTS
_SLOT_HASH = struct.Struct("<Q")
_SLOT_U32 = struct.Struct("<I")
HEADER_BYTES = 4096  # one page: the groups start page-aligned
_HEADER = struct.Struct("<4sIII")  # magic, version, groups, slots per group
FILE_BYTES = HEADER_BYTES + GROUPS * GROUP_BYTES
LOCK_TIMEOUT = 0.5  # seconds; past it the hit is allowed (fail open)
CHECK_EVERY = 1.0  # seconds between checks that the file at `path` is still the one open
_U32_MAX = 0xFFFFFFFF
_LOCK_NOW = fcntl.LOCK_EX | fcntl.LOCK_NB


def _key_hash(key):
    """64-bit hash of a key, equal in every process (Python's hash() is salted per process)."""
    h = int.from_bytes(
        hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little"
    )
    return h or 1  # 0 marks an empty slot


def _yield(attempt):
    """Give the lock holder a moment: under gevent time.sleep yields to the event loop."""
    time.sleep(0 if attempt < 8 else min(0.001, 0.00005 * (attempt - 7)))


def _retry_after(prev, cur, limit, elapsed):
    """Whole seconds until a hit would be allowed, from 1 to WINDOW.

    The weight of the previous window decays through this one; when the
    current window alone is full, the earliest chance is in the next one.
    """
    # (Products before quotients: WINDOW * k / n is exact where the answer is whole.)
    if cur < limit and prev > 0:
        # Allowed once prev * (WINDOW - t) / WINDOW + cur + 1 <= limit.
        wait = WINDOW * (prev - (limit - 1 - cur)) / prev - elapsed
    elif cur < limit:
        wait = 0.0
    else:
        # Next window: cur becomes prev, its own count starts at 0.
        wait = WINDOW - elapsed + WINDOW * max(0, cur - (limit - 1)) / cur
    return int(min(WINDOW, max(1, math.ceil(wait))))


class RateLimiter:
    """hit(key, limit) counts one request of `key` against `limit` per minute."""

    def __init__(self, path):
        self.path = path
        self._pid = None
        self._fd = None
        self._map = None  # the in-process table when the file cannot be shared
        self._shared = False
        self._lock = None
        self._checked_at = 0.0
        self._identity = None

    # -- opening, once per process

    def _table(self):
        if self._pid != pid.current():
            self._open()
        elif self._shared and time.monotonic() - self._checked_at > CHECK_EVERY:
            self._checked_at = time.monotonic()
            try:
                st = os.stat(self.path)
                same = (st.st_dev, st.st_ino) == self._identity
            except OSError:
                same = False
            if not same:  # deleted or replaced: every worker moves to the file now at `path`
                logs.fault_once("ratelimit_file_replaced", path=self.path)
                os.close(self._fd)
                self._open()
        return self._map

    def _open(self):
        # In a child after fork, the inherited descriptor is dropped here (not closed:
        # closing it would drop the parent's locks), before this process takes a lock.
        self._pid = pid.current()
        self._lock = threading.Lock()
        self._fd, self._map, self._shared = None, None, False
        self._checked_at = time.monotonic()
        try:
            self._fd = self._open_file()
            st = os.fstat(self._fd)
            self._identity = (st.st_dev, st.st_ino)
            self._shared = True
        except (OSError, ValueError) as exc:
            logs.fault_once("ratelimit_unshared", path=self.path, error=str(exc))
            self._map = bytearray(FILE_BYTES)  # this process only

    def _open_file(self):
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            # Set-up under an exclusive lock on the header page: one process initialises.
            self._lock_range(fd, 0, HEADER_BYTES, blocking=True)
            try:
                expected = _HEADER.pack(MAGIC, VERSION, GROUPS, GROUP_SLOTS)
                header = os.pread(fd, _HEADER.size, 0)
                size = os.fstat(fd).st_size
                if size < FILE_BYTES:
                    # The file only ever grows, so no process's mapping loses its pages.
                    os.ftruncate(fd, FILE_BYTES)
                if header != expected:
                    if size > HEADER_BYTES:
                        # Written by another layout: start again from empty counters.
                        os.pwrite(fd, bytes(FILE_BYTES - HEADER_BYTES), HEADER_BYTES)
                    os.pwrite(fd, expected, 0)
            finally:
                self._unlock_range(fd, 0, HEADER_BYTES)
        except BaseException:
            os.close(fd)
            raise
        return fd

    @staticmethod
    def _lock_range(fd, start, length, blocking=False):
        fcntl.lockf(fd, fcntl.LOCK_EX if blocking else _LOCK_NOW, length, start)

    @staticmethod
    def _unlock_range(fd, start, length):
        fcntl.lockf(fd, fcntl.LOCK_UN, length, start)

    # -- one hit

    def hit(self, key, limit, now=None):
        """Count one request of `key`; return (allowed, retry_after).

        `limit` is requests per minute; <= 0 means unlimited (allowed, no I/O).
        A refused hit is not counted, and its retry_after is the whole seconds
        until a hit would be allowed again: about the rest of the current
        minute when this minute alone is full, less when the previous minute's
        fading weight is what refuses it; at least 1, and capped at 60 (when
        both minutes were full the real wait can be a little longer). An
        allowed hit has retry_after 0. `now` (Unix seconds) is for tests.
        """
        if limit <= 0:
            return True, 0
        now = time.time() if now is None else now
        window = int(now // WINDOW)
        elapsed = now - window * WINDOW
        h = _key_hash(key)
        table = self._table()
        start = HEADER_BYTES + (h % GROUPS) * GROUP_BYTES
        with self._lock:
            if not self._acquire(start):
                logs.fault_once("ratelimit_lock_timeout", path=self.path)
                return True, 0
            if not self._shared:
                return self._count(table, start, h, window, elapsed, limit)
            try:
                # The group is read and written with pread/pwrite, never mapped: a file
                # cut short by someone reads as empty counters, it cannot kill the worker.
                group = bytearray(os.pread(self._fd, GROUP_BYTES, start))
                if len(group) < GROUP_BYTES:
                    logs.fault_once("ratelimit_file_truncated", path=self.path)
                    group = bytearray(GROUP_BYTES)
                before = bytes(group)
                answer = self._count(group, 0, h, window, elapsed, limit)
                if group != before:
                    os.pwrite(self._fd, group, start)
                return answer
            except OSError as exc:
                logs.fault_once("ratelimit_io_failed", path=self.path, error=str(exc))
                return True, 0
            finally:
                self._unlock_range(self._fd, start, GROUP_BYTES)

    def _acquire(self, start):
        if not self._shared:
            return True
        deadline = None
        attempt = 0
        while True:
            try:
                self._lock_range(self._fd, start, GROUP_BYTES)
                return True
            except (BlockingIOError, PermissionError):
                pass  # held by another process: it holds it for microseconds
            if deadline is None:
                deadline = time.monotonic() + LOCK_TIMEOUT
            elif time.monotonic() > deadline:
                return False
            _yield(attempt)
            attempt += 1

    @staticmethod
    def _count(table, start, h, window, elapsed, limit):
        hashes = _HASHES.unpack_from(table, start)
        cur_slot, cur, prev = None, 0, 0
        if h in hashes:
            # A key has at most two slots in its group: this window's and the previous one's.
            windows_counts = _WINDOWS_COUNTS.unpack_from(table, start + _HASHES.size)
            first = hashes.index(h)
            for i in (first, hashes.index(h, first + 1)) if hashes.count(h) > 1 else (first,):
                if windows_counts[i] == window:
                    cur_slot, cur = i, windows_counts[GROUP_SLOTS + i]
                elif windows_counts[i] == window - 1:
                    prev = windows_counts[GROUP_SLOTS + i]
        # The weight prev * (WINDOW - elapsed) / WINDOW + cur, plus this hit, over the limit?
        if prev * (WINDOW - elapsed) + (cur + 1) * WINDOW > limit * WINDOW:
            return False, _retry_after(prev, cur, limit, elapsed)
        if cur_slot is None:
            windows_counts = _WINDOWS_COUNTS.unpack_from(table, start + _HASHES.size)
            cur_slot = _free_slot(hashes, windows_counts, window)
            _SLOT_HASH.pack_into(table, start + 8 * cur_slot, h)
            _SLOT_U32.pack_into(table, start + _WINDOWS_AT + 4 * cur_slot, window)
        _SLOT_U32.pack_into(table, start + _COUNTS_AT + 4 * cur_slot, min(cur + 1, _U32_MAX))
        return True, 0


def _free_slot(hashes, windows_counts, window):
    """A slot for a new window: an empty or expired one, else the least-used one of the oldest window."""
    best, best_rank = 0, None
    for i in range(GROUP_SLOTS):
        if hashes[i] == 0 or windows_counts[i] < window - 1:
            return i
        # A slot of the current window is worth more than one of the previous window.
        rank = (windows_counts[i] == window, windows_counts[GROUP_SLOTS + i])
        if best_rank is None or rank < best_rank:
            best, best_rank = i, rank
    return best
