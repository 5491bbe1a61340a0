"""The transform pool: image work on real OS threads, off the event loop.

Under gevent's monkey-patching threading.Thread and ThreadPoolExecutor make
greenlets, which would run ImageMagick on the event loop and stall every hit.
gevent's ThreadPool runs on OS threads; Wand's ctypes calls release the GIL.
The queue in front is bounded: beyond it a miss gets 503 with Retry-After
rather than waiting in ever-growing memory.
"""

import os
import threading

from . import pid
from .errors import Overloaded
from .image import budget

# Transform threads run at a lower CPU priority than the event loop that serves
# hits, so a full pool adds little to a hit's latency: the kernel gives the
# core to the hit first. Misses lose nothing when the machine is otherwise idle.
TRANSFORM_NICE = 10
_niced = set()


def os_threading(name):
    """threading.<name> (Lock, local, ...) of the OS threads, even under gevent's monkey-patching.

    Patched, those objects belong to greenlets; what the transform threads and the event
    loop share must be the OS kind.
    """
    try:
        from gevent import monkey  # noqa: PLC0415

        return monkey.get_original("threading", name)
    except (ImportError, AttributeError):  # pragma: no cover
        return getattr(threading, name)


class TransformPool:
    def __init__(self, threads, queue_limit, timeout=None):
        self.threads = threads
        self.queue_limit = queue_limit
        self.timeout = timeout  # transform_timeout: each call's budget (image/budget.py)
        self.pending = 0
        self._pool = None
        self._pid = None

    def _get(self):
        if self._pid != pid.current():
            from gevent.threadpool import ThreadPool

            self._pool, self._pid = ThreadPool(self.threads), pid.current()
        return self._pool

    def run(self, fn, *args, **kwargs):
        if self.pending >= self.threads + self.queue_limit:
            raise Overloaded(retry_after=1)
        self.pending += 1
        try:
            ok, value = self._get().apply(_call, (fn, args, kwargs, self.timeout))
        finally:
            self.pending -= 1
        if not ok:
            raise value
        return value


def _call(fn, args, kwargs, timeout):
    """Run in a pool thread; the outcome travels back as a value, so gevent's hub never
    reports an expected error (a damaged original) as a crash on stderr."""
    _lower_priority()
    budget.start(timeout)
    try:
        return True, fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - re-raised in the calling greenlet
        return False, exc
    finally:
        budget.stop()


def _lower_priority():
    """Nice this OS thread (Linux schedules threads one by one), once."""
    tid = threading.get_native_id()
    if tid in _niced:
        return
    _niced.add(tid)
    try:
        os.setpriority(os.PRIO_PROCESS, tid, TRANSFORM_NICE)
    except (OSError, AttributeError):  # not Linux, or not allowed: run at normal priority
        pass
