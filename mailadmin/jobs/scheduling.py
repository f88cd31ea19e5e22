"""Hand-offs of the send loop to RQ and rq-scheduler, and recovery after crashes.

* `enqueue_send_slice()` puts one send slice on the send queue right now (a fresh job id each
  time: the loop's own continuation after a slice, the fan-out siblings, start and resume).
* `schedule_continuation()` asks rq-scheduler to run the campaign's next slice at a given UTC
  moment, under the stable job id `campaign-{id}-continuation`, replacing any earlier one:
  a campaign has at most one pending continuation. `cancel_continuation()` removes it.
* `ContinuationScheduler` is the rq-scheduler the `scheduler` process runs. When a
  continuation is due it enqueues a *fresh* slice job and deletes the stable one, so a running
  slice that defers again never re-creates the job it is itself running as. It also runs
  `recover_stalled_campaigns()` every `recovery_interval` seconds.
* `recover_stalled_campaigns()` turns stale claims (recipients left `sending` by a job that
  died) into `unknown`, finishes campaigns with nothing left, and re-enqueues campaigns that no
  job is working on (a worker killed with SIGKILL, a continuation lost with a Redis restart).

Web code imports this module to enqueue by import path; it never imports the send loop itself.
"""

from __future__ import annotations

import math
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum

from loguru import logger
from redis import Redis, RedisError, WatchError
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.worker import Worker
from rq_scheduler import Scheduler
from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from mailadmin.extensions import SEND_QUEUE, db, get_redis, get_settings
from mailadmin.jobs.resilience import (
    REDIS_DOWN,
    Backoff,
    Service,
    call_through_outage,
    is_database_outage,
    is_redis_outage,
    outage_tracker,
)
from mailadmin.models import Campaign, CampaignQueue, Recipient
from mailadmin.models.campaign import (
    CANCELLED,
    DEFERRED,
    PAUSED,
    QUEUED,
    R_PENDING,
    R_SENDING,
    R_UNKNOWN,
    REASON_GLOBAL_PAUSE,
    SENDING,
)
from mailadmin.models.types import utcnow
from mailadmin.settings import Settings

SEND_SLICE_FUNC = "mailadmin.jobs.send.send_campaign_slice"
RECOVERY_FUNC = "mailadmin.jobs.scheduling.run_recovery_job"
CONTINUATION_PREFIX = "campaign-"
CONTINUATION_SUFFIX = "-continuation"
# Each scheduled continuation carries a fresh token in its meta; dispatch compares the job hash's
# raw `meta` field so that it removes exactly the version it fetched, never a re-scheduled one.
SCHEDULE_META_FIELD = "meta"
# Results of finished slices are only useful for `rq info`; failures are kept a week for on-call.
SLICE_RESULT_TTL = 600
SLICE_FAILURE_TTL = 7 * 24 * 3600
# A deferred campaign whose continuation is this late and not scheduled is re-enqueued.
OVERDUE_GRACE = timedelta(seconds=60)
# A worker whose last heartbeat is older than this is not alive (SendWorker beats every 5 s while a
# job runs); also how long a restarted Redis is given before its empty worker registry is trusted.
LIVE_WORKER_HEARTBEAT_SECONDS = 20
# A campaign no live job works on is re-enqueued once its last slice heartbeat is this old.
UNATTENDED_GRACE = timedelta(seconds=2)
# Seconds between two attempts at most while Redis is down.
SCHEDULER_RETRY_CAP_SECONDS = 2.0
# Cancelled campaigns are checked for stale claims for this long after they were cancelled.
CANCELLED_RECOVERY_WINDOW = timedelta(days=1)

_recipients = Recipient.__table__
_campaigns = Campaign.__table__
_queues = CampaignQueue.__table__


def continuation_job_id(campaign_id: int) -> str:
    """The stable rq-scheduler job id of a campaign's deferred continuation."""
    return f"{CONTINUATION_PREFIX}{campaign_id}{CONTINUATION_SUFFIX}"


def campaign_id_of_continuation(job_id: str) -> int | None:
    """The campaign id in a continuation job id, or None for any other job."""
    if not (job_id.startswith(CONTINUATION_PREFIX) and job_id.endswith(CONTINUATION_SUFFIX)):
        return None
    middle = job_id[len(CONTINUATION_PREFIX) : -len(CONTINUATION_SUFFIX)]
    return int(middle) if middle.isdigit() else None


