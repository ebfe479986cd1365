"""Worker processes end with the process they work for, even when it is killed outright.

A SIGKILL runs no clean-up: the collect or evaluation process cannot close its workers, which
would go on stepping or writing, busy, for seconds to minutes (and keep multiprocessing's
forkserver and resource tracker alive with them). :func:`die_with` is called first thing in a
worker: it ends the worker as soon as the process it works for has ended.
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with(pid: int) -> None:
    """End this process (``os._exit``) as soon as process ``pid`` ends, by any means.

    Where ``pid`` is the direct parent, on Linux, the kernel's parent-death signal
    (``prctl(PR_SET_PDEATHSIG, SIGKILL)``). Otherwise (a worker forked by multiprocessing's
    forkserver, whose parent is the server, not the evaluation) a daemon thread waits on a pidfd
    of ``pid`` (Linux 5.3+: woken the moment it exits), else polls it every 0.1 s.
    """
    if os.getppid() == pid and _parent_death_signal():
        pass
    else:
        threading.Thread(target=_watch, args=(pid,), daemon=True, name="parent-watch").start()
    if not alive(pid):  # it ended before the watch was armed
        os._exit(1)


def _parent_death_signal() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch(pid: int) -> None:
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # no pidfd (older kernel, not Linux), or already gone
        while alive(pid):
            time.sleep(0.1)
        os._exit(1)
    poller = select.poll()
    poller.register(fd, select.POLLIN)  # readable once the process has exited
    while not poller.poll(None):
        pass
    os._exit(1)


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
