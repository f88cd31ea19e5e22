"""Every uncaught exception of a real process becomes ONE JSON record in production: a crash in
the main thread or in a thread, a failing or mistyped `flask` command, a process that cannot start
because of its configuration. Nothing on stdout or stderr is anything but JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mailadmin.settings import PROJECT_ROOT


@pytest.fixture
def json_env(base_env) -> dict[str, str]:
    environ = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST")}
    environ.update(base_env)
    environ.update(LOG_FORMAT="json", PYTHONUNBUFFERED="1")
    return environ


def run(command: list[str], environ: dict[str, str]) -> tuple[int, list[dict]]:
    """Run a process to its end: (exit code, every line of stdout and stderr parsed as JSON)."""
    done = subprocess.run(command, cwd=PROJECT_ROOT, env=environ, capture_output=True, text=True, timeout=60)
    records = []
    for stream in (done.stdout, done.stderr):
        for line in stream.splitlines():
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except ValueError:
                pytest.fail(f"not a JSON line: {line[:300]!r}\n--- stderr:\n{done.stderr[-2000:]}")
    return done.returncode, records


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_an_uncaught_exception_in_the_main_thread_is_one_json_record(json_env):
    code, records = run(python("from mailadmin import create_app; create_app(); raise RuntimeError('boom')"), json_env)

    assert code == 1
    crashes = [record for record in records if record["level"] == "CRITICAL"]
    assert len(crashes) == 1
    assert crashes[0]["exception"]["type"] == "RuntimeError"
    assert "boom" in crashes[0]["exception"]["value"]


def test_an_uncaught_exception_in_a_thread_is_one_json_record(json_env):
    script = (
        "import threading; from mailadmin import create_app; create_app();"
        "t = threading.Thread(target=lambda: 1 / 0, name='doomed'); t.start(); t.join()"
    )
    code, records = run(python(script), json_env)

    assert code == 0
    crashes = [record for record in records if record["message"] == "Uncaught exception in a thread"]
    assert len(crashes) == 1 and crashes[0]["thread"] == "doomed"
    assert crashes[0]["exception"]["type"] == "ZeroDivisionError"


def test_a_mistyped_flask_command_is_one_json_record(json_env):
    code, records = run([sys.executable, "-m", "flask", "--app", "wsgi", "no-such-command"], json_env)

    assert code == 2
    errors = [record for record in records if record["level"] == "ERROR"]
    assert len(errors) == 1 and "no-such-command" in errors[0]["message"]


def test_a_flask_command_given_a_bad_option_is_one_json_record(json_env):
    code, records = run([sys.executable, "-m", "flask", "--app", "wsgi", "scheduler", "--interval", "x"], json_env)

    assert code == 2
    assert [record["exit_code"] for record in records if record["level"] == "ERROR"] == [2]


@pytest.mark.parametrize(
    "command",
    [
        ["worker.py", "--burst"],
        ["-m", "flask", "--app", "wsgi", "routes"],
        ["-m", "gunicorn", "wsgi:app", "--preload", "--bind", "127.0.0.1:0"],
    ],
    ids=["worker", "flask", "gunicorn"],
)
def test_a_process_refused_by_its_configuration_says_why_in_one_json_record(json_env, command):
    json_env["MAILER_SEND_BATCH_SIZE"] = "lots"
    code, records = run([sys.executable, *command], json_env)

    assert code != 0
    assert len(records) == 1
    assert records[0]["level"] == "CRITICAL" and "MAILER_SEND_BATCH_SIZE" in records[0]["message"]


@pytest.mark.parametrize(
    "command",
    [
        ["worker.py", "--burst"],
        ["-m", "flask", "--app", "wsgi", "routes"],
        ["-m", "gunicorn", "wsgi:app", "--preload", "--bind", "127.0.0.1:0"],
    ],
    ids=["worker", "flask", "gunicorn"],
)
def test_a_process_refused_by_its_configuration_names_every_bad_variable_one_json_record_each(json_env, command):
    without_public_url = {key: value for key, value in json_env.items() if key != "PUBLIC_URL"}
    without_public_url.update(APP_ENV="production", SECRET_KEY="too-short", MAILER_SMTP_MAX_PER_HOUR="lots")
    without_public_url.pop("MAILER_LOG_HASH_SALT", None)  # the default salt: refused in production

    code, records = run([sys.executable, *command], without_public_url)

    assert code != 0
    assert all(record["level"] == "CRITICAL" for record in records), records
    named = sorted(record["message"].split("configuration")[1].split(": ")[1] for record in records)
    assert named == ["MAILER_LOG_HASH_SALT", "MAILER_SMTP_MAX_PER_HOUR", "PUBLIC_URL", "SECRET_KEY"], records
