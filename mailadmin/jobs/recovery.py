"""The recovery sweep: what a crash or a lost Redis key left behind is put right.

`recover_stalled_campaigns()` turns stale claims (recipients left `sending` by a job that died)
into `unknown`, finishes campaigns with nothing left, and re-enqueues campaigns that no job is
working on (a worker killed with SIGKILL, a continuation lost with a Redis restart). It only
orchestrates: every read and write of campaigns goes through `mailadmin.services.delivery`,
every RQ question through `mailadmin.jobs.dispatch`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from loguru import logger
from redis import Redis, RedisError
from sqlalchemy.exc import SQLAlchemyError

from mailadmin.extensions import get_redis, get_settings
from mailadmin.jobs import job_app_context
from mailadmin.jobs.dispatch import enqueue_send_slice, job_waiting, scheduled_continuation_at
from mailadmin.models.types import utcnow
from mailadmin.services import delivery


@dataclass
class RecoveryReport:
    """What one recovery sweep did."""

    unknown: dict[int, int] = field(default_factory=dict)
    enqueued: list[int] = field(default_factory=list)
    finished: list[int] = field(default_factory=list)


def recover_stalled_campaigns(now: datetime | None = None) -> RecoveryReport:
    """Sweep: stale claims -> `unknown`; finish campaigns with nothing left; re-enqueue stalled ones.

    Runs in the `scheduler` process every minute (and may be run by hand or as an RQ job).
    A campaign counts as stalled when no slice has touched it (heartbeat) for
    MAILER_STALE_CLAIM_SECONDS and no job for it is waiting in the queue; a deferred one when
    its `deferred_until` is more than a minute past and no continuation is scheduled.
    """
    now = now or utcnow()
    cutoff = now - timedelta(seconds=get_settings().stale_claim_seconds)
    connection = get_redis()
    report = RecoveryReport()
    for campaign_id in delivery.campaigns_with_claims(now):
        count = delivery.mark_stale_claims_unknown(campaign_id, cutoff, now=now)
        if count:
            report.unknown[campaign_id] = count
    for campaign_id, current_job_id in delivery.campaigns_to_check(now, cutoff):
        _recover_campaign(connection, campaign_id, current_job_id, now, report)
    return report


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


def run_recovery_sweep_logging_failures() -> None:
    """One sweep for the scheduler loop: a database or Redis failure is logged and retried next time."""
    try:
        recover_stalled_campaigns()
    except (SQLAlchemyError, RedisError) as exc:
        # Each delivery function has rolled back its own transaction already.
        logger.bind(error_type=type(exc).__name__).error("Recovery sweep failed; retrying at the next sweep")


def run_recovery_job() -> dict:
    """RQ job wrapper of `recover_stalled_campaigns` (for `rq enqueue` by hand)."""
    with job_app_context():
        report = recover_stalled_campaigns()
    return {"unknown": report.unknown, "enqueued": report.enqueued, "finished": report.finished}
