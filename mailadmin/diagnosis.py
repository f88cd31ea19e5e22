"""The 60-second diagnosis, in ONE place: the operations page and `flask --app wsgi doctor` both call
`run_diagnosis()` and only differ in how they show the result.

Each check answers with a `CheckResult`: a status (ok | warning | critical), a one-line verdict
and the playbook section (`playbook/ONCALL.md#...`) that explains what to do. The checks follow
the order of the playbook's "60-second diagnosis" and read the same data its SQL, `redis-cli`
and `rq info` commands read. Nothing here changes the product's state: RQ registries are counted
without their clean-up, no job is moved (reading the rate limiter prunes expired reservations, as
every reservation does).

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
Continuations that are past due and still in `rq:scheduler:scheduled_jobs` prove it is not working
even when a key exists.
"""

from __future__ import annotations

import os
import re
import socket
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from redis import Redis
from rq import Queue, Worker
from rq.defaults import DEFAULT_JOB_MONITORING_INTERVAL, DEFAULT_WORKER_TTL
from rq.job import Job
from rq.registry import FailedJobRegistry, StartedJobRegistry
from rq.worker_registration import REDIS_WORKER_KEYS, WORKERS_BY_QUEUE_KEY
from rq_scheduler import Scheduler
from sqlalchemy import func, select, text

from mailadmin import health
from mailadmin.extensions import QUEUE_NAMES, SEND_QUEUE, db, get_redis, get_settings
from mailadmin.limits.rate_limiter import RATE_LIMIT_KEY, RATE_LIMIT_WINDOW_SECONDS, rate_limit_usage
from mailadmin.models import APP_STATE_ID, AppState, AuditEvent, Campaign, CampaignQueue
from mailadmin.models.campaign import (
    ACTIVE_STATUSES,
    CAMPAIGN_STATUSES,
    DEFERRED,
    PAUSED,
    QUEUED,
    REASON_BOUNCE_RATE,
    REASON_CIRCUIT_BREAKER,
    REASON_GLOBAL_PAUSE,
    SENDING,
)
from mailadmin.models.types import utcnow
from mailadmin.settings import PROJECT_ROOT

OK = "ok"
WARNING = "warning"
CRITICAL = "critical"
STATUSES = (OK, WARNING, CRITICAL)
_RANK = {OK: 0, WARNING: 1, CRITICAL: 2}

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

# --- thresholds ---
# A heartbeat this much later than the worker's own schedule means the process is gone.
WORKER_HEARTBEAT_GRACE_SECONDS = 30
# A job that has waited this long in a queue means no worker takes jobs (or far too few).
QUEUE_WAIT_WARNING_SECONDS = 5 * 60
QUEUE_WAIT_CRITICAL_SECONDS = 15 * 60
# rq-scheduler dispatches every `interval` seconds; a continuation this late was not dispatched.
SCHEDULER_LATE_SECONDS = 120
# The engine re-enqueues deferred campaigns this late (jobs.scheduling.OVERDUE_GRACE, 60 s) in its
# sweep; twice that and nothing has happened means the sweep (the scheduler process) is not running.
CAMPAIGN_OVERDUE_SECONDS = 180
# The recovery sweep runs every minute (`flask scheduler --recovery-interval`); a stale campaign
# still not re-enqueued this long after it went stale is not being recovered.
RECOVERY_GRACE_SECONDS = 180
BREAKER_WINDOW = timedelta(hours=24)
CIRCUIT_BREAKER_AUDIT_ACTION = "circuit_breaker_tripped"
# Rows listed per block; the counts are always complete.
LIST_LIMIT = 50

# --- the playbook ---
PLAYBOOK_DIR = PROJECT_ROOT / "playbook"
PLAYBOOK_FILES = {"oncall": "ONCALL.md", "observability": "OBSERVABILITY.md"}

