"""The campaign transitions shared by people's actions (`campaigns.py`, `sending_switch.py`,
`bounces.py`) and the send loop's writes (`delivery/`): a conditional status change, parking the
queue row with a pause note, the due-deferral condition, and telling RQ once the state is committed.

Every transition is a conditional UPDATE on `campaigns.status` (`... WHERE status IN (...)`), so
a request, several send workers and the scheduler can race without one undoing another. RQ and
rq-scheduler are told only after the commit (a job must never see the state before it); if Redis
fails at that moment the recovery sweep (`mailadmin.jobs.recovery`) enqueues the campaign later.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from loguru import logger
from redis import RedisError
from sqlalchemy import and_, exists, select, update

from mailadmin.extensions import db
from mailadmin.models import Campaign, CampaignQueue
from mailadmin.models.campaign import DEFERRED, CampaignStatus
from mailadmin.models.reasons import Reason, is_due_sql
from mailadmin.models.types import utcnow
from mailadmin.queue.dispatch import enqueue_send_slice, schedule_continuation

# A slice may run this early for a deferred campaign (clock skew between the scheduler and workers).
DUE_TOLERANCE = timedelta(seconds=2)

_campaigns = Campaign.__table__
_queues = CampaignQueue.__table__


def set_status(
    campaign_id: int, from_statuses: tuple[CampaignStatus, ...], to_status: CampaignStatus, **values
) -> bool:
    """Conditional transition in the session; True when this call made it."""
    result = db.session.execute(
        update(_campaigns)
        .where(_campaigns.c.id == campaign_id, _campaigns.c.status.in_(from_statuses))
        .values(status=to_status, updated_at=utcnow(), **values)
    )
    return result.rowcount == 1


@dataclass(frozen=True, slots=True)
class PauseNote:
    """Who paused a campaign (a user id; None: the product itself, or nobody known), when, and an
    optional detail the pages show with the reason (e.g. which rate tripped a `bounce_rate` pause)."""

    at: datetime
    by_id: int | None = None
    detail: str | None = None

    def queue_values(self) -> dict:
        """The `campaign_queue` columns this pause writes."""
        return {"paused_at": self.at, "paused_by_id": self.by_id, "pause_detail": (self.detail or None) and self.detail[:300]}


@dataclass(frozen=True, slots=True)
class Transition:
    """What a person's pause, resume or cancel did: `changed` False when the campaign already was so
    (or another request got there first). A resume also says what it resumed from: the reason the
    campaign waited with and the breaker's count of consecutive transient errors it reset."""

    changed: bool
    from_status: CampaignStatus
    to_status: CampaignStatus
    from_reason: Reason | None = None
    errors_reset: int = 0


# A campaign that goes on (resumed, started, deferred, finished) carries no pause.
NO_PAUSE = {"paused_at": None, "paused_by_id": None, "pause_detail": None}


def update_queue(campaign_id: int, *returning, **values):
    """UPDATE the campaign's queue row (in the session) with `values`; the result, RETURNING `returning`."""
    statement = update(_queues).where(_queues.c.campaign_id == campaign_id).values(**values)
    return db.session.execute(statement.returning(*returning) if returning else statement)


def hold_queue(campaign_id: int, reason: Reason | None, now: datetime, pause: PauseNote | None = None) -> int | None:
    """Park the campaign's queue row on `reason`, with no deadline and no job (in the session); its id.

    `pause` records who paused it and when; without one, any earlier pause's note is cleared.
    """
    return db.session.execute(
        update(_queues)
        .where(_queues.c.campaign_id == campaign_id)
        .values(defer_reason=reason, deferred_until=None, current_job_id=None, updated_at=now,
                **(pause.queue_values() if pause is not None else NO_PAUSE))
        .returning(_queues.c.id)
    ).scalar_one_or_none()


def current_status(campaign_id: int) -> CampaignStatus | None:
    """The campaign's status as stored now (None for a missing campaign)."""
    status = db.session.scalar(select(_campaigns.c.status).where(_campaigns.c.id == campaign_id))
    return CampaignStatus(status) if status is not None else None


def due_deferral(now: datetime):
    """SQL condition: the campaign is deferred and its time has come (see `models.reasons.is_due`)."""
    return and_(
        _campaigns.c.status == DEFERRED,
        exists().where(
            _queues.c.campaign_id == _campaigns.c.id,
            is_due_sql(_queues.c.defer_reason, _queues.c.deferred_until, now + DUE_TOLERANCE),
        ),
    )


def enqueue_after_commit(campaign_id: int, job_id: str) -> None:
    """Enqueue a committed campaign's slice; a Redis failure is logged (the recovery sweep retries)."""
    try:
        enqueue_send_slice(campaign_id, job_id=job_id)
    except RedisError as exc:
        # The state is committed; the recovery sweep enqueues a stalled campaign within minutes.
        logger.bind(campaign_id=campaign_id, error_type=type(exc).__name__).error(
            "Could not enqueue the send job (Redis unavailable); the recovery sweep will retry"
        )


def schedule_after_commit(campaign_id: int, at: datetime) -> None:
    """Schedule a committed deferral's continuation; a Redis failure is logged (the sweep retries)."""
    try:
        schedule_continuation(campaign_id, at)
    except RedisError as exc:
        logger.bind(campaign_id=campaign_id, error_type=type(exc).__name__).error(
            "Could not schedule the continuation (Redis unavailable); the recovery sweep will retry"
        )