def campaign_id_of_slice(job_id: str) -> int | None:
    """The campaign id in a slice job id (`campaign-{id}-slice-...`), or None."""
    prefix, _, rest = job_id.partition("-")
    middle, _, _ = rest.partition("-slice-")
    return int(middle) if prefix == "campaign" and "-slice-" in job_id and middle.isdigit() else None


def new_slice_job_id(campaign_id: int) -> str:
    """A fresh, readable RQ job id for one send slice (also the recipients' `claimed_by`)."""
    return f"campaign-{campaign_id}-slice-{uuid.uuid4().hex[:12]}"


def slice_job_timeout(settings: Settings) -> int:
    """RQ timeout of a slice: its time budget plus one slow SMTP exchange, with margin.

    Keep MAILER_STALE_CLAIM_SECONDS above this: a claim older than that can only belong to a
    job RQ has already killed.
    """
    return settings.send_slice_seconds + 2 * settings.smtp_timeout_seconds + 10


def continuation_time(moment: datetime) -> datetime:
    """`moment` rounded UP to the whole second: rq-scheduler stores whole seconds and must not run early."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime given; continuations are scheduled in aware UTC")
    moment = moment.astimezone(UTC)
    whole = math.ceil(moment.timestamp())
    return datetime.fromtimestamp(whole, tz=UTC)


def _scheduler(connection: Redis | None = None) -> Scheduler:
    return Scheduler(queue_name=SEND_QUEUE, connection=connection or get_redis())


def enqueue_send_slice(campaign_id: int, *, job_id: str | None = None, connection: Redis | None = None) -> str:
    """Put one send slice of the campaign on the send queue now; returns the job id."""
    settings = get_settings()
    queue = Queue(SEND_QUEUE, connection=connection or get_redis())
    job = queue.enqueue(
        SEND_SLICE_FUNC,
        campaign_id,
        job_id=job_id or new_slice_job_id(campaign_id),
        job_timeout=slice_job_timeout(settings),
        result_ttl=SLICE_RESULT_TTL,
        failure_ttl=SLICE_FAILURE_TTL,
        description=f"send slice of campaign {campaign_id}",
    )
    return job.id


def _discard_stable_job(connection: Redis, job_id: str) -> None:
    """Remove a continuation from the schedule and delete its hash (never a running job's)."""
    scheduler = _scheduler(connection)
    scheduler.cancel(job_id)
    try:
        job = Job.fetch(job_id, connection=connection)
    except NoSuchJobError:
        return
    if job.get_status(refresh=False) != JobStatus.STARTED:
        job.delete(remove_from_queue=True)


def schedule_continuation(campaign_id: int, at: datetime, *, connection: Redis | None = None) -> str:
    """Have rq-scheduler run the campaign's next slice at `at` (UTC), replacing any earlier continuation."""
    settings = get_settings()
    connection = connection or get_redis()
    job_id = continuation_job_id(campaign_id)
    _discard_stable_job(connection, job_id)
    when = continuation_time(at)
    _scheduler(connection).enqueue_at(
        when,
        SEND_SLICE_FUNC,
        campaign_id,
        job_id=job_id,
        timeout=slice_job_timeout(settings),
        job_result_ttl=SLICE_RESULT_TTL,
        job_description=f"continuation of campaign {campaign_id}",
        meta={"schedule_token": uuid.uuid4().hex},
    )
    return job_id


def cancel_continuation(campaign_id: int, *, connection: Redis | None = None) -> None:
    """Remove the campaign's scheduled continuation, if any."""
    _discard_stable_job(connection or get_redis(), continuation_job_id(campaign_id))


def scheduled_continuation_at(campaign_id: int, *, connection: Redis | None = None) -> datetime | None:
    """When the campaign's continuation is scheduled (aware UTC), or None."""
    connection = connection or get_redis()
    score = connection.zscore(Scheduler.scheduled_jobs_key, continuation_job_id(campaign_id))
    return None if score is None else datetime.fromtimestamp(score, tz=UTC)


class ContinuationScheduler(Scheduler):
    """rq-scheduler that dispatches continuations as fresh slice jobs and runs the recovery sweep."""

    def __init__(self, *args, recovery_interval: float | None = 60.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.recovery_interval = recovery_interval
        self._last_recovery = 0.0

    def enqueue_job(self, job: Job) -> None:
        """Move a due job to its queue; a continuation becomes a fresh slice job."""
        campaign_id = campaign_id_of_continuation(job.id)
        if campaign_id is None:
            super().enqueue_job(job)
            return
        if self._take_continuation(job):
            slice_id = enqueue_send_slice(campaign_id, connection=self.connection)
            logger.bind(campaign_id=campaign_id, job_id=slice_id).info("Continuation enqueued")

    def _take_continuation(self, job: Job) -> bool:
        """Atomically remove the stable job we fetched; False when it was re-scheduled meanwhile."""
        key = job.key
        with self.connection.pipeline() as pipe:
            try:
                pipe.watch(key)
                token = pipe.hget(key, SCHEDULE_META_FIELD)
                fetched = getattr(job, "_mailadmin_token", token)
                if token != fetched or pipe.zscore(self.scheduled_jobs_key, job.id) is None:
                    return False
                pipe.multi()
                pipe.zrem(self.scheduled_jobs_key, job.id)
                pipe.delete(key)
                pipe.execute()
                return True
            except WatchError:
                return False

    def get_jobs(self, until=None, with_times=False, offset=None, length=None):
        """rq-scheduler's due jobs, each remembering the version of its hash that was read."""
        for item in super().get_jobs(until=until, with_times=with_times, offset=offset, length=length):
            job = item[0] if with_times else item
            # Remember which version of the stable job we fetched (see _take_continuation).
            job._mailadmin_token = self.connection.hget(job.key, SCHEDULE_META_FIELD)
            yield item

    def enqueue_jobs(self):
        """One scheduler tick: dispatch what is due, then the recovery sweep when its interval is up."""
        jobs = list(super().enqueue_jobs())
        self._maybe_recover()
        return jobs

    def _maybe_recover(self) -> None:
        if self.recovery_interval is None:
            return
        if time.monotonic() - self._last_recovery < self.recovery_interval:
            return
        self._last_recovery = time.monotonic()
        database = outage_tracker(Service.DATABASE)
        try:
            recover_stalled_campaigns()
        except (SQLAlchemyError, RedisError) as exc:
            # Dispatching continuations does not need the database: keep running, retry next sweep.
            db.session.rollback()
            if is_redis_outage(exc):
                raise  # the loop records the Redis outage and waits for it
            if is_database_outage(exc):
                database.failed(exc)
                self._last_recovery = 0.0  # sweep again as soon as the database answers
            else:
                logger.bind(error_type=type(exc).__name__).error("Recovery sweep failed; retrying at the next sweep")
            return
        database.succeeded()

    # --- the loop, living through outages -----------------------------------------------------

    def run(self, burst: bool = False) -> None:
        """rq-scheduler's loop (heartbeat, lock, due continuations, sweep) that waits out Redis
        outages with a capped, jittered backoff instead of exiting, and sweeps as soon as Redis is back."""
        redis_outage = outage_tracker(Service.REDIS)
        redis_outage.on_recovery.append(self._after_redis_outage)
        call_through_outage(self.register_birth)
        self._install_signal_handlers()
        backoff = Backoff(cap=SCHEDULER_RETRY_CAP_SECONDS)
        try:
            while True:
                started = time.monotonic()
                try:
                    done = self._tick(burst)
                except REDIS_DOWN as exc:
                    redis_outage.failed(exc)
                    self._lock_acquired = False
                    time.sleep(backoff.next_delay())
                    continue
                redis_outage.succeeded()
                backoff.reset()
                if done:
                    break
                time.sleep(max(0.0, self._interval - (time.monotonic() - started)))
        finally:
            self.remove_lock()
            self.register_death()

    def _tick(self, burst: bool) -> bool:
        """One pass of rq-scheduler's loop; True when a burst run is done."""
        self.heartbeat()
        if not self.acquire_lock():
            self.log.warning("Lock already taken - skipping run")
            return False
        self.enqueue_jobs()
        self.heartbeat()
        self.remove_lock()
        if burst:
            self.log.info("RQ scheduler done, quitting")
        return burst

    def _after_redis_outage(self, _seconds: float) -> None:
        """Redis is back (maybe empty after a restart): register again and sweep at once."""
        self._last_recovery = 0.0
        try:
            with self.connection.pipeline() as pipe:
                pipe.hset(self.key, "birth", time.time())
                pipe.expire(self.key, int(self._interval) + 10)
                pipe.execute()
        except REDIS_DOWN as exc:
            outage_tracker(Service.REDIS).failed(exc)

    def remove_lock(self) -> None:
        try:
            super().remove_lock()
        except REDIS_DOWN:
            self._lock_acquired = False  # the lock expires by itself

    def register_death(self) -> None:
        try:
            super().register_death()
        except REDIS_DOWN:
            pass  # the scheduler key expires by itself


@dataclass
class RecoveryReport:
    """What one recovery sweep did."""

    unknown: dict[int, int] = field(default_factory=dict)
    enqueued: list[int] = field(default_factory=list)
    finished: list[int] = field(default_factory=list)


def mark_stale_claims_unknown(
    campaign_id: int, cutoff: datetime | None, *, now: datetime | None = None, claimed_by: str | None = None
) -> int:
    """Recipients of the campaign still `sending`, claimed before `cutoff` (or by the dead job
    `claimed_by`), become `unknown` (commits)."""
    now = now or utcnow()
    conditions = [_recipients.c.campaign_id == campaign_id, _recipients.c.status == R_SENDING]
    if cutoff is not None:
        conditions.append(_recipients.c.claimed_at < cutoff)
    if claimed_by is not None:
        conditions.append(_recipients.c.claimed_by == claimed_by)
    result = db.session.execute(
        update(_recipients)
        .where(*conditions)
        .values(status=R_UNKNOWN, last_error="claimed by a job that stopped; SMTP outcome unknown", updated_at=now)
    )
    count = result.rowcount or 0
    if count:
        db.session.execute(
            update(_campaigns)
            .where(_campaigns.c.id == campaign_id)
            .values(unknown_count=_campaigns.c.unknown_count + count, updated_at=now)
        )
    db.session.commit()
    if count:
        logger.bind(campaign_id=campaign_id, unknown=count).warning(
            "Stale claims marked unknown (a send job stopped mid-batch)"
        )
    return count


class WorkerState(Enum):
    """What the recovery sweep can tell of a registered RQ worker."""

    ALIVE = "alive"  # a fresh heartbeat
    DEAD = "dead"  # on this host and its pid is gone: certainly dead, at once
    SILENT = "silent"  # no fresh heartbeat: dead, or cut off from Redis for a while


def _worker_state(worker: Worker, at: datetime) -> WorkerState:
    if worker.hostname == socket.gethostname() and worker.pid:
        try:
            os.kill(worker.pid, 0)
        except ProcessLookupError:
            return WorkerState.DEAD  # SIGKILLed on this machine: no need to wait for its heartbeat to age
        except PermissionError:
            pass
    if worker.last_heartbeat is None or (at - worker.last_heartbeat).total_seconds() > LIVE_WORKER_HEARTBEAT_SECONDS:
        return WorkerState.SILENT
    return WorkerState.ALIVE


@dataclass
class RunningJobs:
    """The send jobs live workers run, and those of workers known to be dead."""

    running: set[str] = field(default_factory=set)
    dead: set[str] = field(default_factory=set)


def running_jobs(connection: Redis) -> RunningJobs | None:
    """What RQ's worker registry says about running jobs; None while it cannot be trusted:
    during the first LIVE_WORKER_HEARTBEAT_SECONDS of a restarted Redis (empty until each worker's
    next heartbeat registers it again) or after this process saw a Redis outage end."""
    redis_outage = outage_tracker(Service.REDIS)
    if redis_outage.down or redis_outage.seconds_since_recovery() < LIVE_WORKER_HEARTBEAT_SECONDS:
        return None
    if int(connection.info("server").get("uptime_in_seconds", 0)) < LIVE_WORKER_HEARTBEAT_SECONDS:
        return None
    at = datetime.now(UTC)
    jobs = RunningJobs()
    for worker in Worker.all(connection=connection):
        state = _worker_state(worker, at)
        if state is WorkerState.SILENT:
            continue
        ids = {execution.job_id for execution in worker.get_current_executions(refresh=True)}
        (jobs.running if state is WorkerState.ALIVE else jobs.dead).update(ids)
    return jobs


def recover_orphaned_claims(connection: Redis, *, now: datetime | None = None) -> dict[int, int]:
    """Claims whose job no live worker runs become `unknown` without waiting for
    MAILER_STALE_CLAIM_SECONDS: {campaign_id: count}.

    At once when the job's worker is known dead; otherwise once the campaign's slice heartbeat
    (written per batch, in the database) is LIVE_WORKER_HEARTBEAT_SECONDS old, so a horse merely
    cut off from Redis, still sending, keeps its claims. The claims are read from the database
    BEFORE the jobs from Redis: a job registers with RQ before it claims.
    """
    now = now or utcnow()
    quiet_since = now - timedelta(seconds=LIVE_WORKER_HEARTBEAT_SECONDS)
    claims = db.session.execute(
        select(_recipients.c.campaign_id, _recipients.c.claimed_by, _queues.c.heartbeat_at)
        .join(_queues, _queues.c.campaign_id == _recipients.c.campaign_id)
        .where(
            _recipients.c.campaign_id.in_(select(_campaigns.c.id).where(_may_hold_claims(now))),
            _recipients.c.status == R_SENDING,
            _recipients.c.claimed_by.is_not(None),
        )
        .distinct()
    ).all()
    db.session.commit()
    jobs = running_jobs(connection) if claims else None
    if jobs is None:
        return {}
    recovered: dict[int, int] = {}
    for campaign_id, job_id, heartbeat_at in claims:
        if job_id in jobs.running:
            continue
        if job_id in jobs.dead or heartbeat_at is None or heartbeat_at < quiet_since:
            count = mark_stale_claims_unknown(campaign_id, None, now=now, claimed_by=job_id)
            if count:
                recovered[campaign_id] = recovered.get(campaign_id, 0) + count
    return recovered


def _campaigns_with_running_jobs(running: set[str] | None) -> set[int]:
    return {campaign_id for job_id in running or () if (campaign_id := campaign_id_of_slice(job_id)) is not None}


def _job_waiting(connection: Redis, job_id: str | None) -> bool:
    """Is this RQ job still queued or scheduled (so a worker will run it)?"""
    if not job_id:
        return False
    try:
        status = Job.fetch(job_id, connection=connection).get_status(refresh=False)
    except NoSuchJobError:
        return False
    return status in (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED)


def recover_stalled_campaigns(now: datetime | None = None) -> RecoveryReport:
    """Sweep: dead jobs' claims -> `unknown`; finish campaigns with nothing left; re-enqueue stalled ones.

    Runs when a worker or the scheduler starts, then in the scheduler every `recovery_interval`
    (and may be run by hand or as an RQ job). A claim whose job no live worker runs is recovered
    at once; any other claim only once older than MAILER_STALE_CLAIM_SECONDS. A campaign is
    stalled when no live job works on it (or no slice touched it for MAILER_STALE_CLAIM_SECONDS)
    and no job for it is waiting in the queue.
    """
    settings = get_settings()
    now = now or utcnow()
    cutoff = now - timedelta(seconds=settings.stale_claim_seconds)
    connection = get_redis()
    report = RecoveryReport(unknown=recover_orphaned_claims(connection, now=now))
    for campaign_id, count in _mark_old_claims_unknown(now, cutoff).items():
        report.unknown[campaign_id] = report.unknown.get(campaign_id, 0) + count
    jobs = running_jobs(connection)
    attended = _campaigns_with_running_jobs(jobs.running if jobs else None)
    for campaign_id, current_job_id in _stalled_or_overdue(now, cutoff):
        if campaign_id not in attended:
            _restart_campaign(campaign_id, current_job_id, connection, now, report)
    return report


def _may_hold_claims(now: datetime):
    """SQL condition: a campaign whose recipients may still be claimed (`sending`)."""
    return or_(
        _campaigns.c.status.in_((QUEUED, SENDING, DEFERRED, PAUSED)),
        and_(_campaigns.c.status == CANCELLED, _campaigns.c.finished_at > now - CANCELLED_RECOVERY_WINDOW),
    )


def _mark_old_claims_unknown(now: datetime, cutoff: datetime) -> dict[int, int]:
    """Claims older than the stale-claim cutoff -> `unknown`, whatever Redis knows."""
    started = select(_campaigns.c.id).where(
        _may_hold_claims(now),
        exists().where(_recipients.c.campaign_id == _campaigns.c.id, _recipients.c.status == R_SENDING),
    )
    marked = {}
    for campaign_id in db.session.scalars(started).all():
        count = mark_stale_claims_unknown(campaign_id, cutoff, now=now)
        if count:
            marked[campaign_id] = count
    return marked


def _stalled_or_overdue(now: datetime, cutoff: datetime) -> list[tuple[int, str | None]]:
    """Sending campaigns whose last slice heartbeat is a moment old, and overdue deferred ones."""
    stalled = db.session.execute(
        select(_campaigns.c.id, _queues.c.current_job_id)
        .join(_queues, _queues.c.campaign_id == _campaigns.c.id)
        .where(
            _campaigns.c.status.in_((QUEUED, SENDING)),
            or_(_queues.c.heartbeat_at.is_(None), _queues.c.heartbeat_at < now - UNATTENDED_GRACE),
        )
    ).all()
    overdue = db.session.execute(
        select(_campaigns.c.id, _queues.c.current_job_id)
        .join(_queues, _queues.c.campaign_id == _campaigns.c.id)
        .where(
            _campaigns.c.status == DEFERRED,
            _queues.c.defer_reason != REASON_GLOBAL_PAUSE,
            _queues.c.deferred_until.is_not(None),
            _queues.c.deferred_until < now - OVERDUE_GRACE,
        )
    ).all()
    db.session.commit()
    return [tuple(row) for row in [*stalled, *overdue]]


def _restart_campaign(campaign_id: int, current_job_id: str | None, connection: Redis, now: datetime,
                      report: RecoveryReport) -> None:
    """Finish the campaign when nothing is left, else enqueue a slice unless one is waiting."""
    from mailadmin.services.campaigns import finish_campaign_if_done

    if finish_campaign_if_done(campaign_id, now=now):
        report.finished.append(campaign_id)
        return
    if _job_waiting(connection, current_job_id) or scheduled_continuation_at(campaign_id, connection=connection):
        return
    has_pending = db.session.scalar(
        select(_recipients.c.id).where(_recipients.c.campaign_id == campaign_id, _recipients.c.status == R_PENDING).limit(1)
    )
    db.session.commit()
    if has_pending is None:
        return  # only live claims left: their slice finishes the campaign
    job_id = enqueue_send_slice(campaign_id, connection=connection)
    db.session.execute(
        update(_queues).where(_queues.c.campaign_id == campaign_id).values(current_job_id=job_id, heartbeat_at=now)
    )
    db.session.commit()
    report.enqueued.append(campaign_id)
    logger.bind(campaign_id=campaign_id, job_id=job_id).warning("Stalled campaign re-enqueued")


def recover_at_start() -> None:
    """One sweep as a worker or the scheduler starts: work orphaned by processes that died is
    picked up now, not at the next stale-claim deadline. Skipped (logged) when a service is down."""
    try:
        report = recover_stalled_campaigns()
    except (SQLAlchemyError, RedisError) as exc:
        db.session.rollback()
        logger.bind(error_type=type(exc).__name__).warning("Recovery at start skipped; the sweep will retry")
        return
    if report.unknown or report.enqueued or report.finished:
        logger.bind(unknown=report.unknown, enqueued=report.enqueued, finished=report.finished).info(
            "Recovered work left by stopped processes"
        )


def run_recovery_job() -> dict:
    """RQ job wrapper of `recover_stalled_campaigns` (for `rq enqueue` by hand)."""
    from mailadmin.jobs import job_app_context

    with job_app_context():
        report = recover_stalled_campaigns()
    return {"unknown": report.unknown, "enqueued": report.enqueued, "finished": report.finished}


def safe_cancel_continuation(campaign_id: int) -> None:
    """`cancel_continuation`, logging instead of raising when Redis is down (the slice guard covers it)."""
    try:
        cancel_continuation(campaign_id)
    except RedisError as exc:
        logger.bind(campaign_id=campaign_id, error_type=type(exc).__name__).error(
            "Could not cancel the scheduled continuation (Redis unavailable)"
        )