# Sections of playbook/ONCALL.md the checks point to (GitHub-style heading slugs, see `heading_slug`).
A_DIAGNOSIS = "60-second-diagnosis"
A_DATABASE = "1-database"
A_REDIS = "2-redis"
A_SWITCH = "3-the-global-sending-switch"
A_QUEUES = "4-queues-and-failed-jobs"
A_WORKERS = "5-workers"
A_SCHEDULER = "6-the-scheduler-and-the-scheduled-continuations"
A_CAMPAIGNS = "7-campaigns-by-state"
A_STUCK = "8-stuck-and-overdue-campaigns"
A_UNKNOWN = "9-recipients-in-unknown"
A_BREAKER = "10-circuit-breaker-trips-in-the-last-24-h"
A_RATE_LIMIT = "11-rate-limit-usage"
A_SYMPTOM_DB_DOWN = "database-unreachable"
A_SYMPTOM_REDIS_DOWN = "redis-unreachable"
A_SYMPTOM_MIGRATIONS = "migrations-not-applied"
A_SYMPTOM_GLOBAL_PAUSE = "global_pause-all-sending-switched-off"
A_SYMPTOM_FAILED_JOBS = "failed-jobs-in-rq"
A_SYMPTOM_QUEUE_BACKLOG = "jobs-wait-in-the-queue"
A_SYMPTOM_WORKER_DEAD = "worker-dead"
A_SYMPTOM_SCHEDULER_DEAD = "scheduler-dead"
A_SYMPTOM_STUCK = "campaign-stuck-in-sending"
A_SYMPTOM_UNKNOWN = "recipients-in-unknown"
A_SYMPTOM_BREAKER = "circuit_breaker-paused-after-repeated-smtp-errors"
A_SYMPTOM_RATE_LIMIT = "rate_limit-hourly-quota-used-up"
A_SYMPTOM_BOUNCE_RATE = "bounce_rate-paused-because-its-list-bounces"


def heading_slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces -> '-'."""
    plain = re.sub(r"[^\w\- ]", "", heading.strip().lower())  # keeps snake_case, drops ` * : . ( )
    return plain.replace(" ", "-")


def playbook_path(name: str):
    """Path of a playbook file by its short name ('oncall', 'observability'); KeyError otherwise."""
    return PLAYBOOK_DIR / PLAYBOOK_FILES[name]


@dataclass(frozen=True)
class PlaybookRef:
    """A section of a playbook file: `name` is a key of PLAYBOOK_FILES, `anchor` a heading slug."""

    anchor: str
    name: str = "oncall"

    @property
    def path(self) -> str:
        """Where to read it in a checkout: playbook/ONCALL.md#anchor."""
        return f"playbook/{PLAYBOOK_FILES[self.name]}#{self.anchor}"


@dataclass
class CheckResult:
    """One line of the diagnosis; `details` carries what the operations page shows in the block."""

    key: str
    title: str
    status: str
    verdict: str
    playbook: PlaybookRef
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the status is ok."""
        return self.status == OK


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


@dataclass(frozen=True)
class CampaignState:
    """A started, not final campaign with its send-loop row."""

    id: int
    name: str
    status: str
    defer_reason: str | None
    deferred_until: datetime | None
    consecutive_transient_errors: int
    current_job_id: str | None
    heartbeat_at: datetime | None
    breaker_tripped_at: datetime | None
    last_error: str | None
    unknown_count: int


@dataclass(frozen=True)
class BreakerTrip:
    """One `circuit_breaker_tripped` audit row."""

    campaign_id: int | None
    campaign_name: str | None
    at: datetime
    details: dict | None


@dataclass
class Diagnosis:
    """All checks of one run, in playbook order."""

    checked_at: datetime
    checks: list[CheckResult]

    @property
    def status(self) -> str:
        """The worst status of any check."""
        return max((c.status for c in self.checks), key=_RANK.__getitem__, default=OK)

    def check(self, key: str) -> CheckResult:
        """The check named `key` (KeyError if there is none)."""
        for result in self.checks:
            if result.key == key:
                return result
        raise KeyError(key)


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------


def _age(moment: datetime | None, now: datetime) -> float | None:
    return None if moment is None else (now - moment).total_seconds()


def format_age(seconds: float | None) -> str:
    """'42 s', '7 min', '3 h', '2 d' — short, for one-line verdicts."""
    if seconds is None:
        return "never"
    seconds = abs(seconds)
    if seconds < 90:
        return f"{round(seconds)} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    if seconds < 36 * 3600:
        return f"{round(seconds / 3600)} h"
    return f"{round(seconds / 86400)} d"


def format_time(moment: datetime | None) -> str:
    """UTC, to the second: what every log line and the SQL in the playbook show."""
    return "—" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _plural(count: int, word: str, plural: str | None = None) -> str:
    return f"{count} {word if count == 1 else (plural or word + 's')}"


def process_alive(pid: int) -> bool:
    """Does a (non-zombie) process with this PID exist on this machine?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"  # SIGKILLed but not yet reaped by its parent
    except (OSError, IndexError):
        return True  # no /proc (macOS): kill(0) is all we can know


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


