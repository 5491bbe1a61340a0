"""Single flight: one fetch or transform per key at a time, on the whole machine.

Two layers. In a process, the first greenlet to ask for a key leads and the
others wait on its waiter object and share its result or its error. Across
worker processes, leaders take a POSIX record lock on one byte of a shared
lock file chosen by the key's hash, and look in the cache again once they
hold it: whatever another process made meanwhile is used, not made again.
The kernel drops the lock of a process that dies, and a follower waits at
most `timeout` before going ahead by itself.
"""

import contextlib
import fcntl
import hashlib
import os
import time

from .. import pid

LOCK_SLOTS = 1 << 30


def _sleep(seconds):
    try:
        import gevent

        gevent.sleep(seconds)
    except ImportError:  # pragma: no cover
        time.sleep(seconds)


class _Waiter:
    def __init__(self):
        from gevent.event import AsyncResult

        self.result = AsyncResult()


class Flight:
    def __init__(self, lock_path):
        self.lock_path = lock_path
        self._waiters = {}
        self._fd = None
        self._pid = None
        self.waited = 0  # followers served by a leader of this process

    def once(self, key, make, check, timeout):
        """`check()` or else `make()`, run by one caller per key at a time.

        `check` looks for a finished result (in the cache); `make` produces it.
        """
        waiter = self._waiters.get(key)
        if waiter is not None:
            from gevent import Timeout

            try:
                result = waiter.result.get(timeout=timeout)  # the leader's error is raised here too
            except Timeout:
                # The leader is stuck past the deadline: go ahead alone.
                return self._locked(key, make, check, timeout)
            self.waited += 1
            return result
        waiter = self._waiters[key] = _Waiter()
        try:
            result = self._locked(key, make, check, timeout)
        except BaseException as exc:
            waiter.result.set_exception(exc)
            raise
        else:
            waiter.result.set(result)
            return result
        finally:
            if self._waiters.get(key) is waiter:
                del self._waiters[key]

    def _locked(self, key, make, check, timeout):
        with self._process_lock(key, timeout):
            found = check()
            if found is not None:
                return found
            return make()

    def _lock_fd(self):
        if self._pid != pid.current():
            self._fd, self._pid = None, pid.current()
            try:
                os.makedirs(os.path.dirname(self.lock_path) or ".", exist_ok=True)
                self._fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError:
                self._fd = None  # no shared dir: coalesce within the process only
        return self._fd

    @contextlib.contextmanager
    def _process_lock(self, key, timeout):
        fd = self._lock_fd()
        if fd is None:
            yield False
            return
        slot = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") % LOCK_SLOTS
        deadline = time.monotonic() + timeout
        delay, held = 0.002, False
        while True:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, slot)
                held = True
                break
            except OSError:
                if time.monotonic() >= deadline:
                    break
                _sleep(delay)
                delay = min(delay * 2, 0.05)
        try:
            yield held
        finally:
            if held:
                fcntl.lockf(fd, fcntl.LOCK_UN, 1, slot)
