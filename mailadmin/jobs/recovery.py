"""The recovery sweep: what a crash or a lost Redis key left behind is put right.

`recover_stalled_campaigns()` reads a dead job's hand-over record (`limits/handover.py`): what the
relay accepted becomes `sent`, the claims it never handed to an SMTP connection go back to
`pending`, and the rest of its claims (recipients left `sending`: handed over, their outcome
unknown) become `unknown` (every claim of a job without a record that can be trusted). It then
finishes campaigns with nothing left, and re-enqueues campaigns that no job is working on (a worker
killed with SIGKILL, a continuation lost with a Redis restart). It runs when a worker
or the scheduler starts (`recover_at_start`) and then in the scheduler. It only orchestrates:
every read and write of campaigns goes through `mailadmin.services.delivery`, every RQ question
through `mailadmin.queue.dispatch`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from loguru import logger
from redis import Redis, RedisError
from sqlalchemy.exc import SQLAlchemyError

from mailadmin.extensions import get_redis, get_settings
from mailadmin.jobs import job_app_context
from mailadmin.limits.handover import forget_handover_record, read_handover_record
from mailadmin.models.campaign import R_SENT
from mailadmin.models.types import utcnow
from mailadmin.queue.dispatch import (
    LIVE_WORKER_HEARTBEAT_SECONDS,
    RunningJobs,
    enqueue_send_slice,
    job_waiting,
    running_jobs,
    scheduled_continuation_at,
)
from mailadmin.queue.outages import Service, is_database_outage, is_redis_outage, outage_tracker
from mailadmin.services import delivery

# A campaign no live job works on is re-enqueued once its last slice heartbeat is this old.
UNATTENDED_GRACE = timedelta(seconds=2)


@dataclass
class RecoveryReport:
    """What one recovery sweep did."""

    unknown: dict[int, int] = field(default_factory=dict)
    enqueued: list[int] = field(default_factory=list)
    finished: list[int] = field(default_factory=list)

    def add_unknown(self, marked: dict[int, int]) -> None:
        for campaign_id, count in marked.items():
            self.unknown[campaign_id] = self.unknown.get(campaign_id, 0) + count


def recover_stalled_campaigns(now: datetime | None = None) -> RecoveryReport:
    """Sweep: dead jobs' claims -> `unknown`; finish campaigns with nothing left; re-enqueue stalled ones.

    A claim whose job no live worker runs is recovered without waiting (see
    `recover_orphaned_claims`); any other claim once older than MAILER_STALE_CLAIM_SECONDS. A
    campaign is stalled when no live job works on it and no job for it is waiting in the queue;
    a deferred one when its `deferred_until` is more than a minute past and no continuation is
    scheduled.
    """
    now = now or utcnow()
    cutoff = now - timedelta(seconds=get_settings().stale_claim_seconds)
    connection = get_redis()
    report = RecoveryReport()
    report.add_unknown(recover_orphaned_claims(connection, now=now))
    for campaign_id in delivery.campaigns_with_claims(now):
        report.add_unknown({campaign_id: delivery.mark_stale_claims_unknown(campaign_id, cutoff, now=now)})
    jobs = running_jobs(connection)
    attended = jobs.campaigns() if jobs else set()
    for campaign_id, current_job_id in delivery.campaigns_to_check(now, now - UNATTENDED_GRACE):
        if campaign_id not in attended:
            _recover_campaign(connection, campaign_id, current_job_id, now, report)
    report.unknown = {campaign_id: count for campaign_id, count in report.unknown.items() if count}
    return report


def recover_orphaned_claims(connection: Redis, *, now: datetime | None = None) -> dict[int, int]:
    """Claims whose job no live worker runs become `unknown` without waiting for
    MAILER_STALE_CLAIM_SECONDS: {campaign_id: count} — except those its hand-over record shows it
    never handed to a connection: they go back to `pending` (see `_release_never_handed_over`).

    At once when the job's worker is known dead; otherwise once the campaign's slice heartbeat
    (written per batch, in the database) is LIVE_WORKER_HEARTBEAT_SECONDS old, so a horse merely
    cut off from Redis, still sending, keeps its claims. A claim held by a running job is never
    touched. The claims are read from the database BEFORE the jobs from Redis: a job registers
    with RQ before it claims.
    """
    now = now or utcnow()
    claims = delivery.claims_by_job(now)
    jobs = running_jobs(connection) if claims else None
    if jobs is None:
        return {}
    quiet_since = now - timedelta(seconds=LIVE_WORKER_HEARTBEAT_SECONDS)
    recovered: dict[int, int] = {}
    for claim in claims:
        if _orphaned(claim, jobs, quiet_since):
            _release_never_handed_over(connection, claim, now)
            count = delivery.mark_stale_claims_unknown(claim.campaign_id, None, now=now, claimed_by=claim.job_id)
            recovered[claim.campaign_id] = recovered.get(claim.campaign_id, 0) + count
    return recovered


def _release_never_handed_over(connection: Redis, claim: delivery.JobClaims, now: datetime) -> None:
    """Use the dead job's hand-over record (`limits/handover.py`): the messages it says the relay
    accepted become `sent`, the claims it does not list go back to `pending`. Nothing when it cannot
    be read; no release when it cannot be trusted (then every other claim becomes `unknown`)."""
    try:
        record = read_handover_record(connection, claim.job_id)
    except RedisError as exc:
        logger.bind(job_id=claim.job_id, error_type=type(exc).__name__).warning(
            "Hand-over record unreadable; the job's claims become unknown")
        return
    if record.accepted:
        delivery.record_accepted_of_stopped_job(claim.campaign_id, claim.job_id, [
            delivery.Outcome(delivery.Claim(accepted.recipient_id, "", None, None), R_SENT, accepted.smtp_code,
                             accepted.message_id, sent_at=datetime.fromtimestamp(accepted.sent_at, UTC))
            for accepted in record.accepted
        ], now)
    if record.handed_over is not None:
        delivery.release_claims_never_handed_over(claim.campaign_id, claim.job_id, record.handed_over, now=now)
    try:
        forget_handover_record(connection, claim.job_id)
    except RedisError:
        pass  # it expires


def _orphaned(claim: delivery.JobClaims, jobs: RunningJobs, quiet_since: datetime) -> bool:
    if claim.job_id in jobs.running:
        return False
    return claim.job_id in jobs.dead or claim.heartbeat_at is None or claim.heartbeat_at < quiet_since


def _recover_campaign(
    connection: Redis, campaign_id: int, current_job_id: str | None, now: datetime, report: RecoveryReport
) -> None:
    """Finish the campaign if nothing is left, else re-enqueue it unless a job will run anyway."""
    if delivery.finish_campaign_if_done(campaign_id, now=now):
        report.finished.append(campaign_id)
        return
    if job_waiting(connection, current_job_id) or scheduled_continuation_at(campaign_id, connection=connection):
        return
    if not delivery.has_pending_recipients(campaign_id):
        return  # only live claims left: their slice finishes the campaign
    job_id = enqueue_send_slice(campaign_id, connection=connection)
    delivery.note_reenqueued(campaign_id, job_id, now)
    report.enqueued.append(campaign_id)
    logger.bind(campaign_id=campaign_id, job_id=job_id).warning("Stalled campaign re-enqueued")


def run_recovery_sweep_through_outages() -> bool:
    """One sweep for the scheduler loop. An unreachable database is reported once by the outage
    tracker and False is returned (sweep again soon); Redis being down is raised to the loop,
    which waits it out; any other database or Redis failure is logged and retried next time."""
    database = outage_tracker(Service.DATABASE)
    try:
        recover_stalled_campaigns()
    except (SQLAlchemyError, RedisError) as exc:
        # Each delivery function has rolled back its own transaction already.
        if is_redis_outage(exc):
            raise
        if is_database_outage(exc):
            database.failed(exc)
            return False
        logger.bind(error_type=type(exc).__name__).error("Recovery sweep failed; retrying at the next sweep")
        return True
    database.succeeded()
    return True


def recover_at_start() -> None:
    """One sweep as a worker or the scheduler starts: work orphaned by processes that died is
    picked up now, not at the next stale-claim deadline. Skipped (logged) when a service is down."""
    try:
        report = recover_stalled_campaigns()
    except (SQLAlchemyError, RedisError) as exc:
        logger.bind(error_type=type(exc).__name__).warning("Recovery at start skipped; the sweep will retry")
        return
    if report.unknown or report.enqueued or report.finished:
        logger.bind(unknown=report.unknown, enqueued=report.enqueued, finished=report.finished).info(
            "Recovered work left by stopped processes"
        )


def run_recovery_job() -> dict:
    """RQ job wrapper of `recover_stalled_campaigns` (for `rq enqueue` by hand)."""
    with job_app_context():
        report = recover_stalled_campaigns()
    return {"unknown": report.unknown, "enqueued": report.enqueued, "finished": report.finished}
