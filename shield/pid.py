"""This process's id, kept in memory: os.getpid() is a system call every time.

Per-request code checks it to notice it runs in a forked child (a gunicorn worker)
and must open its own files, pools and threads. The value is taken again in the
child of every os.fork(), by an after-fork hook, before the forking call returns.
"""

import os

_pid = os.getpid()


def _forked():
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_forked)


def current():
    return _pid
