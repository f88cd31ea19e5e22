"""RQ and rq-scheduler as the diagnosis reads them: the Redis key names, workers, scheduler instances
and the jobs rq-scheduler holds. Read only: registries are counted without their clean-up.

How "dead" is decided (SPEC: a worker killed with SIGKILL keeps its RQ registration until the
registration's TTL expires, up to worker_ttl + 60 s later):

* a worker registered from THIS host whose PID no longer exists (or is a zombie) is dead at
  once — the doctor run on the worker's machine, and the tests, see a SIGKILL immediately;
* any worker whose last heartbeat is older than it would ever be while alive (an idle worker
  beats every worker_ttl - 15 s, a busy one every job_monitoring_interval) plus a grace is dead;
* a worker whose registration expired is simply gone; what it leaves behind — a campaign in
  `sending` that no job works on — is caught by the "stuck campaigns" check.

The scheduler (rq-scheduler) is alive when one of its instance keys `rq:scheduler_instance:<name>`
exists without a `death` field; that key expires interval + 10 s after its last heartbeat.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis import Redis
from rq import Queue, Worker
from rq.defaults import DEFAULT_JOB_MONITORING_INTERVAL, DEFAULT_WORKER_TTL
from rq.job import Job
from rq.registry import FailedJobRegistry, StartedJobRegistry
from rq.worker_registration import REDIS_WORKER_KEYS, WORKERS_BY_QUEUE_KEY
from rq_scheduler import Scheduler

from mailadmin.extensions import SEND_QUEUE
from mailadmin.models.types import utcnow
from mailadmin.ops.formatting import age_seconds, format_age
from mailadmin.ops.probes import process_alive
from mailadmin.queue.dispatch import campaign_id_of_continuation

# --- Redis key names the playbook's redis-cli commands use (tests check the docs against these) ---
RQ_QUEUE_KEY_PREFIX = Queue.redis_queue_namespace_prefix  # rq:queue:<name> — waiting job ids (a list)
RQ_QUEUES_KEY = Queue.redis_queues_keys  # rq:queues — every known queue
RQ_WORKERS_KEY = REDIS_WORKER_KEYS  # rq:workers — every registered worker key
RQ_WORKERS_BY_QUEUE_KEY_TEMPLATE = WORKERS_BY_QUEUE_KEY  # rq:workers:<queue>
RQ_WORKER_KEY_PREFIX = Worker.redis_worker_namespace_prefix  # rq:worker:<name> — hash with last_heartbeat
RQ_JOB_KEY_PREFIX = Job.redis_job_namespace_prefix  # rq:job:<id> — hash
RQ_FAILED_KEY_TEMPLATE = FailedJobRegistry.key_template  # rq:failed:<queue> — sorted set
RQ_STARTED_KEY_TEMPLATE = StartedJobRegistry.key_template  # rq:wip:<queue> — sorted set
SCHEDULER_INSTANCE_KEY_PREFIX = Scheduler.redis_scheduler_namespace_prefix  # rq:scheduler_instance:<name>
SCHEDULER_LOCK_KEY = Scheduler.scheduler_lock_key  # rq:scheduler_lock — held while dispatching
SCHEDULED_JOBS_KEY = Scheduler.scheduled_jobs_key  # rq:scheduler:scheduled_jobs — job id scored by Unix time
SEND_QUEUE_KEY = RQ_QUEUE_KEY_PREFIX + SEND_QUEUE

# A heartbeat this much later than the worker's own schedule means the process is gone.
WORKER_HEARTBEAT_GRACE_SECONDS = 30


@dataclass(frozen=True)
class WorkerInfo:
    """One registered RQ worker as the diagnosis sees it; `alive` is False with `dead_reason` set."""

    name: str
    hostname: str | None
    pid: int | None
    state: str
    queues: list[str]
    last_heartbeat: datetime | None
    heartbeat_age_seconds: float | None
    current_job_id: str | None
    alive: bool
    dead_reason: str | None


@dataclass(frozen=True)
class SchedulerInstance:
    """One rq-scheduler instance key; `alive` unless it registered its death."""

    key: str
    birth: datetime | None
    expires_in_seconds: int | None
    alive: bool


@dataclass(frozen=True)
class ScheduledJob:
    """A job held by rq-scheduler (a campaign's continuation when `campaign_id` is set)."""

    job_id: str
    campaign_id: int | None
    run_at: datetime
    late_seconds: float


def expected_heartbeat_interval(state: str) -> float:
    """Seconds between two heartbeats of a live RQ worker in `state` (RQ 3 defaults, or worker.py's)."""
    worker_ttl, monitoring = _worker_timing()
    if state == "busy":
        return monitoring
    return max(1, worker_ttl - 15)  # BaseWorker.dequeue_timeout: an idle worker beats once per BLPOP


def _worker_timing() -> tuple[int, int]:
    """(worker_ttl, job_monitoring_interval) the product's workers run with: worker.py keeps RQ's defaults."""
    return DEFAULT_WORKER_TTL, DEFAULT_JOB_MONITORING_INTERVAL


def _decode(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def list_workers(connection: Redis, now: datetime | None = None) -> list[WorkerInfo]:
    """Every registered RQ worker with its heartbeat, current job and whether it is alive."""
    now = now or utcnow()
    here = socket.gethostname()
    infos: list[WorkerInfo] = []
    for worker in sorted(Worker.all(connection=connection), key=lambda w: w.name):
        state = worker.get_state() or "?"
        heartbeat = worker.last_heartbeat
        if heartbeat is not None and heartbeat.tzinfo is None:
            heartbeat = heartbeat.replace(tzinfo=UTC)
        age = age_seconds(heartbeat, now)
        dead_reason = _dead_reason(worker, state, age, here)
        try:
            current = worker.get_current_job_id()
        except Exception:  # a half-written execution record must not break the diagnosis
            current = None
        infos.append(
            WorkerInfo(
                name=worker.name,
                hostname=worker.hostname,
                pid=worker.pid,
                state=state,
                queues=[q.name for q in worker.queues],
                last_heartbeat=heartbeat,
                heartbeat_age_seconds=age,
                current_job_id=current,
                alive=dead_reason is None,
                dead_reason=dead_reason,
            )
        )
    return infos


def _dead_reason(worker: Worker, state: str, heartbeat_age: float | None, here: str) -> str | None:
    """Why a registered worker is dead (None while it is alive); see the module docstring."""
    if worker.hostname == here and worker.pid and not process_alive(worker.pid):
        return f"process {worker.pid} is gone on {here}"
    if heartbeat_age is not None and heartbeat_age > expected_heartbeat_interval(state) + WORKER_HEARTBEAT_GRACE_SECONDS:
        return f"no heartbeat for {format_age(heartbeat_age)}"
    if state == "dead":
        return "registered its own death"
    return None


def list_scheduler_instances(connection: Redis) -> list[SchedulerInstance]:
    """rq-scheduler instance keys: alive when present without a `death` field."""
    instances = []
    for raw_key in connection.scan_iter(match=SCHEDULER_INSTANCE_KEY_PREFIX + "*", count=100):
        key = _decode(raw_key)
        data = {_decode(k): _decode(v) for k, v in connection.hgetall(key).items()}
        ttl = connection.ttl(key)
        birth = None
        if data.get("birth"):
            try:
                birth = datetime.fromtimestamp(float(data["birth"]), tz=UTC)
            except ValueError:
                birth = None
        instances.append(
            SchedulerInstance(key=key, birth=birth, expires_in_seconds=ttl if ttl >= 0 else None, alive="death" not in data)
        )
    return sorted(instances, key=lambda i: i.key)


def list_scheduled_jobs(connection: Redis, now: datetime | None = None, limit: int = 500) -> list[ScheduledJob]:
    """Jobs rq-scheduler holds (continuations first of all), soonest first, with their due time."""
    now = now or utcnow()
    jobs = []
    for raw_id, score in connection.zrange(SCHEDULED_JOBS_KEY, 0, limit - 1, withscores=True):
        job_id = _decode(raw_id)
        run_at = datetime.fromtimestamp(score, tz=UTC)
        jobs.append(
            ScheduledJob(
                job_id=job_id,
                campaign_id=campaign_id_of_continuation(job_id),
                run_at=run_at,
                late_seconds=max(0.0, (now - run_at).total_seconds()),
            )
        )
    return jobs
