"""The process supervisor of `make run`: runs each line of Procfile.dev and restarts a process
that exits (backoff 1 s, 2 s, 4 s ... capped), so one crash never takes the whole app down.

honcho, which `make run` used before, stops every process when one exits; a development stack
should behave like the platform instead, which restarts a crashed dyno on its own.

Each process starts in a session of its own, and everything it forks stays in that session — RQ's
work horses too, although each lives in a process group of its own and ignores SIGTERM. A stop
(Ctrl-C) therefore SIGTERMs each process group, waits until no process is left in any of these
sessions (a horse finishes recording its slice), and SIGKILLs whatever still is after the grace.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

# A process that ran this long before exiting counts as healthy: its next restart is immediate-ish.
HEALTHY_RUN_SECONDS = 30.0
FIRST_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 8.0
STOP_GRACE_SECONDS = 10.0
POLL_SECONDS = 0.2
PROC = Path("/proc")


def read_procfile(path: Path) -> dict[str, str]:
    """{process name: command} from a Procfile (`name: command` per line; # comments)."""
    processes = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and ":" in line:
            name, command = line.split(":", 1)
            processes[name.strip()] = command.strip()
    return processes


@dataclass
class Supervised:
    """One Procfile process and its restart state."""

    name: str
    command: str
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    backoff: float = FIRST_BACKOFF_SECONDS
    restart_at: float | None = None
    restarts: int = field(default=0)


class Supervisor:
    """Starts every process, restarts the ones that exit, stops them all on SIGINT/SIGTERM."""

    def __init__(self, processes: dict[str, str], env: dict[str, str], cwd: Path) -> None:
        self.children = [Supervised(name, command) for name, command in processes.items()]
        self.env = env
        self.cwd = cwd
        self.stopping = False
        self.sessions: set[int] = set()  # one per process started: its pid (start_new_session)

    def run(self) -> int:
        """Block until SIGINT/SIGTERM, keeping every process running; returns 0."""
        previous = {sig: signal.signal(sig, self._request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            for child in self.children:
                self._start(child)
            while not self.stopping:
                self._watch()
                time.sleep(POLL_SECONDS)
        finally:
            self.stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 0

    def _request_stop(self, signum, frame) -> None:
        self.stopping = True

    def _start(self, child: Supervised) -> None:
        # Own session: a stop reaches the process and its children (RQ's work horses) together.
        child.process = subprocess.Popen(
            ["/bin/sh", "-c", "exec " + child.command], cwd=self.cwd, env=self.env, start_new_session=True
        )
        self.sessions.add(child.process.pid)
        child.started_at = time.monotonic()
        child.restart_at = None
        print(f"* {child.name} started (pid {child.process.pid})", flush=True)

    def _watch(self) -> None:
        self._forget_empty_sessions()
        now = time.monotonic()
        for child in self.children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    child.restarts += 1
                    self._start(child)
                continue
            code = child.process.poll() if child.process else None
            if code is None:
                continue
            if now - child.started_at >= HEALTHY_RUN_SECONDS:
                child.backoff = FIRST_BACKOFF_SECONDS
            child.restart_at = now + child.backoff
            print(f"* {child.name} exited with code {code}; restarting in {child.backoff:.0f} s", flush=True)
            child.backoff = min(MAX_BACKOFF_SECONDS, child.backoff * 2)

    def _forget_empty_sessions(self) -> None:
        """Drop the sessions of exited processes once nothing is left in them (a horse that
        outlived its worker finishes first): their numbers may be reused by anyone later."""
        running = {child.process.pid for child in self.children if child.process and child.process.poll() is None}
        if self.sessions - running:
            self.sessions = running | set(processes_in_sessions(self.sessions).values())

    def stop_all(self) -> None:
        """SIGTERM every process group, wait until nothing is left in their sessions (work horses
        included), and SIGKILL what still is after the grace period."""
        running = [child.process for child in self.children if child.process and child.process.poll() is None]
        for process in running:
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while time.monotonic() < deadline:
            exited = [process.poll() is not None for process in running]  # reaps them, too
            if all(exited) and not processes_in_sessions(self.sessions):
                return
            time.sleep(POLL_SECONDS)
        for process in running:
            _signal_group(process, signal.SIGKILL)
        for pid in processes_in_sessions(self.sessions):  # a horse, in a process group of its own
            _kill(pid, signal.SIGKILL)
        for process in running:
            process.wait()


def processes_in_sessions(sessions: set[int]) -> dict[int, int]:
    """{pid: session} of the live processes (zombies aside) in one of `sessions` (Linux /proc; {} elsewhere)."""
    found = {}
    for stat in PROC.glob("[0-9]*/stat"):
        try:
            # "pid (comm) state ppid pgrp session ...": comm may hold spaces and parentheses.
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # exited meanwhile
        if fields[0] != "Z" and int(fields[3]) in sessions:
            found[int(stat.parent.name)] = int(fields[3])
    return found


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass

