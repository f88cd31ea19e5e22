"""Support for the send-engine tests: campaigns with many recipients, in-process RQ runs, and real
worker / scheduler processes that tests start, SIGTERM and SIGKILL, waiting on conditions with
deadlines (never bare sleeps).

Fixtures (import them into a test module: `from tests.support.workers import engine_processes_fixture`):
- `engine_processes`: starts `python worker.py` and `flask --app wsgi scheduler` processes with the
  test's `app_env`, and stops every one of them (and their work horses) at teardown.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from rq import Queue, SimpleWorker
from sqlalchemy import func, insert, select

from mailadmin.extensions import QUEUE_NAMES, db
from mailadmin.models import Campaign, Recipient, User
from mailadmin.models.campaign import DRAFT, R_PENDING
from mailadmin.models.types import utcnow
from mailadmin.settings import PROJECT_ROOT

DEFAULT_SUBJECT = "Hello {{ name }}"
DEFAULT_TEXT = "Hi {{ name }},\n\nthis is campaign mail for {{ email }}.\n"


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05, message: str = "") -> Any:
    """Poll `predicate` until it returns something truthy (returned); AssertionError at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {message or predicate}")
        time.sleep(interval)


# --- data --------------------------------------------------------------------------------


def recipient_address(index: int, domain: str = "example.test") -> str:
    """The address of the index-th generated recipient."""
    return f"user{index:05d}@{domain}"


def create_campaign(
    owner: User,
    recipients: int | list[str],
    *,
    subject: str = DEFAULT_SUBJECT,
    body_text: str = DEFAULT_TEXT,
    body_html: str | None = None,
    name: str = "Engine test campaign",
) -> Campaign:
    """A draft campaign with generated (or given) pending recipients, inserted in one statement."""
    emails = [recipient_address(i) for i in range(recipients)] if isinstance(recipients, int) else list(recipients)
    campaign = Campaign(
        owner_id=owner.id, name=name, subject=subject, body_text=body_text, body_html=body_html, status=DRAFT
    )
    db.session.add(campaign)
    db.session.flush()
    now = utcnow()
    if emails:
        db.session.execute(
            insert(Recipient.__table__),
            [
                {
                    "campaign_id": campaign.id,
                    "email": email,
                    "name": f"Person {index}",
                    "fields": None,
                    "status": R_PENDING,
                    "attempts": 0,
                    "updated_at": now,
                    "position": index + 1,
                }
                for index, email in enumerate(emails)
            ],
        )
    campaign.recipients_total = len(emails)
    db.session.commit()
    return campaign


def recipient_statuses(campaign_id: int) -> dict[str, int]:
    """{status: count} of a campaign's recipients, read fresh from the database."""
    db.session.commit()
    rows = db.session.execute(
        select(Recipient.status, func.count()).where(Recipient.campaign_id == campaign_id).group_by(Recipient.status)
    ).all()
    db.session.commit()
    return {status: count for status, count in rows}


def fresh_campaign(campaign_id: int) -> Campaign:
    """The campaign reloaded from the database (other processes changed it)."""
    db.session.commit()
    db.session.expire_all()
    return db.session.get(Campaign, campaign_id)


# --- in-process RQ -----------------------------------------------------------------------


def rq_connection(redis_url: str) -> redis.Redis:
    """A Redis client for RQ itself (RQ changes the socket timeout of the client it is given)."""
    return redis.Redis.from_url(redis_url)


def run_queued_jobs(redis_url: str, *, max_jobs: int | None = None) -> bool:
    """Run the queued jobs (and the continuations they enqueue) in this process with RQ's
    SimpleWorker in burst mode; True when at least one job ran."""
    connection = rq_connection(redis_url)
    try:
        queues = [Queue(name, connection=connection) for name in QUEUE_NAMES]
        worker = SimpleWorker(queues, connection=connection)
        return worker.work(burst=True, max_jobs=max_jobs, logging_level="WARNING")
    finally:
        connection.close()


def queued_job_count(redis_url: str) -> int:
    """Jobs waiting in the product's queues."""
    connection = rq_connection(redis_url)
    try:
        return sum(Queue(name, connection=connection).count for name in QUEUE_NAMES)
    finally:
        connection.close()


# --- processes ---------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    """Direct child pids (Linux /proc): an RQ worker's work horse lives in its own process group."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(part) for part in text.split()]


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


@pytest.fixture(name="engine_processes")
def engine_processes_fixture(app, app_env, tmp_path) -> Iterator[EngineProcesses]:
    """Real worker / scheduler processes for this test, all stopped at teardown (before the DB is emptied)."""
    processes = EngineProcesses(dict(app_env), tmp_path)
    try:
        yield processes
    finally:
        processes.stop_all()


# Also importable under the fixture's own name (`from tests.support.workers import engine_processes`);
# importing `engine_processes_fixture` instead keeps ruff's F811 quiet in the test module.
engine_processes = engine_processes_fixture
