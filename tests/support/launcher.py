"""`make run` as a user runs it, for end-to-end tests: the dev launcher (`python -m
mailadmin.devtools.run`) in a session of its own, its output read back, and Ctrl-C sent the way a
terminal sends it (SIGINT to the foreground process group); and which processes on this machine
still belong to one test's instance (its files under the test's own directory)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

from mailadmin.devtools.redis_server import free_port
from mailadmin.settings import PROJECT_ROOT
from tests.support.waiting import wait_until

# The suite's own settings must not leak into the launcher: it starts what is missing by itself.
_NOT_INHERITED = ("DATABASE_URL", "REDIS_URL", "SMTP_URL", "TEST_", "SECRET_KEY", "PYTEST", "MAILER_")


class Launcher:
    """One `make run` (the dev launcher) with `env` over a clean copy of this environment."""

    def __init__(self, instance_dir: Path, **env: str) -> None:
        self.instance_dir = instance_dir
        self.port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(_NOT_INHERITED)}
        self.env.update(
            PORT=str(self.port), DATABASE_URL=f"sqlite:///{instance_dir / 'dev.sqlite3'}", PYTHONUNBUFFERED="1",
            DEMO_CREDENTIALS_FILE=str(instance_dir / "demo-credentials.txt"),
        )
        self.env.update(env)
        self.process: subprocess.Popen | None = None
        self._output: list[str] = []

    def start(self) -> Launcher:
        """Start the launcher and wait until it says where the app is (migrated and seeded)."""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mailadmin.devtools.run"], cwd=PROJECT_ROOT, env=self.env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )
        stream = self.process.stdout
        threading.Thread(target=lambda: self._output.extend(iter(stream.readline, "")), daemon=True).start()
        wait_until(lambda: "Open http://" in self.text() or self.process.poll() is not None, 120, interval=0.2,
                   message="the launcher to be ready")
        assert self.process.poll() is None, f"the launcher exited:\n{self.text()[-3000:]}"
        return self

    def text(self) -> str:
        """Everything the launcher and its processes printed so far."""
        return "".join(self._output)

    @property
    def redis_url(self) -> str:
        """The URL of the redis-server the launcher started."""
        return re.search(r"redis-server on (redis://\S+)", self.text()).group(1)

    def interrupt(self) -> None:
        """Ctrl-C in the terminal: SIGINT to the launcher's whole foreground process group."""
        os.killpg(self.process.pid, signal.SIGINT)

    def stop(self, timeout: float = 30) -> None:
        """Ctrl-C and wait for the launcher to exit (SIGKILL its group if it does not)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.interrupt()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            raise


def processes_of(directory: Path) -> dict[int, str]:
    """{pid: command line} of every process on this machine that belongs to `directory`: started
    with it in its environment or command line, working in it, or holding a file under it open."""
    marker = str(directory).encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            if not cmdline:
                continue  # a zombie, or a kernel thread
            owned = marker in (entry / "environ").read_bytes() or marker in cmdline
            owned = owned or _works_in(entry, marker)
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if owned:
            found[int(entry.name)] = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
    return found


def _works_in(entry: Path, marker: bytes) -> bool:
    """Is the process's working directory or one of its open files under `marker`?"""
    if os.fsencode(os.readlink(entry / "cwd")).startswith(marker):
        return True
    for fd in (entry / "fd").iterdir():
        try:
            if os.fsencode(os.readlink(fd)).startswith(marker):
                return True
        except OSError:
            continue
    return False
