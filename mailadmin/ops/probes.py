"""Probes of this machine: is a process still alive? (A SIGKILLed worker keeps its RQ registration
for up to worker_ttl + 60 s; on the worker's own host its PID says at once that it is gone.)"""

from __future__ import annotations

import os


def process_alive(pid: int) -> bool:
    """Does a (non-zombie) process with this PID exist on this machine?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"  # SIGKILLed but not yet reaped by its parent
    except (OSError, IndexError):
        return True  # no /proc (macOS): kill(0) is all we can know
