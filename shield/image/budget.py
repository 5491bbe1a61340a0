"""The time budget of one transform (`transform_timeout`): ended, never left to run on.

The pool gives every call a deadline for the OS thread it runs on. ImageMagick
asks a progress monitor as it goes and stops when the monitor says so; shield's
own steps (per frame, between decode, resize and encode) call check(). Either
way the transform ends with TransformTimeout, a 503 `overloaded`, and nothing of
it is stored: a cancelled ImageMagick step may leave a partial image, which is
why check() follows every one of them.
"""

import threading
import time

from ..errors import Overloaded

_deadlines = {}  # native thread id -> (monotonic deadline, seconds)


class TransformTimeout(Overloaded):
    default_message = (
        "The transform took longer than transform_timeout allows; retry after the Retry-After seconds."
    )


def start(seconds):
    """Give the calling OS thread `seconds` from now (None: no budget)."""
    tid = threading.get_native_id()
    if seconds is None:
        _deadlines.pop(tid, None)
    else:
        _deadlines[tid] = (time.monotonic() + seconds, seconds)


def stop():
    _deadlines.pop(threading.get_native_id(), None)


def expired():
    found = _deadlines.get(threading.get_native_id())
    return found is not None and time.monotonic() >= found[0]


def check():
    """Raise TransformTimeout once the calling thread's budget is spent."""
    if expired():
        seconds = _deadlines[threading.get_native_id()][1]
        raise TransformTimeout(
            f"The transform took longer than transform_timeout ({seconds:g} s).", retry_after=1
        )
