"""The recovery sweep's reads and writes (`mailadmin.jobs.recovery`): which campaigns may hold stale
claims and which jobs hold them, a dead job's claims it never handed to a connection released
(`limits/handover.py`), stalled or overdue campaigns, stale claims made `unknown`, and a re-enqueue
noted on the queue row. Each function owns its transaction.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from loguru import logger
from sqlalchemy import and_, exists, or_, select, update

from mailadmin.extensions import db
from mailadmin.models import Campaign, CampaignQueue, Recipient
from mailadmin.models.campaign import (
    CANCELLED,
    DEFERRED,
    PAUSED,
    QUEUED,
    R_PENDING,
    R_SENDING,
    R_UNKNOWN,
    SENDING,
)
from mailadmin.models.reasons import is_due_sql
from mailadmin.models.types import utcnow
from mailadmin.services.delivery.values import JobClaims
from mailadmin.services.transaction import after_commit, in_transaction
from mailadmin.services.transitions import update_queue

_campaigns = Campaign.__table__
_recipients = Recipient.__table__
_queues = CampaignQueue.__table__

# `last_error` of a claim a slice handed to a connection while its hand-over record could not be written.
HANDED_WITHOUT_RECORD = "handed to a connection while the hand-over record was unavailable"

# A deferred campaign whose continuation is this late and not scheduled is re-enqueued.
OVERDUE_GRACE = timedelta(seconds=60)
# Cancelled campaigns are checked for stale claims for this long after they were cancelled.
CANCELLED_RECOVERY_WINDOW = timedelta(days=1)


@in_transaction
def mark_stale_claims_unknown(
    campaign_id: int, cutoff: datetime | None, *, now: datetime | None = None, claimed_by: str | None = None
) -> int:
    """Recipients of the campaign still `sending`, claimed before `cutoff` (or by the dead job
    `claimed_by`), become `unknown`."""
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
        after_commit(lambda: logger.bind(campaign_id=campaign_id, unknown=count).warning(
            "Stale claims marked unknown (a send job stopped mid-batch)"
        ))
    return count


@in_transaction
def note_handed_over_without_record(campaign_id: int, job_id: str, ids: list[int], now: datetime) -> set[int]:
    """The slice hands these claims to its connections without a hand-over record (Redis unreachable):
    mark them in the database instead, so that the sweep never releases them. Returns the ids still
    claimed by `job_id` (only those may be handed over)."""
    if not ids:
        return set()
    result = db.session.execute(
        update(_recipients)
        .where(_recipients.c.id.in_(ids), _recipients.c.campaign_id == campaign_id,
               _recipients.c.claimed_by == job_id, _recipients.c.status == R_SENDING)
        .values(last_error=HANDED_WITHOUT_RECORD, updated_at=now)
        .returning(_recipients.c.id)
    )
    return set(result.scalars().all())


@in_transaction
def release_claims_never_handed_over(
    campaign_id: int, job_id: str, handed_over: set[int], *, now: datetime | None = None
) -> int:
    """The dead job `job_id`'s claims that its hand-over record does not list (and that it did not mark
    as handed over without a record) go back to `pending`: no byte of them reached the relay."""
    now = now or utcnow()
    claims = db.session.execute(
        select(_recipients.c.id, _recipients.c.last_error).where(
            _recipients.c.campaign_id == campaign_id, _recipients.c.claimed_by == job_id,
            _recipients.c.status == R_SENDING,
        )
    ).all()
    never = [id_ for id_, last_error in claims if id_ not in handed_over and last_error != HANDED_WITHOUT_RECORD]
    if not never:
        return 0
    count = db.session.execute(
        update(_recipients)
        .where(_recipients.c.id.in_(never), _recipients.c.claimed_by == job_id, _recipients.c.status == R_SENDING)
        .values(status=R_PENDING, claimed_by=None, claimed_at=None, updated_at=now)
    ).rowcount or 0
    after_commit(lambda: logger.bind(campaign_id=campaign_id, job_id=job_id, released=count).info(
        "Claims never handed to a connection released (a send job stopped mid-batch)"
    ))
    return count


def _may_hold_claims(now: datetime):
    """SQL condition: a campaign whose recipients may still be claimed (started, or cancelled within a day)."""
    return or_(
        _campaigns.c.status.in_((QUEUED, SENDING, DEFERRED, PAUSED)),
        and_(_campaigns.c.status == CANCELLED, _campaigns.c.finished_at > now - CANCELLED_RECOVERY_WINDOW),
    )


@in_transaction
def campaigns_with_claims(now: datetime) -> list[int]:
    """Campaigns that may hold stale claims: started (or cancelled within a day) with recipients `sending`."""
    started = select(_campaigns.c.id).where(
        _may_hold_claims(now),
        exists().where(_recipients.c.campaign_id == _campaigns.c.id, _recipients.c.status == R_SENDING),
    )
    return list(db.session.scalars(started).all())


@in_transaction
def claims_by_job(now: datetime) -> list[JobClaims]:
    """Which jobs hold claims (recipients `sending`) on which campaigns, right now."""
    rows = db.session.execute(
        select(_recipients.c.campaign_id, _recipients.c.claimed_by, _queues.c.heartbeat_at)
        .join(_queues, _queues.c.campaign_id == _recipients.c.campaign_id)
        .where(
            _recipients.c.campaign_id.in_(select(_campaigns.c.id).where(_may_hold_claims(now))),
            _recipients.c.status == R_SENDING,
            _recipients.c.claimed_by.is_not(None),
        )
        .distinct()
    ).all()
    return [JobClaims(*row) for row in rows]


@in_transaction
def campaigns_to_check(now: datetime, quiet_since: datetime) -> list[tuple[int, str | None]]:
    """(campaign id, current job id) of sending campaigns no slice touched since `quiet_since`,
    and of overdue deferrals (the caller decides whether a job still works on them)."""
    stalled = db.session.execute(
        select(_campaigns.c.id, _queues.c.current_job_id)
        .join(_queues, _queues.c.campaign_id == _campaigns.c.id)
        .where(
            _campaigns.c.status.in_((QUEUED, SENDING)),
            or_(_queues.c.heartbeat_at.is_(None), _queues.c.heartbeat_at < quiet_since),
        )
    ).all()
    overdue = db.session.execute(
        select(_campaigns.c.id, _queues.c.current_job_id)
        .join(_queues, _queues.c.campaign_id == _campaigns.c.id)
        .where(
            _campaigns.c.status == DEFERRED,
            is_due_sql(_queues.c.defer_reason, _queues.c.deferred_until, now - OVERDUE_GRACE),
        )
    ).all()
    return [(row[0], row[1]) for row in (*stalled, *overdue)]


@in_transaction
def has_pending_recipients(campaign_id: int) -> bool:
    """Does the campaign still have a recipient waiting to be claimed?"""
    found = db.session.scalar(
        select(_recipients.c.id).where(_recipients.c.campaign_id == campaign_id, _recipients.c.status == R_PENDING).limit(1)
    )
    return found is not None


@in_transaction
def note_reenqueued(campaign_id: int, job_id: str, now: datetime) -> None:
    """The recovery sweep enqueued a stalled campaign: its queue row names the job and beats."""
    update_queue(campaign_id, current_job_id=job_id, heartbeat_at=now)
