"""`make run`: the whole product on a bare machine with only Python.

Starts what is missing (a real redis-server when REDIS_URL is unset, a capture SMTP
server writing .eml files to instance/outbox when SMTP_URL is unset), migrates the
SQLite database, creates demo users once, signs with this install's random SECRET_KEY
(made once, kept in instance/secret_key), then runs web + worker + scheduler from
Procfile.dev under a small supervisor (`devtools.supervisor`) that restarts any process that
exits, with backoff. Ctrl-C stops everything this command started.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mailadmin.devtools.redis_server import EmbeddedRedis, free_port
from mailadmin.devtools.supervisor import Supervisor, read_procfile
from mailadmin.settings import PROJECT_ROOT, SECRET_KEY_FILE, instance_secret_key


def _flask(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=PROJECT_ROOT, env=env, check=True)


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
            redis_server = EmbeddedRedis().start()
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
        _flask(env, "seed-demo")
        print(f"* Open http://127.0.0.1:{env['PORT']}/  (Ctrl-C stops everything)")
        return Supervisor(read_procfile(PROJECT_ROOT / "Procfile.dev"), env, PROJECT_ROOT).run()
    finally:
        for service in reversed(started):
            service.stop()


if __name__ == "__main__":
    sys.exit(main())
