"""A child process ends when the process that started it dies, however it dies.

A study's ``--jobs`` workers and the processes of ``train --nproc`` (torchrun and its
trainers) would otherwise outlive a parent killed with SIGKILL or SIGTERM:
re-parented to init, holding their run folders' locks and a gigabyte each, training
for nobody. No signal handler runs on SIGKILL, so the parent cannot stop them; the
child asks the kernel instead (Linux ``prctl(PR_SET_PDEATHSIG)``), right after it
starts, to receive a signal when its parent ends. The parent's pid is handed to the
child, and checked after the request: a parent that died before it would never send
the signal, so the child ends at once.

Elsewhere than Linux this is a no-op (children there may outlive a killed parent).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import sys

__all__ = ["PARENT_PID_ENV", "die_with_parent", "die_with_parent_from_env", "inherit_parent_pid"]

PARENT_PID_ENV = "TASGEN_PARENT_PID"
"""The environment variable through which a launcher names itself to processes it starts."""

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(parent_pid: int, sig: int = signal.SIGKILL) -> bool:
    """Have the kernel send ``sig`` to this process when its parent ends.

    Call it first thing in a child process. The death signal is set for the thread
    that created the child (in Python, the starting thread of the parent).

    Args:
        parent_pid: the pid of the process that started this one, as it knew itself.
        sig: the signal to receive: SIGKILL (the default) cannot be caught; SIGTERM
            lets a process that handles it (torchrun) stop its own children first.

    Returns:
        Whether the death signal is set (False where the platform has none).
    """
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, ctypes.c_ulong(int(sig)), 0, 0, 0) != 0:
        return False
    if os.getppid() != parent_pid and not _alive(parent_pid):  # it died before the request: no signal will come
        os.kill(os.getpid(), sig)
    return True


def _alive(pid: int) -> bool:
    # A pid that is alive but not our parent is a stale PARENT_PID_ENV: carry on, watched by the real parent.
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def die_with_parent_from_env(sig: int = signal.SIGKILL) -> bool:
    """`die_with_parent` for the pid a launcher put in `PARENT_PID_ENV`; False when none is there."""
    with contextlib.suppress(KeyError, ValueError):
        return die_with_parent(int(os.environ[PARENT_PID_ENV]), sig)
    return False


def inherit_parent_pid() -> None:
    """Name this process in `PARENT_PID_ENV`, for the children it starts from now on."""
    os.environ[PARENT_PID_ENV] = str(os.getpid())
