"""A process's lifeline to the process that started it, so that it never outlives it unnoticed.

RQ forks each work horse into a process group of its own, and a HerokuWorker's horse ignores
SIGINT and SIGTERM: a horse whose worker died (SIGKILL, or a supervisor that gave up waiting) was
re-parented to PID 1 and kept retrying a Redis that was gone, holding the database. A horse now
holds its worker (`hold_parent`): on Linux the kernel sends it a signal when the worker dies
(prctl PR_SET_PDEATHSIG — the horse then stops as on a warm shutdown), and everywhere the waits
that retry a service (`queue.outages.call_through_outage`) give up once the worker is gone.

Imports nothing of the app: the dev tools use `die_with_parent` for the processes they start.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

from loguru import logger

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

_parent_pid: int | None = None


class ParentGone(Exception):
    """The process this one belongs to has exited: stop instead of waiting any longer."""


def _prctl():
    """libc's prctl(2), or None where there is none (not Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _prctl()  # looked up once, so that a freshly forked child only makes the call


def die_with_parent(sig: int = signal.SIGTERM) -> bool:
    """Ask the kernel to send `sig` to this process when its parent exits (Linux; False elsewhere).

    Safe as a `subprocess.Popen(preexec_fn=...)`: it only calls prctl(2).
    """
    if _PRCTL is None:
        return False
    return _PRCTL(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0


def hold_parent(parent_pid: int, sig: int) -> None:
    """From now on this process belongs to `parent_pid`: `sig` arrives when it exits (Linux), and
    `parent_gone()` tells it everywhere. A parent already gone sends `sig` at once."""
    global _parent_pid
    _parent_pid = parent_pid
    die_with_parent(sig)
    if parent_gone():  # it died before the kernel was asked to tell us
        os.kill(os.getpid(), sig)


def parent_gone() -> bool:
    """Has the process this one holds (`hold_parent`) exited? Always False without a lifeline."""
    return _parent_pid is not None and os.getppid() != _parent_pid


def raise_if_parent_gone() -> None:
    """Raise ParentGone (logged once) when the process this one holds has exited."""
    if not parent_gone():
        return
    logger.bind(parent_pid=_parent_pid).warning("Parent process gone: this process stops waiting and exits")
    raise ParentGone(f"process {_parent_pid} that started this one has exited")
