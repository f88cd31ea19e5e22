"""Real worker and scheduler processes that end-to-end tests start, SIGTERM and SIGKILL, with their
JSON log lines read back; every wait has a deadline (never bare sleeps). The `engine_processes`
fixture (tests/conftest.py) hands a test an `EngineProcesses` and stops all of it at teardown."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from mailadmin.settings import PROJECT_ROOT
from tests.support.waiting import wait_until


def _children(pid: int) -> list[int]:
    """Direct child pids (Linux /proc): an RQ worker's work horse lives in its own process group."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(part) for part in text.split()]


def is_alive(pid: int) -> bool:
    """Is `pid` a live process (a zombie nobody reaped yet counts as gone)?"""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


class ManagedProcess:
    """A child process whose output goes to a log file; JSON log lines can be read back."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.command = command
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen | None = None
        self._log = None

    def start(self) -> ManagedProcess:
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            self.command, cwd=PROJECT_ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT
        )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def records(self) -> list[dict]:
        """The JSON log records written so far (other lines are skipped)."""
        found = []
        for line in self.log_text().splitlines():
            line = line.strip()
            if line.startswith("{"):
                try:
                    found.append(json.loads(line))
                except ValueError:
                    continue
        return found

    def records_with(self, message: str) -> list[dict]:
        return [record for record in self.records() if record.get("message") == message]

    def wait_for_log(self, text: str, timeout: float = 20.0) -> None:
        wait_until(
            lambda: text in self.log_text() or not self.running,
            timeout,
            message=f"{self.name} to log {text!r}",
        )
        assert text in self.log_text(), f"{self.name} exited before logging {text!r}:\n{self.log_text()[-3000:]}"

    def descendants(self) -> list[int]:
        return _children(self.pid) if self.running else []

    def kill_alone(self) -> None:
        """SIGKILL this process only: a worker's work horse, in a process group of its own, is left."""
        _kill(self.pid, signal.SIGKILL)
        self.wait(10)

    def terminate(self) -> None:
        """SIGTERM, as the platform sends on a deploy or restart."""
        _kill(self.pid, signal.SIGTERM)

    def kill_hard(self) -> None:
        """SIGKILL the process and its children at once, as a crashed dyno or the OOM killer would."""
        children = self.descendants()
        for child in children:
            _kill(child, signal.SIGKILL)
        _kill(self.pid, signal.SIGKILL)
        self.wait(10)

    def wait(self, timeout: float) -> int | None:
        """The exit code, or None when still running at the deadline."""
        assert self.process is not None
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        """Teardown: SIGTERM, then SIGKILL whatever is left (work horses included)."""
        if self.process is None:
            return
        children = self.descendants()
        if self.running:
            self.terminate()
            if self.wait(10) is None:
                children += self.descendants()
                _kill(self.pid, signal.SIGKILL)
                self.wait(10)
        for child in children:
            _kill(child, signal.SIGKILL)
        if self._log is not None:
            self._log.close()


class EngineProcesses:
    """Starts worker and scheduler processes for one test and stops them all afterwards."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.started: list[ManagedProcess] = []

    def _environ(self, overrides: dict[str, str]) -> dict[str, str]:
        environ = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST")}
        environ.update(self.env)
        environ.update(overrides)
        environ["PYTHONUNBUFFERED"] = "1"
        return environ

    def worker(self, *, burst: bool = False, wait_ready: bool = True, **env: str) -> ManagedProcess:
        """Start `python worker.py` (a HerokuWorker on the send + default queues)."""
        index = len(self.started) + 1
        name = f"test-worker-{index}-{os.getpid()}"
        command = [sys.executable, "worker.py", "--name", name] + (["--burst"] if burst else [])
        process = ManagedProcess(name, command, self._environ(env), self.log_dir / f"{name}.log").start()
        self.started.append(process)
        if wait_ready and not burst:
            process.wait_for_log("Listening on")
        return process

    def scheduler(self, *, interval: float = 0.5, recovery_interval: float = 1.0, **env: str) -> ManagedProcess:
        """Start `flask --app wsgi scheduler` (continuations + the recovery sweep)."""
        name = f"test-scheduler-{len(self.started) + 1}"
        command = [
            sys.executable, "-m", "flask", "--app", "wsgi", "scheduler",
            "--interval", str(interval), "--recovery-interval", str(recovery_interval),
        ]
        process = ManagedProcess(name, command, self._environ(env), self.log_dir / f"{name}.log").start()
        self.started.append(process)
        process.wait_for_log("Scheduler starting")
        return process

    def all_records(self) -> list[dict]:
        return [record for process in self.started for record in process.records()]

    def stop_all(self) -> None:
        for process in reversed(self.started):
            process.stop()
