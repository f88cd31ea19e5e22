"""The checks of the 60-second diagnosis, in the order of the playbook's "60-second diagnosis".

Each reads the same data the playbook's SQL, `redis-cli` and `rq info` commands read and answers
with a `CheckResult`. Nothing here changes the product's state (reading the rate limiter prunes
expired reservations, as every reservation does).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from rq import Queue
from rq.registry import FailedJobRegistry, StartedJobRegistry
from sqlalchemy import func, select, text

from mailadmin.extensions import QUEUE_NAMES, SEND_QUEUE, db
from mailadmin.health.probes import check_database as probe_database
from mailadmin.limits.rate_limiter import RATE_LIMIT_KEY, RATE_LIMIT_WINDOW_SECONDS, rate_limit_usage
from mailadmin.models import APP_STATE_ID, AppState, AuditEvent, Campaign
from mailadmin.models.campaign import (
    CAMPAIGN_STATUSES,
    DEFERRED,
    PAUSED,
    QUEUED,
    SENDING,
)
from mailadmin.models.reasons import SWITCH_REASONS, Reason, resumes_automatically
from mailadmin.ops.anchors import (
    A_BREAKER,
    A_CAMPAIGNS,
    A_DATABASE,
    A_QUEUES,
    A_RATE_LIMIT,
    A_REDIS,
    A_SCHEDULER,
    A_STUCK,
    A_SWITCH,
    A_SYMPTOM_BREAKER,
    A_SYMPTOM_DB_DOWN,
    A_SYMPTOM_FAILED_JOBS,
    A_SYMPTOM_GLOBAL_PAUSE,
    A_SYMPTOM_MIGRATIONS,
    A_SYMPTOM_QUEUE_BACKLOG,
    A_SYMPTOM_RATE_LIMIT,
    A_SYMPTOM_REDIS_DOWN,
    A_SYMPTOM_SCHEDULER_DEAD,
    A_SYMPTOM_STUCK,
    A_SYMPTOM_UNKNOWN,
    A_SYMPTOM_WORKER_DEAD,
    A_UNKNOWN,
    A_WORKERS,
    PlaybookRef,
)
from mailadmin.ops.context import CheckContext
from mailadmin.ops.formatting import TimedText, age_seconds, format_age, plural
from mailadmin.ops.results import CRITICAL, OK, WARNING, CheckResult
from mailadmin.ops.rq_state import SCHEDULER_LOCK_KEY, list_scheduler_instances
from mailadmin.ops.settings_check import check_settings_in_effect
from mailadmin.services.bounces import bounce_rate_trips
from mailadmin.settings import PROJECT_ROOT
from mailadmin.settings_in_effect import SCHEDULER, WORKER

# A job that has waited this long in a queue means no worker takes jobs (or far too few).
QUEUE_WAIT_WARNING_SECONDS = 5 * 60
QUEUE_WAIT_CRITICAL_SECONDS = 15 * 60
# rq-scheduler dispatches every `interval` seconds; a continuation this late was not dispatched.
SCHEDULER_LATE_SECONDS = 120
# The engine re-enqueues deferred campaigns this late (services.delivery.OVERDUE_GRACE, 60 s) in its
# sweep; twice that and nothing has happened means the sweep (the scheduler process) is not running.
CAMPAIGN_OVERDUE_SECONDS = 180
# The recovery sweep runs every minute (`flask scheduler --recovery-interval`); a stale campaign
# still not re-enqueued this long after it went stale is not being recovered.
RECOVERY_GRACE_SECONDS = 180
BREAKER_WINDOW = timedelta(hours=24)
CIRCUIT_BREAKER_AUDIT_ACTION = "circuit_breaker_tripped"
# Rows listed per block; the counts are always complete.
LIST_LIMIT = 50


class Check(NamedTuple):
    """One check of the diagnosis: its key and title, what it needs, and the function that runs it."""

    key: str
    title: str
    needs_db: bool
    needs_redis: bool
    function: Callable[[CheckContext], CheckResult]


_DECLARED: list[Check] = []


def playbook_check(key: str, title: str, *, needs_db: bool = False, needs_redis: bool = False):
    """Declare the function below as the check `key`; checks run in the order they are declared here
    (the playbook's order)."""
    def declare(function: Callable[[CheckContext], CheckResult]) -> Callable[[CheckContext], CheckResult]:
        _DECLARED.append(Check(key, title, needs_db, needs_redis, function))
        return function
    return declare


@dataclass(frozen=True)
class BreakerTrip:
    """One `circuit_breaker_tripped` audit row."""

    campaign_id: int | None
    campaign_name: str | None
    at: datetime
    details: dict | None


@playbook_check("database", "Database")
def check_database(ctx: CheckContext) -> CheckResult:
    """Can we query the database, and are the migrations at head?"""
    status = probe_database()
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


@playbook_check("redis", "Redis")
def check_redis(ctx: CheckContext) -> CheckResult:
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


@playbook_check("sending_switch", "Global sending switch", needs_db=True)
def check_sending_switch(ctx: CheckContext) -> CheckResult:
    """Is all sending switched off (AppState.sending_paused)?"""
    state = db.session.get(AppState, APP_STATE_ID)
    db.session.rollback()
    if state is None or not state.sending_paused:
        return CheckResult("sending_switch", "Global sending switch", OK, "sending is on", PlaybookRef(A_SWITCH),
                           {"paused": False})
    by = state.changed_by_id
    waiting = sum(1 for c in ctx.campaigns() if c.defer_reason in SWITCH_REASONS)
    return CheckResult(
        "sending_switch", "Global sending switch", WARNING,
        TimedText("ALL SENDING IS OFF since ", state.changed_at,
                  f" (user id {by}); {plural(waiting, 'campaign')} waiting with global_pause"),
        PlaybookRef(A_SYMPTOM_GLOBAL_PAUSE),
        {"paused": True, "changed_at": state.changed_at, "changed_by_id": by, "waiting": waiting},
    )


@playbook_check("queues", "RQ queues", needs_redis=True)
def check_queues(ctx: CheckContext) -> CheckResult:
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
                oldest_age = age_seconds(enqueued, ctx.now)
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
        return CheckResult("queues", "RQ queues", WARNING, f"{plural(failed, 'failed job')} to look at — {summary}",
                           PlaybookRef(A_SYMPTOM_FAILED_JOBS), details)
    return CheckResult("queues", "RQ queues", OK, summary, PlaybookRef(A_QUEUES), details)


@playbook_check("workers", "Workers", needs_redis=True)
def check_workers(ctx: CheckContext) -> CheckResult:
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
    verdict = f"{plural(len(live), 'live worker')} ({busy} busy)"
    if dead:
        return CheckResult("workers", "Workers", WARNING, verdict + dead_text, PlaybookRef(A_SYMPTOM_WORKER_DEAD),
                           details)
    return CheckResult("workers", "Workers", OK, verdict, PlaybookRef(A_WORKERS), details)


@playbook_check("scheduler", "Scheduler", needs_db=True, needs_redis=True)
def check_scheduler(ctx: CheckContext) -> CheckResult:
    """rq-scheduler alive, and the continuations it holds dispatched on time."""
    instances = list_scheduler_instances(ctx.redis)
    alive = [i for i in instances if i.alive]
    scheduled = ctx.scheduled()
    late = [j for j in scheduled if j.late_seconds > SCHEDULER_LATE_SECONDS]
    lock_held = bool(ctx.redis.exists(SCHEDULER_LOCK_KEY))
    details = {"instances": instances, "scheduled": scheduled, "lock_held": lock_held}
    next_text = TimedText("next continuation ", scheduled[0].run_at) if scheduled else TimedText("nothing scheduled")
    count_text = plural(len(scheduled), "scheduled job")
    if late:
        return CheckResult(
            "scheduler", "Scheduler", CRITICAL,
            f"{plural(len(late), 'continuation')} overdue by up to {format_age(max(j.late_seconds for j in late))}: "
            f"rq-scheduler is not dispatching ({plural(len(alive), 'live instance')})",
            PlaybookRef(A_SYMPTOM_SCHEDULER_DEAD), details,
        )
    if not alive:
        deferred = [c for c in ctx.campaigns() if c.status == DEFERRED and resumes_automatically(c.defer_reason)]
        if scheduled or deferred:
            return CheckResult(
                "scheduler", "Scheduler", CRITICAL,
                f"no rq-scheduler running: {count_text} and {plural(len(deferred), 'deferred campaign')} will never resume",
                PlaybookRef(A_SYMPTOM_SCHEDULER_DEAD), details,
            )
        return CheckResult("scheduler", "Scheduler", WARNING,
                           "no rq-scheduler running (nothing waits for it yet; deferred campaigns would never resume)",
                           PlaybookRef(A_SYMPTOM_SCHEDULER_DEAD), details)
    return CheckResult("scheduler", "Scheduler", OK,
                       TimedText(f"{plural(len(alive), 'instance')} alive; {count_text}, ", *next_text.parts),
                       PlaybookRef(A_SCHEDULER), details)


@playbook_check("campaigns", "Campaigns by state", needs_db=True)
def check_campaigns(ctx: CheckContext) -> CheckResult:
    """Campaigns by state, with defer/pause reasons; a breaker pause waits for an admin."""
    counts = dict(db.session.execute(select(Campaign.status, func.count()).group_by(Campaign.status)).all())
    db.session.rollback()
    by_status = {status: counts.get(status, 0) for status in CAMPAIGN_STATUSES}
    campaigns = ctx.campaigns()
    reasons = Counter(c.defer_reason for c in campaigns if c.status in (DEFERRED, PAUSED) and c.defer_reason)
    # Which line each bounce_rate pause crossed, with its figures (the pause's audit row).
    trips = bounce_rate_trips([c.id for c in campaigns[:LIST_LIMIT] if c.defer_reason == Reason.BOUNCE_RATE])
    db.session.rollback()
    details = {"by_status": by_status, "reasons": dict(reasons), "campaigns": campaigns[:LIST_LIMIT],
               "bounce_trips": trips}
    summary = ", ".join(f"{by_status[s]} {s}" for s in (QUEUED, SENDING, DEFERRED, PAUSED) if by_status[s]) or "none active"
    if reasons:
        summary += " (" + ", ".join(f"{n} {r}" for r, n in reasons.most_common()) + ")"
    if reasons.get(Reason.CIRCUIT_BREAKER):
        return CheckResult("campaigns", "Campaigns by state", WARNING,
                           f"{summary}: paused by the circuit breaker, an admin must resume",
                           PlaybookRef(A_SYMPTOM_BREAKER), details)
    if reasons.get(Reason.BOUNCE_RATE):
        named = "".join(f"; #{i}: {trip.describe()}" for i, trip in list(trips.items())[:5])
        return CheckResult("campaigns", "Campaigns by state", WARNING,
                           f"{summary}: paused for too many bounces or spam complaints{named}; an admin must resume",
                           PlaybookRef(Reason.BOUNCE_RATE.info.playbook_anchor), details)
    return CheckResult("campaigns", "Campaigns by state", OK, summary, PlaybookRef(A_CAMPAIGNS), details)


@playbook_check("stuck", "Stuck and overdue campaigns", needs_db=True, needs_redis=True)
def check_stuck_campaigns(ctx: CheckContext) -> CheckResult:
    """`sending`/`queued` campaigns no job works on, and `deferred` ones long past `deferred_until`."""
    # The recovery sweep runs in the scheduler: its value is the one that decides.
    stale_after, _source = ctx.settings_in_effect().value_for(
        "MAILER_STALE_CLAIM_SECONDS", SCHEDULER, ctx.settings.stale_claim_seconds)
    waiting = ctx.waiting_job_ids()
    running = {w.current_job_id for w in ctx.workers() if w.alive and w.current_job_id}
    on_dead_worker = {w.current_job_id for w in ctx.workers() if not w.alive and w.current_job_id}
    scheduled_for = {j.campaign_id for j in ctx.scheduled() if j.campaign_id is not None}
    stuck: list[dict] = []
    overdue: list[dict] = []
    for c in ctx.campaigns():
        if c.status in (QUEUED, SENDING):
            age = age_seconds(c.heartbeat_at, ctx.now)
            job = c.current_job_id
            if job in running or job in waiting:
                continue
            if job in on_dead_worker or age is None or age > stale_after:
                why = "its job was on a dead worker" if job in on_dead_worker else f"no progress for {format_age(age)}"
                # The scheduler's recovery sweep re-enqueues such a campaign once it is stale; past
                # that (plus a sweep interval) nothing is recovering it.
                overdue_recovery = age is None or age > stale_after + RECOVERY_GRACE_SECONDS
                stuck.append({"campaign": c, "why": why, "critical": overdue_recovery})
        elif c.status == DEFERRED and c.deferred_until is not None and resumes_automatically(c.defer_reason):
            late = (ctx.now - c.deferred_until).total_seconds()
            if late > CAMPAIGN_OVERDUE_SECONDS:
                where = "its continuation is still in the scheduler" if c.id in scheduled_for else "no continuation exists"
                overdue.append({"campaign": c, "late_seconds": late, "why": where})
    details = {"stuck": stuck, "overdue": overdue, "stale_after_seconds": stale_after}
    if stuck or overdue:
        parts = []
        if stuck:
            parts.append(f"{plural(len(stuck), 'campaign')} stuck in sending/queued with no live job ("
                         + ", ".join(f"#{s['campaign'].id}: {s['why']}" for s in stuck[:5]) + ")")
        if overdue:
            parts.append(f"{plural(len(overdue), 'deferred campaign')} overdue ("
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


@playbook_check("unknown", "Recipients in unknown", needs_db=True)
def check_unknown_recipients(ctx: CheckContext) -> CheckResult:
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
                           f"{plural(int(total), 'recipient')} in unknown ({listed}): decide before re-queueing",
                           PlaybookRef(A_SYMPTOM_UNKNOWN), details)
    return CheckResult("unknown", "Recipients in unknown", OK, "none", PlaybookRef(A_UNKNOWN), details)


@playbook_check("breaker", "Circuit breaker (24 h)", needs_db=True)
def check_breaker_trips(ctx: CheckContext) -> CheckResult:
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
    threshold, _source = ctx.settings_in_effect().value_for(
        "MAILER_CIRCUIT_BREAKER_THRESHOLD", WORKER, ctx.settings.circuit_breaker_threshold)
    details = {"trips": trips, "threshold": threshold}
    if trips:
        campaigns = sorted({t.campaign_id for t in trips if t.campaign_id is not None})
        return CheckResult(
            "breaker", "Circuit breaker (24 h)", WARNING,
            TimedText(f"{plural(len(trips), 'trip')} in 24 h (campaigns {', '.join(f'#{i}' for i in campaigns)}), last ",
                      trips[0].at, ": the SMTP server keeps failing"),
            PlaybookRef(A_SYMPTOM_BREAKER), details,
        )
    return CheckResult("breaker", "Circuit breaker (24 h)", OK, "no trip in 24 h", PlaybookRef(A_BREAKER), details)


@playbook_check("rate_limit", "Rate limit", needs_db=True, needs_redis=True)
def check_rate_limit(ctx: CheckContext) -> CheckResult:
    """SMTP tokens used in the current rolling hour against the workers' quota, and when the next one frees."""
    # The workers enforce the quota: their MAILER_SMTP_MAX_PER_HOUR, not this shell's, says whether it is used up.
    maximum, source = ctx.settings_in_effect().value_for(
        "MAILER_SMTP_MAX_PER_HOUR", WORKER, ctx.settings.smtp_max_per_hour)
    usage = rate_limit_usage(ctx.redis, maximum)
    waiting = sum(1 for c in ctx.campaigns() if c.status == DEFERRED and c.defer_reason == Reason.RATE_LIMIT)
    details = {"used": usage.current_count, "max": maximum, "max_from": source, "next_free_at": usage.next_free_at,
               "window_seconds": RATE_LIMIT_WINDOW_SECONDS, "key": RATE_LIMIT_KEY, "waiting": waiting}
    if not usage.backend_available:
        return CheckResult("rate_limit", "Rate limit", WARNING, "usage unknown (Redis unavailable): sends fail open",
                           PlaybookRef(A_SYMPTOM_REDIS_DOWN), details)
    text_used = f"{usage.current_count}/{maximum} in the rolling hour"
    quota = f"by {source} MAILER_SMTP_MAX_PER_HOUR"
    if usage.current_count >= maximum:
        return CheckResult(
            "rate_limit", "Rate limit", WARNING,
            TimedText(f"quota used up ({text_used}) {quota}; next token frees at ", usage.next_free_at,
                      f"; {plural(waiting, 'campaign')} deferred with rate_limit"),
            PlaybookRef(A_SYMPTOM_RATE_LIMIT), details,
        )
    return CheckResult("rate_limit", "Rate limit", OK, f"{text_used} {quota}", PlaybookRef(A_RATE_LIMIT), details)


# Every check in the playbook's order; the settings check (ops/settings_check.py) comes last.
CHECKS: tuple[Check, ...] = (*_DECLARED, Check("settings", "Settings in effect", False, True, check_settings_in_effect))