# ----------------------------------------------------------------------------------------------
# data gathering (shared by several checks)
# ----------------------------------------------------------------------------------------------


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
        age = _age(heartbeat, now)
        dead_reason = None
        if worker.hostname == here and worker.pid and not process_alive(worker.pid):
            dead_reason = f"process {worker.pid} is gone on {here}"
        elif age is not None and age > expected_heartbeat_interval(state) + WORKER_HEARTBEAT_GRACE_SECONDS:
            dead_reason = f"no heartbeat for {format_age(age)}"
        elif state == "dead":
            dead_reason = "registered its own death"
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
    from mailadmin.jobs.scheduling import campaign_id_of_continuation

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


def list_active_campaigns(limit: int = 500) -> list[CampaignState]:
    """Started, not final campaigns (queued, sending, deferred, paused) with their send-loop state."""
    rows = db.session.execute(
        select(Campaign, CampaignQueue)
        .outerjoin(CampaignQueue, CampaignQueue.campaign_id == Campaign.id)
        .where(Campaign.status.in_((*ACTIVE_STATUSES, PAUSED)))
        .order_by(Campaign.id)
        .limit(limit)
    ).all()
    states = []
    for campaign, queue in rows:
        states.append(
            CampaignState(
                id=campaign.id,
                name=campaign.name,
                status=campaign.status,
                defer_reason=queue.defer_reason if queue else None,
                deferred_until=queue.deferred_until if queue else None,
                consecutive_transient_errors=queue.consecutive_transient_errors if queue else 0,
                current_job_id=queue.current_job_id if queue else None,
                heartbeat_at=(queue.heartbeat_at or queue.updated_at) if queue else campaign.updated_at,
                breaker_tripped_at=queue.breaker_tripped_at if queue else None,
                last_error=queue.last_error if queue else None,
                unknown_count=campaign.unknown_count,
            )
        )
    return states


