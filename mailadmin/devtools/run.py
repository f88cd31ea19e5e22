"""`make run`: the whole product on a bare machine with only Python.

Starts what is missing (a real redis-server when REDIS_URL is unset, a capture SMTP
server writing .eml files to instance/outbox when SMTP_URL is unset), migrates the
SQLite database, creates demo users once, signs with this install's random SECRET_KEY
(made once, kept in instance/secret_key), then runs web + worker + scheduler from
Procfile.dev under a small supervisor (`devtools.supervisor`) that restarts any process that
exits, with backoff. Ctrl-C stops everything this command started.

The demo credentials scroll away under the processes' logs, so they are saved in
`instance/demo-credentials.txt` (`DEMO_CREDENTIALS_FILE` elsewhere) and printed again in a
box once /healthz answers.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from mailadmin.devtools.redis_server import EmbeddedRedis, free_port
from mailadmin.devtools.supervisor import Supervisor, read_procfile
from mailadmin.settings import PROJECT_ROOT, SECRET_KEY_FILE, instance_secret_key


def _flask(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=PROJECT_ROOT, env=env, check=True)


READY_TIMEOUT_SECONDS = 180


def credentials_box(url: str, credentials: str | None, path: Path) -> str:
    """The "ready" box: where to open the app and how to log in."""
    lines = [f"mailadmin is ready: {url}"]
    if credentials:
        lines += ["Demo accounts:", *credentials.rstrip("\n").splitlines(), f"(saved in {path})"]
    else:
        lines += [f"No demo credentials in {path}: the users existed before.",
                  "Create one with: flask --app wsgi users create EMAIL --role admin"]
    width = max(len(line) for line in lines)
    rule = "+" + "-" * (width + 2) + "+"
    return "\n".join([rule, *(f"| {line.ljust(width)} |" for line in lines), rule])


def announce_when_ready(url: str, path: Path, timeout: float = READY_TIMEOUT_SECONDS) -> None:
    """Wait until /healthz answers, then print the credentials box (from a daemon thread)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "healthz", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        time.sleep(0.5)
    else:
        return
    credentials = path.read_text(encoding="utf-8") if path.exists() else None
    print("\n" + credentials_box(url, credentials, path) + "\n", flush=True)


def main() -> int:
    """Start the dev stack and block until Ctrl-C."""
    env = dict(os.environ)
    env.setdefault("PORT", "5000")
    env.setdefault("APP_ENV", "development")
    env.setdefault("PUBLIC_URL", f"http://127.0.0.1:{env['PORT']}")
    if not env.get("SECRET_KEY"):
        # This install's own random key, made on the first run and kept: sessions survive restarts.
        env["SECRET_KEY"] = instance_secret_key()
        print(f"* SECRET_KEY: this install's random key, kept in instance/{SECRET_KEY_FILE}")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    started: list = []
    try:
        if not env.get("REDIS_URL"):
            # Stopped last, by us: the terminal's Ctrl-C must not take Redis away from a work horse
            # that is still recording its slice.
            redis_server = EmbeddedRedis(own_session=True).start()
            started.append(redis_server)
            env["REDIS_URL"] = redis_server.url
            print(f"* Redis: started a local redis-server on {redis_server.url}")
        if not env.get("SMTP_URL"):
            from mailadmin.devtools.smtp_capture import CaptureSMTP

            outbox = PROJECT_ROOT / "instance" / "outbox"
            outbox.mkdir(parents=True, exist_ok=True)
            smtp_server = CaptureSMTP(port=free_port(), outbox_dir=str(outbox), keep_messages=False)
            smtp_server.start()
            started.append(smtp_server)
            env["SMTP_URL"] = smtp_server.url
            print(f"* SMTP: capturing all mail on {smtp_server.url}; messages are saved in {outbox}")
        _flask(env, "db", "upgrade")
        credentials = Path(env.get("DEMO_CREDENTIALS_FILE") or PROJECT_ROOT / "instance" / "demo-credentials.txt")
        _flask(env, "seed-demo", "--write-to", str(credentials))
        url = f"http://127.0.0.1:{env['PORT']}/"
        print(f"* Open {url}  (Ctrl-C stops everything)", flush=True)
        threading.Thread(target=announce_when_ready, args=(url, credentials), daemon=True).start()
        return Supervisor(read_procfile(PROJECT_ROOT / "Procfile.dev"), env, PROJECT_ROOT).run()
    finally:
        for service in reversed(started):
            service.stop()


if __name__ == "__main__":
    sys.exit(main())
