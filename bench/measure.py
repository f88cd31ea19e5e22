"""Running real worker processes on a campaign and charging their CPU, and the database's and Redis', to it.

`run_campaign_with_workers` starts `workers` × `python worker.py`, starts the campaign, waits until it
is finished, stops the workers (SIGTERM) and returns the wall time and the CPU seconds spent by:

* the workers and their work horses (/proc: the workers' own CPU and their reaped children's, from
  when they are ready until they are idle again);
* the PostgreSQL backends serving the scratch database (sampled from /proc every 50 ms while the
  campaign runs: backends come and go with each work horse, so the last sample of each counts; the
  backend of the bench's own status polling is left out);
* redis-server (`INFO cpu`; exact for the bench's own embedded server).

With `log_dir`, the workers' JSON logs go there and two more figures are read back from them: the
SMTP round trips the client really spent (each slice logs "SMTP connections closed" with the
messages its transports handed over and the writes that waited for a reply:
`CampaignRun.round_trips_per_message`), and the steady rate — messages per second between the
10th and the 90th percentile of the "Email sent successfully" times, i.e. without a slice's start
(job start, session set-up, slow start) and the campaign's last messages.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa

PROJECT_ROOT = Path(__file__).resolve().parent.parent
_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class CampaignRun:
    """What one run cost: wall seconds and CPU seconds per party."""

    seconds: float
    sent: int
    worker_cpu: float
    postgresql_cpu: float | None
    redis_cpu: float | None
    smtp_messages: int | None = None  # as counted by the transports (None: no log read, or none logged)
    smtp_round_trips: int | None = None
    steady_rate: float | None = None  # msg/s between the 10th and 90th percentile of send times

    @property
    def round_trips_per_message(self) -> float | None:
        if not self.smtp_messages:
            return None
        return self.smtp_round_trips / self.smtp_messages

    @property
    def rate(self) -> float:
        return self.sent / self.seconds

    def cpu_ms_per_message(self) -> dict[str, float | None]:
        parts = {"worker": self.worker_cpu, "postgresql": self.postgresql_cpu, "redis": self.redis_cpu}
        result = {name: round(value * 1000 / self.sent, 3) if value is not None else None for name, value in parts.items()}
        result["total"] = round(sum(v for v in parts.values() if v is not None) * 1000 / self.sent, 3)
        return result


def process_cpu(pid: int, *, with_children: bool = False) -> float | None:
    """User + system CPU seconds of a live process, and of its reaped children if asked (None when gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        used = int(fields[11]) + int(fields[12])
        if with_children:
            used += int(fields[13]) + int(fields[14])
        return used / _TICKS
    except (OSError, IndexError, ValueError):
        return None


class BackendCpuSampler:
    """CPU of the PostgreSQL backends of one database, sampled in a thread (None when not on this host)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.available = engine.dialect.name == "postgresql"
        # The bench's own backends (it polls the campaign's status): not the product's cost.
        self.exclude: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> BackendCpuSampler:
        if self.available:
            self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self.available:
            self._thread.join(10)

    def _run(self) -> None:
        with self.engine.connect() as conn:
            query = sa.text("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
            while True:
                for (pid,) in conn.execute(query).all():
                    cpu = None if pid in self.exclude else process_cpu(pid)
                    if cpu is None:
                        continue
                    self.first.setdefault(pid, cpu)
                    self.last[pid] = cpu
                conn.commit()
                if self._stop.wait(0.05):
                    return

    @property
    def seconds(self) -> float | None:
        if not self.available or not self.last:
            return None
        # A backend first seen mid-run already spent a little (its connect): counted from its first sample.
        return sum(self.last[pid] - self.first[pid] for pid in self.last if pid not in self.exclude)


def redis_cpu_seconds(client) -> float | None:
    try:
        info = client.info("cpu")
    except Exception:  # a benchmark still reports the rest
        return None
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def workers_cpu(workers: list[subprocess.Popen]) -> float:
    """CPU seconds of the worker processes and their reaped work horses so far."""
    return sum(process_cpu(worker.pid, with_children=True) or 0.0 for worker in workers)


def wait_until_idle(redis_client, timeout: float = 10) -> None:
    """Until no worker runs a job (its work horse is reaped, so its CPU is in the worker's account)."""
    from rq import Worker

    deadline = time.monotonic() + timeout
    while any(worker.get_state() != "idle" for worker in Worker.all(connection=redis_client)):
        if time.monotonic() > deadline:
            return
        time.sleep(0.02)


def start_workers(env: dict[str, str], count: int, log_dir: Path | None = None) -> list[subprocess.Popen]:
    """`count` × `python worker.py`, their logs (stdout) in `log_dir`/worker-<i>.log or discarded."""
    environ = {**os.environ, **env, "APP_ENV": "production"}
    workers = []
    for i in range(count):
        log = open(log_dir / f"worker-{i}.log", "wb") if log_dir is not None else subprocess.DEVNULL  # noqa: SIM115
        try:
            workers.append(subprocess.Popen([sys.executable, "worker.py", "--name", f"bench-{os.getpid()}-{i}"],
                                            cwd=PROJECT_ROOT, env=environ, stdout=log, stderr=subprocess.DEVNULL))
        finally:
            if log_dir is not None:
                log.close()  # the child holds its own copy
    return workers


@dataclass
class LogFigures:
    """What the workers' logs tell: the transports' counts and the steady rate."""

    smtp_messages: int | None
    smtp_round_trips: int | None
    steady_rate: float | None


def log_figures(log_dir: Path) -> LogFigures:
    """The SMTP counts the workers' transports reported in `log_dir`, and the steady send rate."""
    messages = round_trips = 0
    sent_at: list[float] = []
    for path in log_dir.glob("worker-*.log"):
        with open(path, encoding="utf-8", errors="replace") as log:
            for line in log:
                if "Email sent successfully" in line:
                    sent_at.append(datetime.fromisoformat(json.loads(line)["timestamp"]).timestamp())
                elif "SMTP connections closed" in line:
                    record = json.loads(line)
                    messages += record.get("messages", 0)
                    round_trips += record.get("round_trips", 0)
    sent_at.sort()
    steady = None
    if len(sent_at) >= 50:
        first, last = len(sent_at) // 10, len(sent_at) * 9 // 10
        steady = (last - first) / (sent_at[last] - sent_at[first])
    return LogFigures(messages or None, round_trips or None, steady)


def stop_workers(workers: list[subprocess.Popen]) -> None:
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(10)


def wait_for_workers(redis_client, count: int, timeout: float = 30) -> None:
    """Until `count` workers are registered with RQ (so the first job does not wait for imports)."""
    from rq import Worker

    deadline = time.monotonic() + timeout
    while len(Worker.all(connection=redis_client)) < count:
        if time.monotonic() > deadline:
            raise RuntimeError("bench workers did not start")
        time.sleep(0.05)


def run_campaign_with_workers(env: dict[str, str], campaign_id: int, owner, workers: int, timeout: float = 900,
                              log_dir: Path | None = None) -> CampaignRun:
    """Start the campaign on `workers` fresh worker processes; return its cost once it is finished
    (and, with `log_dir`, the SMTP round trips read from their logs)."""
    from redis import Redis

    from mailadmin.extensions import db
    from mailadmin.models import Campaign
    from mailadmin.services.campaigns import start_campaign

    redis_client = Redis.from_url(env["REDIS_URL"])
    processes = start_workers(env, workers, log_dir)
    try:
        wait_for_workers(redis_client, workers)
        # From here on: start-up (imports, app) is not the campaign's cost.
        cpu_before, redis_before = workers_cpu(processes), redis_cpu_seconds(redis_client)
        with BackendCpuSampler(db.engine) as sampler:
            started = time.perf_counter()
            start_campaign(db.session.get(Campaign, campaign_id), owner, enforce_throttle=False)
            campaign = _wait_until_finished(campaign_id, started + timeout, sampler.exclude)
            seconds = time.perf_counter() - started
            redis_after = redis_cpu_seconds(redis_client)
        wait_until_idle(redis_client)
        worker_cpu = workers_cpu(processes) - cpu_before
    finally:
        stop_workers(processes)
        redis_client.close()
    redis_cpu = redis_after - redis_before if redis_before is not None and redis_after is not None else None
    logged = log_figures(log_dir) if log_dir is not None else LogFigures(None, None, None)
    return CampaignRun(seconds, campaign.sent_count, worker_cpu, sampler.seconds, redis_cpu,
                       logged.smtp_messages, logged.smtp_round_trips, logged.steady_rate)


def _wait_until_finished(campaign_id: int, deadline: float, own_backends: set[int]):
    from mailadmin.extensions import db
    from mailadmin.models import Campaign

    while True:
        db.session.expire_all()
        campaign = db.session.get(Campaign, campaign_id)
        if db.engine.dialect.name == "postgresql":
            own_backends.add(db.session.connection().connection.driver_connection.info.backend_pid)
        db.session.commit()  # end the read transaction so the next look sees new commits
        if campaign.status == "finished":
            if campaign.sent_count != campaign.recipients_total:
                raise RuntimeError(f"bench campaign finished with {campaign.sent_count} of {campaign.recipients_total} sent")
            return campaign
        if campaign.status not in ("queued", "sending"):
            raise RuntimeError(f"bench campaign ended {campaign.status}")
        if time.perf_counter() > deadline:
            raise RuntimeError("bench campaign did not finish in time")
        time.sleep(0.02)