class _Context:
    """What the checks share within one run: clock, connections, lazily gathered data."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.settings = get_settings()
        self.db_ok = False
        self.redis_ok = False
        self._cache: dict[str, Any] = {}

    @property
    def redis(self) -> Redis:
        return get_redis()

    def cached(self, key: str, compute: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def workers(self) -> list[WorkerInfo]:
        return self.cached("workers", lambda: list_workers(self.redis, self.now))

    def scheduled(self) -> list[ScheduledJob]:
        return self.cached("scheduled", lambda: list_scheduled_jobs(self.redis, self.now))

    def campaigns(self) -> list[CampaignState]:
        return self.cached("campaigns", list_active_campaigns)

    def waiting_job_ids(self) -> set[str]:
        def compute() -> set[str]:
            ids: set[str] = set()
            for name in QUEUE_NAMES:
                ids.update(Queue(name, connection=self.redis).get_job_ids(0, 1000))
            return ids

        return self.cached("waiting", compute)


# ----------------------------------------------------------------------------------------------
# the checks, in playbook order
# ----------------------------------------------------------------------------------------------


def check_database(ctx: _Context) -> CheckResult:
    """Can we query the database, and are the migrations at head?"""
    status = health.check_database()
    db.session.rollback()
    if status != "ok":
        return CheckResult(
            "database", "Database", CRITICAL, f"unreachable or broken: {status.removeprefix('error: ')}",
            PlaybookRef(A_SYMPTOM_DB_DOWN),
        )
    ctx.db_ok = True
    dialect = db.engine.dialect.name
    try:
        current = list(db.session.execute(text("SELECT version_num FROM alembic_version")).scalars())
    except Exception:  # no alembic_version table: never migrated
        current = []
    db.session.rollback()
    heads = _migration_heads()
    details = {"dialect": dialect, "revision": ", ".join(current) or None, "head": ", ".join(sorted(heads)) or None}
    if heads and set(current) != heads:
        return CheckResult(
            "database", "Database", CRITICAL,
            f"reachable ({dialect}) but at revision {details['revision'] or 'none'}, head is {details['head']}: run `flask --app wsgi db upgrade`",
            PlaybookRef(A_SYMPTOM_MIGRATIONS), details,
        )
    return CheckResult("database", "Database", OK, f"reachable ({dialect}), migrations at head {details['head']}",
                       PlaybookRef(A_DATABASE), details)


def _migration_heads() -> set[str]:
    try:
        from alembic.script import ScriptDirectory

        return set(ScriptDirectory(str(PROJECT_ROOT / "migrations")).get_heads())
    except Exception:  # an unreadable migrations folder is not this check's business
        return set()


def check_redis(ctx: _Context) -> CheckResult:
    """Does Redis answer PING?"""
    try:
        ctx.redis.ping()
        info = ctx.redis.info("server")
    except Exception as exc:  # redis-py raises several unrelated classes for "down"
        return CheckResult(
            "redis", "Redis", CRITICAL,
            f"unreachable: {type(exc).__name__} — queues, throttles and the rate limiter are blind "
            "(starts and test emails are refused; sends go on without the quota, fail-open)",
            PlaybookRef(A_SYMPTOM_REDIS_DOWN),
        )
    ctx.redis_ok = True
    version = info.get("redis_version", "?")
    return CheckResult("redis", "Redis", OK, f"answers PING (redis {version})", PlaybookRef(A_REDIS),
                       {"version": version})


def check_sending_switch(ctx: _Context) -> CheckResult:
    """Is all sending switched off (AppState.sending_paused)?"""
    state = db.session.get(AppState, APP_STATE_ID)
    db.session.rollback()
    if state is None or not state.sending_paused:
        return CheckResult("sending_switch", "Global sending switch", OK, "sending is on", PlaybookRef(A_SWITCH),
                           {"paused": False})
    by = state.changed_by_id
    waiting = sum(1 for c in ctx.campaigns() if c.defer_reason == REASON_GLOBAL_PAUSE)
    return CheckResult(
        "sending_switch", "Global sending switch", WARNING,
        f"ALL SENDING IS OFF since {format_time(state.changed_at)} (user id {by}); "
        f"{_plural(waiting, 'campaign')} waiting with global_pause",
        PlaybookRef(A_SYMPTOM_GLOBAL_PAUSE),
        {"paused": True, "changed_at": state.changed_at, "changed_by_id": by, "waiting": waiting},
    )


def check_queues(ctx: _Context) -> CheckResult:
    """Queue depth, oldest waiting job, jobs running and failed jobs per RQ queue."""
    rows = []
    for name in QUEUE_NAMES:
        queue = Queue(name, connection=ctx.redis)
        depth = queue.count
        oldest_age = None
        first = queue.get_job_ids(0, 0)
        if first:
            job = queue.fetch_job(first[0])
            if job is not None and job.enqueued_at is not None:
                enqueued = job.enqueued_at if job.enqueued_at.tzinfo else job.enqueued_at.replace(tzinfo=UTC)
                oldest_age = _age(enqueued, ctx.now)
        rows.append({
            "name": name,
            "depth": depth,
            "oldest_wait_seconds": oldest_age,
            "started": StartedJobRegistry(queue=queue).get_job_count(cleanup=False),
            "failed": FailedJobRegistry(queue=queue).get_job_count(cleanup=False),
        })
    details = {"queues": rows}
    summary = "; ".join(f"{r['name']}: {r['depth']} waiting, {r['started']} running, {r['failed']} failed" for r in rows)
    longest = max((r["oldest_wait_seconds"] or 0 for r in rows), default=0)
    failed = sum(r["failed"] for r in rows)
    if longest >= QUEUE_WAIT_CRITICAL_SECONDS:
        return CheckResult("queues", "RQ queues", CRITICAL,
                           f"a job has waited {format_age(longest)} for a worker — {summary}",
                           PlaybookRef(A_SYMPTOM_QUEUE_BACKLOG), details)
    if longest >= QUEUE_WAIT_WARNING_SECONDS:
        return CheckResult("queues", "RQ queues", WARNING,
                           f"backlog: the oldest job has waited {format_age(longest)} — {summary}",
                           PlaybookRef(A_SYMPTOM_QUEUE_BACKLOG), details)
    if failed:
        return CheckResult("queues", "RQ queues", WARNING, f"{_plural(failed, 'failed job')} to look at — {summary}",
                           PlaybookRef(A_SYMPTOM_FAILED_JOBS), details)
    return CheckResult("queues", "RQ queues", OK, summary, PlaybookRef(A_QUEUES), details)


def check_workers(ctx: _Context) -> CheckResult:
    """Live workers on the send queue, and registrations of dead ones."""
    workers = ctx.workers()
    live = [w for w in workers if w.alive]
    dead = [w for w in workers if not w.alive]
    live_on_send = [w for w in live if SEND_QUEUE in w.queues]
    details = {"workers": workers, "live": len(live), "dead": len(dead)}
    busy = sum(1 for w in live if w.current_job_id)
    dead_text = ""
    if dead:
        dead_text = "; dead: " + ", ".join(f"{w.name} ({w.dead_reason})" for w in dead[:5])
    if not live_on_send:
        return CheckResult("workers", "Workers", CRITICAL,
                           f"no live worker on {SEND_QUEUE}: nothing is sent{dead_text}",
                           PlaybookRef(A_SYMPTOM_WORKER_DEAD), details)
    verdict = f"{_plural(len(live), 'live worker')} ({busy} busy)"
    if dead:
        return CheckResult("workers", "Workers", WARNING, verdict + dead_text, PlaybookRef(A_SYMPTOM_WORKER_DEAD),
                           details)
    return CheckResult("workers", "Workers", OK, verdict, PlaybookRef(A_WORKERS), details)


def check_scheduler(ctx: _Context) -> CheckResult:
    """rq-scheduler alive, and the continuations it holds dispatched on time."""
    instances = list_scheduler_instances(ctx.redis)
    alive = [i for i in instances if i.alive]
    scheduled = ctx.scheduled()
    late = [j for j in scheduled if j.late_seconds > SCHEDULER_LATE_SECONDS]
    lock_held = bool(ctx.redis.exists(SCHEDULER_LOCK_KEY))
    details = {"instances": instances, "scheduled": scheduled, "lock_held": lock_held}
    next_text = f"next continuation {format_time(scheduled[0].run_at)}" if scheduled else "nothing scheduled"
    count_text = _plural(len(scheduled), "scheduled job")
    if late:
        return CheckResult(
            "scheduler", "Scheduler", CRITICAL,
            f"{_plural(len(late), 'continuation')} overdue by up to {format_age(max(j.late_seconds for j in late))}: "
            f"rq-scheduler is not dispatching ({_plural(len(alive), 'live instance')})",
            PlaybookRef(A_SYMPTOM_SCHEDULER_DEAD), details,
        )
    if not alive:
        deferred = [c for c in ctx.campaigns() if c.status == DEFERRED and c.defer_reason != REASON_GLOBAL_PAUSE]
        if scheduled or deferred:
            return CheckResult(
                "scheduler", "Scheduler", CRITICAL,
                f"no rq-scheduler running: {count_text} and {_plural(len(deferred), 'deferred campaign')} will never resume",
                PlaybookRef(A_SYMPTOM_SCHEDULER_DEAD), details,
            )
        return CheckResult("scheduler", "Scheduler", WARNING,
                           "no rq-scheduler running (nothing waits for it yet; deferred campaigns would never resume)",
                           PlaybookRef(A_SYMPTOM_SCHEDULER_DEAD), details)
    return CheckResult("scheduler", "Scheduler", OK,
                       f"{_plural(len(alive), 'instance')} alive; {count_text}, {next_text}",
                       PlaybookRef(A_SCHEDULER), details)


def check_campaigns(ctx: _Context) -> CheckResult:
    """Campaigns by state, with defer/pause reasons; a breaker pause waits for an admin."""
    counts = dict(db.session.execute(select(Campaign.status, func.count()).group_by(Campaign.status)).all())
    db.session.rollback()
    by_status = {status: counts.get(status, 0) for status in CAMPAIGN_STATUSES}
    campaigns = ctx.campaigns()
    reasons = Counter(c.defer_reason for c in campaigns if c.status in (DEFERRED, PAUSED) and c.defer_reason)
    details = {"by_status": by_status, "reasons": dict(reasons), "campaigns": campaigns[:LIST_LIMIT]}
    summary = ", ".join(f"{by_status[s]} {s}" for s in (QUEUED, SENDING, DEFERRED, PAUSED) if by_status[s]) or "none active"
    if reasons:
        summary += " (" + ", ".join(f"{n} {r}" for r, n in reasons.most_common()) + ")"
    if reasons.get(REASON_CIRCUIT_BREAKER):
        return CheckResult("campaigns", "Campaigns by state", WARNING,
                           f"{summary}: paused by the circuit breaker, an admin must resume",
                           PlaybookRef(A_SYMPTOM_BREAKER), details)
    if reasons.get(REASON_BOUNCE_RATE):
        return CheckResult("campaigns", "Campaigns by state", WARNING,
                           f"{summary}: paused for too many bounces and complaints, an admin must resume",
                           PlaybookRef(A_SYMPTOM_BOUNCE_RATE), details)
    return CheckResult("campaigns", "Campaigns by state", OK, summary, PlaybookRef(A_CAMPAIGNS), details)


def check_stuck_campaigns(ctx: _Context) -> CheckResult:
    """`sending`/`queued` campaigns no job works on, and `deferred` ones long past `deferred_until`."""
    stale_after = ctx.settings.stale_claim_seconds
    waiting = ctx.waiting_job_ids()
    running = {w.current_job_id for w in ctx.workers() if w.alive and w.current_job_id}
    on_dead_worker = {w.current_job_id for w in ctx.workers() if not w.alive and w.current_job_id}
    scheduled_for = {j.campaign_id for j in ctx.scheduled() if j.campaign_id is not None}
    stuck: list[dict] = []
    overdue: list[dict] = []
    for c in ctx.campaigns():
        if c.status in (QUEUED, SENDING):
            age = _age(c.heartbeat_at, ctx.now)
            job = c.current_job_id
            if job in running or job in waiting:
                continue
            if job in on_dead_worker or age is None or age > stale_after:
                why = "its job was on a dead worker" if job in on_dead_worker else f"no progress for {format_age(age)}"
                # The scheduler's recovery sweep re-enqueues such a campaign once it is stale; past
                # that (plus a sweep interval) nothing is recovering it.
                overdue_recovery = age is None or age > stale_after + RECOVERY_GRACE_SECONDS
                stuck.append({"campaign": c, "why": why, "critical": overdue_recovery})
        elif c.status == DEFERRED and c.deferred_until is not None and c.defer_reason != REASON_GLOBAL_PAUSE:
            late = (ctx.now - c.deferred_until).total_seconds()
            if late > CAMPAIGN_OVERDUE_SECONDS:
                where = "its continuation is still in the scheduler" if c.id in scheduled_for else "no continuation exists"
                overdue.append({"campaign": c, "late_seconds": late, "why": where})
    details = {"stuck": stuck, "overdue": overdue, "stale_after_seconds": stale_after}
    if stuck or overdue:
        parts = []
        if stuck:
            parts.append(f"{_plural(len(stuck), 'campaign')} stuck in sending/queued with no live job ("
                         + ", ".join(f"#{s['campaign'].id}: {s['why']}" for s in stuck[:5]) + ")")
        if overdue:
            parts.append(f"{_plural(len(overdue), 'deferred campaign')} overdue ("
                         + ", ".join(f"#{o['campaign'].id} by {format_age(o['late_seconds'])}, {o['why']}" for o in overdue[:5])
                         + ")")
        anchor = A_SYMPTOM_STUCK if stuck else A_SYMPTOM_SCHEDULER_DEAD
        status = CRITICAL if overdue or any(s["critical"] for s in stuck) else WARNING
        if status == WARNING:
            parts.append("the scheduler's recovery sweep should re-enqueue it within a minute or two")
        return CheckResult("stuck", "Stuck and overdue campaigns", status, "; ".join(parts), PlaybookRef(anchor), details)
    return CheckResult("stuck", "Stuck and overdue campaigns", OK,
                       "every sending campaign has a live or waiting job; no deferred campaign is overdue",
                       PlaybookRef(A_STUCK), details)


def check_unknown_recipients(ctx: _Context) -> CheckResult:
    """Recipients whose SMTP outcome cannot be known (a job died mid-batch): a human decides."""
    rows = db.session.execute(
        select(Campaign.id, Campaign.name, Campaign.status, Campaign.unknown_count)
        .where(Campaign.unknown_count > 0)
        .order_by(Campaign.unknown_count.desc())
        .limit(LIST_LIMIT)
    ).all()
    total = db.session.scalar(select(func.coalesce(func.sum(Campaign.unknown_count), 0))) or 0
    db.session.rollback()
    details = {"total": int(total), "campaigns": [dict(r._mapping) for r in rows]}
    if total:
        listed = ", ".join(f"#{r.id}: {r.unknown_count}" for r in rows[:5])
        return CheckResult("unknown", "Recipients in unknown", WARNING,
                           f"{_plural(int(total), 'recipient')} in unknown ({listed}): decide before re-queueing",
                           PlaybookRef(A_SYMPTOM_UNKNOWN), details)
    return CheckResult("unknown", "Recipients in unknown", OK, "none", PlaybookRef(A_UNKNOWN), details)


def check_breaker_trips(ctx: _Context) -> CheckResult:
    """Circuit breaker trips in the last 24 hours (audit log)."""
    since = ctx.now - BREAKER_WINDOW
    rows = db.session.execute(
        select(AuditEvent.campaign_id, Campaign.name, AuditEvent.created_at, AuditEvent.details)
        .outerjoin(Campaign, Campaign.id == AuditEvent.campaign_id)
        .where(AuditEvent.action == CIRCUIT_BREAKER_AUDIT_ACTION, AuditEvent.created_at >= since)
        .order_by(AuditEvent.created_at.desc())
        .limit(LIST_LIMIT)
    ).all()
    db.session.rollback()
    trips = [BreakerTrip(r.campaign_id, r.name, r.created_at, r.details) for r in rows]
    details = {"trips": trips, "threshold": ctx.settings.circuit_breaker_threshold}
    if trips:
        campaigns = sorted({t.campaign_id for t in trips if t.campaign_id is not None})
        return CheckResult(
            "breaker", "Circuit breaker (24 h)", WARNING,
            f"{_plural(len(trips), 'trip')} in 24 h (campaigns {', '.join(f'#{i}' for i in campaigns)}), "
            f"last {format_time(trips[0].at)}: the SMTP server keeps failing",
            PlaybookRef(A_SYMPTOM_BREAKER), details,
        )
    return CheckResult("breaker", "Circuit breaker (24 h)", OK, "no trip in 24 h", PlaybookRef(A_BREAKER), details)


def check_rate_limit(ctx: _Context) -> CheckResult:
    """SMTP tokens used in the current rolling hour, and when the next one frees."""
    maximum = ctx.settings.smtp_max_per_hour
    usage = rate_limit_usage(ctx.redis, maximum)
    waiting = sum(1 for c in ctx.campaigns() if c.status == DEFERRED and c.defer_reason == "rate_limit")
    details = {"used": usage.current_count, "max": maximum, "next_free_at": usage.next_free_at,
               "window_seconds": RATE_LIMIT_WINDOW_SECONDS, "key": RATE_LIMIT_KEY, "waiting": waiting}
    if not usage.backend_available:
        return CheckResult("rate_limit", "Rate limit", WARNING, "usage unknown (Redis unavailable): sends fail open",
                           PlaybookRef(A_SYMPTOM_REDIS_DOWN), details)
    text_used = f"{usage.current_count}/{maximum} in the rolling hour"
    if usage.current_count >= maximum:
        return CheckResult(
            "rate_limit", "Rate limit", WARNING,
            f"quota used up ({text_used}); next token frees at {format_time(usage.next_free_at)}; "
            f"{_plural(waiting, 'campaign')} deferred with rate_limit",
            PlaybookRef(A_SYMPTOM_RATE_LIMIT), details,
        )
    return CheckResult("rate_limit", "Rate limit", OK, text_used, PlaybookRef(A_RATE_LIMIT), details)


# (key, title, needs the database, needs Redis, function) — the playbook's order.
CHECKS: tuple[tuple[str, str, bool, bool, Callable[[_Context], CheckResult]], ...] = (
    ("database", "Database", False, False, check_database),
    ("redis", "Redis", False, False, check_redis),
    ("sending_switch", "Global sending switch", True, False, check_sending_switch),
    ("queues", "RQ queues", False, True, check_queues),
    ("workers", "Workers", False, True, check_workers),
    ("scheduler", "Scheduler", True, True, check_scheduler),
    ("campaigns", "Campaigns by state", True, False, check_campaigns),
    ("stuck", "Stuck and overdue campaigns", True, True, check_stuck_campaigns),
    ("unknown", "Recipients in unknown", True, False, check_unknown_recipients),
    ("breaker", "Circuit breaker (24 h)", True, False, check_breaker_trips),
    ("rate_limit", "Rate limit", True, True, check_rate_limit),
)
CHECK_KEYS = tuple(c[0] for c in CHECKS)
_DEFAULT_ANCHORS = {
    "sending_switch": A_SWITCH, "queues": A_QUEUES, "workers": A_WORKERS, "scheduler": A_SCHEDULER,
    "campaigns": A_CAMPAIGNS, "stuck": A_STUCK, "unknown": A_UNKNOWN, "breaker": A_BREAKER, "rate_limit": A_RATE_LIMIT,
}


def run_diagnosis(only: Iterable[str] | None = None, now: datetime | None = None) -> Diagnosis:
    """Run the checks (all, or those named in `only`) in playbook order; never raises for a broken dependency.

    Needs an app context. A check whose dependency (database, Redis) is down is reported as
    `warning` "not checked" — the dependency's own check is the critical one.
    """
    ctx = _Context(now or utcnow())
    wanted = set(only) if only is not None else None
    results: list[CheckResult] = []
    for key, title, needs_db, needs_redis, function in CHECKS:
        if key in ("database", "redis"):
            result = function(ctx)  # always run: the others depend on them
            if wanted is not None and key not in wanted:
                continue
            results.append(result)
            continue
        if wanted is not None and key not in wanted:
            continue
        missing = [name for name, needed, ok in (("database", needs_db, ctx.db_ok), ("Redis", needs_redis, ctx.redis_ok))
                   if needed and not ok]
        if missing:
            anchor = A_SYMPTOM_DB_DOWN if "database" in missing else A_SYMPTOM_REDIS_DOWN
            results.append(CheckResult(key, title, WARNING, f"not checked: {' and '.join(missing)} unreachable",
                                       PlaybookRef(anchor)))
            continue
        try:
            results.append(function(ctx))
        except Exception as exc:  # one broken check must not hide the others
            db.session.rollback()
            results.append(CheckResult(key, title, CRITICAL, f"check failed: {type(exc).__name__}: {exc}",
                                       PlaybookRef(_DEFAULT_ANCHORS.get(key, A_DIAGNOSIS))))
    return Diagnosis(checked_at=ctx.now, checks=results)


def worst(statuses: Iterable[str]) -> str:
    """The most severe of `statuses` (ok when empty)."""
    return max(statuses, key=_RANK.__getitem__, default=OK)
