"""Ties the forkserver's life to the run's: imported first in the forkserver (a preload module of
``worker.py``), it asks the kernel to SIGKILL the forkserver when the process that started it dies.

Workers already die with the forkserver (``worker._die_with_parent``); without this the forkserver itself,
and so a worker running permutation importance, ran on for minutes after the run was killed (kill -9 or the
OOM killer leave the run no chance to clean up). The starting process names itself in ``PARENT_ENV``: if it
died before the forkserver got this far, the forkserver exits at once instead of serving nobody.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys

PARENT_ENV = "DAEDALUS_FORKSERVER_PARENT"
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """SIGKILL this process when its parent dies (Linux; elsewhere a no-op)."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _guard_forkserver() -> None:
    # Only the forkserver acts ('python -c "from multiprocessing.forkserver import main; ..."'): the run imports
    # this module too. The variable is removed, so that the workers forked from here and their children (which
    # inherit the environment) never see it.
    parent = os.environ.pop(PARENT_ENV, None)
    if parent is None or sys.argv != ["-c"] or "multiprocessing.forkserver" not in sys.modules:
        return
    die_with_parent()
    if os.getppid() != int(parent):  # the run is already gone: reparented before the line above ran
        os._exit(0)


_guard_forkserver()
