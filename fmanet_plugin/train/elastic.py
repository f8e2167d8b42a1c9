"""Elastic launches: restarts of a ``torchrun`` worker group resume by themselves; workers die with their launcher."""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def restart_count() -> int:
    """How many times ``torchrun`` has restarted this worker group (0 outside torchrun or on the first start)."""
    return int(os.environ.get('TORCHELASTIC_RESTART_COUNT', '0') or 0)


def launched_by_torchrun() -> bool:
    return 'TORCHELASTIC_RUN_ID' in os.environ


def exit_with_launcher() -> None:
    """Make this worker die (SIGKILL) when the process that launched it dies, e.g. a killed ``torchrun``.

    Linux only (``prctl(PR_SET_PDEATHSIG)``); a no-op elsewhere and outside ``torchrun``. If the launcher
    died before this call the worker has already been re-parented, which is caught by the parent check.
    """
    if not launched_by_torchrun() or not sys.platform.startswith('linux'):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        return
    if os.getppid() == 1:  # the launcher is already gone
        os._exit(1)
