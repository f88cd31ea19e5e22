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
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from loguru import logger
from redis import Redis, RedisError, WatchError
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq_scheduler import Scheduler
from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from mailadmin.extensions import DEFAULT_QUEUE, SEND_QUEUE, db, get_redis, get_settings
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
# The periodic bounce-mailbox job: one stable id, so restarting the scheduler never adds a second one.
BOUNCE_MAILBOX_FUNC = "mailadmin.jobs.bounce_mailbox.poll_bounce_mailbox"
BOUNCE_MAILBOX_JOB_ID = "bounce-mailbox-poll"
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


def schedule_bounce_mailbox(settings: Settings, *, connection: Redis | None = None) -> str | None:
    """(Re)declare the periodic bounce-mailbox job under its stable id; None (and removed) when not configured.

    Called at every scheduler start: the declaration is reconciled, never duplicated.
    """
    connection = connection or get_redis()
    scheduler = Scheduler(queue_name=DEFAULT_QUEUE, connection=connection)
    _discard_stable_job(connection, BOUNCE_MAILBOX_JOB_ID)
    if not settings.bounce_imap_url:
        return None
    scheduler.schedule(
        datetime.now(UTC),
        BOUNCE_MAILBOX_FUNC,
        interval=settings.bounce_poll_seconds,
        repeat=None,
        id=BOUNCE_MAILBOX_JOB_ID,
        queue_name=DEFAULT_QUEUE,
        timeout=max(60, settings.bounce_poll_seconds),
        result_ttl=max(60, settings.bounce_poll_seconds * 2),
        description="read the bounce mailbox",
    )
    return BOUNCE_MAILBOX_JOB_ID


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
        try:
            recover_stalled_campaigns()
        except (SQLAlchemyError, RedisError) as exc:
            # Dispatching continuations does not need the database: keep running, retry next sweep.
            db.session.rollback()
            logger.bind(error_type=type(exc).__name__).error("Recovery sweep failed; retrying at the next sweep")


@dataclass
class RecoveryReport:
    """What one recovery sweep did."""

    unknown: dict[int, int] = field(default_factory=dict)
    enqueued: list[int] = field(default_factory=list)
    finished: list[int] = field(default_factory=list)


def mark_stale_claims_unknown(campaign_id: int, cutoff: datetime, *, now: datetime | None = None) -> int:
    """Recipients of the campaign claimed before `cutoff` and still `sending` become `unknown` (commits)."""
    now = now or utcnow()
    result = db.session.execute(
        update(_recipients)
        .where(
            _recipients.c.campaign_id == campaign_id,
            _recipients.c.status == R_SENDING,
            _recipients.c.claimed_at < cutoff,
        )
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
    """Sweep: stale claims -> `unknown`; finish campaigns with nothing left; re-enqueue stalled ones.

    Runs in the `scheduler` process every minute (and may be run by hand or as an RQ job).
    A campaign counts as stalled when no slice has touched it (heartbeat) for
    MAILER_STALE_CLAIM_SECONDS and no job for it is waiting in the queue.
    """
    from mailadmin.services.campaigns import finish_campaign_if_done

    settings = get_settings()
    now = now or utcnow()
    cutoff = now - timedelta(seconds=settings.stale_claim_seconds)
    connection = get_redis()
    report = RecoveryReport()

    started = select(_campaigns.c.id).where(
        or_(
            _campaigns.c.status.in_((QUEUED, SENDING, DEFERRED, PAUSED)),
            and_(_campaigns.c.status == CANCELLED, _campaigns.c.finished_at > now - CANCELLED_RECOVERY_WINDOW),
        ),
        exists().where(_recipients.c.campaign_id == _campaigns.c.id, _recipients.c.status == R_SENDING),
    )
    for campaign_id in db.session.scalars(started).all():
        count = mark_stale_claims_unknown(campaign_id, cutoff, now=now)
        if count:
            report.unknown[campaign_id] = count

    stalled = db.session.execute(
        select(_campaigns.c.id, _queues.c.current_job_id)
        .join(_queues, _queues.c.campaign_id == _campaigns.c.id)
        .where(
            _campaigns.c.status.in_((QUEUED, SENDING)),
            or_(_queues.c.heartbeat_at.is_(None), _queues.c.heartbeat_at < cutoff),
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

    for campaign_id, current_job_id in [*stalled, *overdue]:
        if finish_campaign_if_done(campaign_id, now=now):
            report.finished.append(campaign_id)
            continue
        if _job_waiting(connection, current_job_id) or scheduled_continuation_at(campaign_id, connection=connection):
            continue
        has_pending = db.session.scalar(
            select(_recipients.c.id).where(_recipients.c.campaign_id == campaign_id, _recipients.c.status == R_PENDING).limit(1)
        )
        db.session.commit()
        if has_pending is None:
            continue  # only live claims left: their slice finishes the campaign
        job_id = enqueue_send_slice(campaign_id, connection=connection)
        db.session.execute(
            update(_queues).where(_queues.c.campaign_id == campaign_id).values(current_job_id=job_id, heartbeat_at=now)
        )
        db.session.commit()
        report.enqueued.append(campaign_id)
        logger.bind(campaign_id=campaign_id, job_id=job_id).warning("Stalled campaign re-enqueued")
    return report


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
