"""Campaign state transitions: start, pause, resume, cancel, re-queue unknown recipients, the global
sending switch — and the send loop's own transitions (begin a slice, defer, trip the breaker, finish).

Every transition is a conditional UPDATE on `campaigns.status` (`... WHERE status IN (...)`), so
a request, several send workers and the scheduler can race without one undoing another: an admin
pause is never turned back into `sending` by a worker, a finished campaign is never deferred. Each
public function commits once; RQ and rq-scheduler are told after the commit (a job must never see
the state before it), and if Redis fails at that moment the recovery sweep
(`mailadmin.jobs.scheduling.recover_stalled_campaigns`) enqueues the campaign later.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from loguru import logger
from redis import RedisError
from sqlalchemy import and_, case, exists, func, or_, select, update

from mailadmin.extensions import db, get_redis, get_settings
from mailadmin.jobs.scheduling import (
    continuation_job_id,
    enqueue_send_slice,
    new_slice_job_id,
    safe_cancel_continuation,
    schedule_continuation,
)
from mailadmin.limits.throttle import ACTION_CAMPAIGN_START, is_user_throttled, throttle_message
from mailadmin.models import APP_STATE_ID, AppState, Campaign, CampaignQueue, Recipient, User
from mailadmin.models.campaign import (
    ACTIVE_STATUSES,
    CANCELLED,
    DEFERRED,
    DRAFT,
    FINISHED,
    PAUSED,
    QUEUED,
    R_PENDING,
    R_SENDING,
    R_SKIPPED,
    R_UNKNOWN,
    REASON_ADMIN_PAUSE,
    REASON_CIRCUIT_BREAKER,
    REASON_GLOBAL_PAUSE,
    REASON_RATE_LIMIT,
    REASON_SCHEDULED,
    REASON_TRANSIENT_ERROR,
    SENDING,
)
from mailadmin.models.types import utcnow
from mailadmin.send_signals import announce_send_stop
from mailadmin.services.audit import record_audit

MSG_NOT_DRAFT = "Only a draft campaign can be started."
MSG_NO_RECIPIENTS = "This campaign has no recipients yet. Import recipients before starting it."
MSG_NOTHING_TO_SEND = "Every recipient of this campaign is suppressed or invalid: there is nothing to send."
MSG_TOO_LARGE = "Campaign is too large ({count} recipients). Maximum: {maximum}. Split it into several campaigns."
MSG_NAIVE_SCHEDULE = "The scheduled start time must include a time zone."

# A slice may run this early for a deferred campaign (clock skew between the scheduler and workers).
DUE_TOLERANCE = timedelta(seconds=2)

_campaigns = Campaign.__table__
_queues = CampaignQueue.__table__
_recipients = Recipient.__table__
_app_state = AppState.__table__


class CampaignError(ValueError):
    """A campaign action that cannot be carried out; `.message` is shown to the user as is."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _actor_field(actor: User | None) -> int | str:
    return actor.id if actor is not None else "system"


def _queue_row(campaign: Campaign) -> CampaignQueue:
    """The campaign's CampaignQueue, created on first start."""
    row = db.session.scalar(select(CampaignQueue).where(CampaignQueue.campaign_id == campaign.id))
    if row is None:
        row = CampaignQueue(campaign_id=campaign.id, consecutive_transient_errors=0)
        db.session.add(row)
    return row


def _set_status(campaign_id: int, from_statuses: tuple[str, ...], to_status: str, **values) -> bool:
    """Conditional transition; True when this call made it."""
    result = db.session.execute(
        update(_campaigns)
        .where(_campaigns.c.id == campaign_id, _campaigns.c.status.in_(from_statuses))
        .values(status=to_status, updated_at=utcnow(), **values)
    )
    return result.rowcount == 1


def _current_status(campaign_id: int) -> str | None:
    return db.session.scalar(select(_campaigns.c.status).where(_campaigns.c.id == campaign_id))


# --- the global sending switch ---------------------------------------------------------------


def sending_paused() -> bool:
    """Is all sending switched off by an admin (AppState row 1)?"""
    return bool(db.session.scalar(select(_app_state.c.sending_paused).where(_app_state.c.id == APP_STATE_ID)))


def _app_state_row() -> AppState:
    state = db.session.get(AppState, APP_STATE_ID)
    if state is None:
        state = AppState(id=APP_STATE_ID, sending_paused=False)
        db.session.add(state)
        db.session.flush()
    return state


def set_sending_paused(paused: bool, actor: User | None) -> None:
    """Switch all sending off (running campaigns wait with `global_pause`) or back on (they are re-enqueued).

    Idempotent. Switching on commits the switch first and only then re-enqueues the waiting
    campaigns, so a worker that deferred a campaign for `global_pause` at the same moment is
    always seen by the re-enqueue (see `defer_for_global_pause`).
    """
    now = utcnow()
    state = _app_state_row()
    if bool(state.sending_paused) == paused:
        db.session.commit()
        return
    state.sending_paused = paused
    state.changed_by_id = actor.id if actor is not None else None
    state.changed_at = now
    if paused:
        ids = db.session.scalars(
            update(_campaigns)
            .where(_campaigns.c.status.in_((QUEUED, SENDING)))
            .values(status=DEFERRED, updated_at=now)
            .returning(_campaigns.c.id)
        ).all()
        if ids:
            db.session.execute(
                update(_queues)
                .where(_queues.c.campaign_id.in_(ids))
                .values(defer_reason=REASON_GLOBAL_PAUSE, deferred_until=None, updated_at=now)
            )
        record_audit(actor, "sending_switched_off", details={"campaigns_waiting": len(ids)})
        db.session.commit()
        announce_send_stop(get_redis(), None)
        logger.bind(actor=_actor_field(actor), campaign_id=None, campaigns=len(ids)).warning("Sending switched off")
        return

    record_audit(actor, "sending_switched_on")
    db.session.commit()
    waiting = db.session.scalars(
        select(_campaigns.c.id)
        .join(_queues, _queues.c.campaign_id == _campaigns.c.id)
        .where(_campaigns.c.status == DEFERRED, _queues.c.defer_reason == REASON_GLOBAL_PAUSE)
    ).all()
    requeued = []
    for campaign_id in waiting:
        job_id = new_slice_job_id(campaign_id)
        if _set_status(campaign_id, (DEFERRED,), QUEUED):
            db.session.execute(
                update(_queues)
                .where(_queues.c.campaign_id == campaign_id)
                .values(defer_reason=None, deferred_until=None, current_job_id=job_id, heartbeat_at=now, updated_at=now)
            )
            requeued.append((campaign_id, job_id))
    db.session.commit()
    for campaign_id, job_id in requeued:
        _enqueue_after_commit(campaign_id, job_id)
    logger.bind(actor=_actor_field(actor), campaign_id=None, campaigns=len(requeued)).info("Sending switched on")


# --- admin and manager actions ---------------------------------------------------------------


def _enqueue_after_commit(campaign_id: int, job_id: str) -> None:
    try:
        enqueue_send_slice(campaign_id, job_id=job_id)
    except RedisError as exc:
        # The state is committed; the recovery sweep enqueues a stalled campaign within minutes.
        logger.bind(campaign_id=campaign_id, error_type=type(exc).__name__).error(
            "Could not enqueue the send job (Redis unavailable); the recovery sweep will retry"
        )


def _schedule_after_commit(campaign_id: int, at: datetime) -> None:
    try:
        schedule_continuation(campaign_id, at)
    except RedisError as exc:
        logger.bind(campaign_id=campaign_id, error_type=type(exc).__name__).error(
            "Could not schedule the continuation (Redis unavailable); the recovery sweep will retry"
        )


def _recipient_counts(campaign_id: int) -> tuple[int, int, int]:
    """(total, pending, skipped) in one indexed aggregate query."""
    total, pending, skipped = db.session.execute(
        select(
            func.count(),
            func.coalesce(func.sum(case((_recipients.c.status == R_PENDING, 1), else_=0)), 0),
            func.coalesce(func.sum(case((_recipients.c.status == R_SKIPPED, 1), else_=0)), 0),
        ).where(_recipients.c.campaign_id == campaign_id)
    ).one()
    return int(total), int(pending), int(skipped)


def start_campaign(
    campaign: Campaign,
    actor: User | None,
    *,
    scheduled_at: datetime | None = None,
    enforce_throttle: bool = True,
) -> Campaign:
    """Start a draft: checks (state, recipients, size cap, per-user throttle), then `queued` (or
    `deferred`/`scheduled` until `scheduled_at`), the first job enqueued, one commit.

    No per-recipient work happens here; the send job does it.
    """
    settings = get_settings()
    if campaign.status != DRAFT:
        raise CampaignError(MSG_NOT_DRAFT)
    if scheduled_at is not None and scheduled_at.tzinfo is None:
        raise CampaignError(MSG_NAIVE_SCHEDULE)
    total, pending, skipped = _recipient_counts(campaign.id)
    if total == 0:
        raise CampaignError(MSG_NO_RECIPIENTS)
    if pending == 0:
        raise CampaignError(MSG_NOTHING_TO_SEND)
    if total > settings.max_campaign_recipients:
        raise CampaignError(MSG_TOO_LARGE.format(count=total, maximum=settings.max_campaign_recipients))
    if enforce_throttle and actor is not None:
        limit = settings.throttle_campaign_start_per_hour
        result = is_user_throttled(get_redis(), ACTION_CAMPAIGN_START, actor.id, limit)
        if result.is_throttled:
            raise CampaignError(throttle_message(ACTION_CAMPAIGN_START, limit, result.reason))

    now = utcnow()
    scheduled = scheduled_at is not None and scheduled_at > now
    switched_off = sending_paused()
    if scheduled:
        status, reason, until = DEFERRED, REASON_SCHEDULED, scheduled_at
    elif switched_off:
        status, reason, until = DEFERRED, REASON_GLOBAL_PAUSE, None
    else:
        status, reason, until = QUEUED, None, None
    job_id = new_slice_job_id(campaign.id) if status == QUEUED else None

    if not _set_status(
        campaign.id,
        (DRAFT,),
        status,
        started_at=now,
        finished_at=None,
        finished_with_errors=False,
        scheduled_at=scheduled_at if scheduled else None,
        recipients_total=total,
        skipped_count=skipped,
        sent_count=0,
        failed_count=0,
        unknown_count=0,
    ):
        db.session.rollback()
        raise CampaignError(MSG_NOT_DRAFT)  # a concurrent start won
    queue = _queue_row(campaign)
    queue.defer_reason = reason
    queue.deferred_until = until
    queue.consecutive_transient_errors = 0
    queue.current_job_id = job_id
    queue.scheduled_job_id = continuation_job_id(campaign.id) if scheduled else None
    queue.last_error = None
    queue.breaker_tripped_at = None
    queue.heartbeat_at = now
    record_audit(
        actor,
        "campaign_started",
        campaign_id=campaign.id,
        from_status=DRAFT,
        to_status=status,
        details={"recipients": total, "scheduled_at": scheduled_at.isoformat() if scheduled else None},
    )
    db.session.commit()

    if job_id is not None:
        _enqueue_after_commit(campaign.id, job_id)
    elif scheduled:
        _schedule_after_commit(campaign.id, until)
    logger.bind(
        actor=_actor_field(actor), campaign_id=campaign.id, recipients=total, campaign_status=status, defer_reason=reason
    ).info("Campaign started")
    return campaign


def pause_campaign(campaign: Campaign, actor: User | None) -> Campaign:
    """Admin pause (`admin_pause`): the send loop stops before its next message; idempotent."""
    if campaign.status == PAUSED:
        return campaign
    from_status = campaign.status
    if not _set_status(campaign.id, ACTIVE_STATUSES, PAUSED):
        db.session.rollback()
        if _current_status(campaign.id) == PAUSED:
            db.session.refresh(campaign)
            return campaign
        raise CampaignError(f"A {campaign.status} campaign cannot be paused.")
    now = utcnow()
    db.session.execute(
        update(_queues)
        .where(_queues.c.campaign_id == campaign.id)
        .values(defer_reason=REASON_ADMIN_PAUSE, deferred_until=None, scheduled_job_id=None, updated_at=now)
    )
    record_audit(actor, "campaign_paused", campaign_id=campaign.id, from_status=from_status, to_status=PAUSED)
    db.session.commit()
    announce_send_stop(get_redis(), campaign.id)
    safe_cancel_continuation(campaign.id)
    logger.bind(actor=_actor_field(actor), campaign_id=campaign.id).info("Campaign paused")
    return campaign


def resume_campaign(campaign: Campaign, actor: User | None) -> Campaign:
    """Resume a paused campaign (admin or circuit breaker): back to `queued` and enqueued, breaker counter reset.

    Idempotent for a campaign that is already queued, sending or deferred. While sending is
    switched off globally the campaign waits with `global_pause` instead.
    """
    if campaign.status in ACTIVE_STATUSES:
        return campaign
    if campaign.status != PAUSED:
        raise CampaignError(f"A {campaign.status} campaign cannot be resumed.")
    now = utcnow()
    switched_off = sending_paused()
    status = DEFERRED if switched_off else QUEUED
    if not _set_status(campaign.id, (PAUSED,), status):
        db.session.rollback()
        db.session.refresh(campaign)
        if campaign.status in ACTIVE_STATUSES:
            return campaign
        raise CampaignError(f"A {campaign.status} campaign cannot be resumed.")
    job_id = None if switched_off else new_slice_job_id(campaign.id)
    db.session.execute(
        update(_queues)
        .where(_queues.c.campaign_id == campaign.id)
        .values(
            defer_reason=REASON_GLOBAL_PAUSE if switched_off else None,
            deferred_until=None,
            consecutive_transient_errors=0,
            current_job_id=job_id,
            heartbeat_at=now,
            updated_at=now,
        )
    )
    record_audit(actor, "campaign_resumed", campaign_id=campaign.id, from_status=PAUSED, to_status=status)
    db.session.commit()
    if job_id is not None:
        _enqueue_after_commit(campaign.id, job_id)
    logger.bind(actor=_actor_field(actor), campaign_id=campaign.id, campaign_status=status).info("Campaign resumed")
    return campaign


def cancel_campaign(campaign: Campaign, actor: User | None) -> Campaign:
    """Cancel for good: the send loop stops before its next message; idempotent."""
    if campaign.status == CANCELLED:
        return campaign
    from_status = campaign.status
    now = utcnow()
    if not _set_status(campaign.id, (*ACTIVE_STATUSES, PAUSED), CANCELLED, finished_at=now):
        db.session.rollback()
        if _current_status(campaign.id) == CANCELLED:
            db.session.refresh(campaign)
            return campaign
        raise CampaignError(f"A {campaign.status} campaign cannot be cancelled.")
    db.session.execute(
        update(_queues)
        .where(_queues.c.campaign_id == campaign.id)
        .values(deferred_until=None, scheduled_job_id=None, current_job_id=None, updated_at=now)
    )
    record_audit(actor, "campaign_cancelled", campaign_id=campaign.id, from_status=from_status, to_status=CANCELLED)
    db.session.commit()
    announce_send_stop(get_redis(), campaign.id)
    safe_cancel_continuation(campaign.id)
    logger.bind(actor=_actor_field(actor), campaign_id=campaign.id).info("Campaign cancelled")
    return campaign


def requeue_unknown_recipients(campaign: Campaign, actor: User | None) -> int:
    """Explicitly send again to the recipients whose outcome is `unknown` (they may get the email twice).

    Returns how many were re-queued. A finished campaign is reopened; a paused or deferred one
    picks them up when it continues.
    """
    if campaign.status in (DRAFT, CANCELLED):
        raise CampaignError(f"Recipients of a {campaign.status} campaign cannot be re-queued.")
    now = utcnow()
    count = db.session.execute(
        update(_recipients)
        .where(_recipients.c.campaign_id == campaign.id, _recipients.c.status == R_UNKNOWN)
        .values(status=R_PENDING, claimed_by=None, claimed_at=None, updated_at=now)
    ).rowcount
    if not count:
        db.session.rollback()
        return 0
    db.session.execute(
        update(_campaigns)
        .where(_campaigns.c.id == campaign.id)
        .values(unknown_count=_campaigns.c.unknown_count - count, updated_at=now)
    )
    from_status = campaign.status
    to_status = from_status
    job_id = None
    if from_status == FINISHED:
        to_status = DEFERRED if sending_paused() else QUEUED
        if _set_status(campaign.id, (FINISHED,), to_status, finished_at=None, finished_with_errors=False):
            job_id = new_slice_job_id(campaign.id) if to_status == QUEUED else None
            db.session.execute(
                update(_queues)
                .where(_queues.c.campaign_id == campaign.id)
                .values(
                    defer_reason=REASON_GLOBAL_PAUSE if to_status == DEFERRED else None,
                    deferred_until=None,
                    current_job_id=job_id,
                    heartbeat_at=now,
                    updated_at=now,
                )
            )
    elif from_status in (QUEUED, SENDING):
        job_id = new_slice_job_id(campaign.id)
    record_audit(
        actor,
        "unknown_recipients_requeued",
        campaign_id=campaign.id,
        from_status=from_status,
        to_status=to_status,
        details={"recipients": count},
    )
    db.session.commit()
    if job_id is not None:
        _enqueue_after_commit(campaign.id, job_id)
    logger.bind(actor=_actor_field(actor), campaign_id=campaign.id, recipients=count).warning(
        "Unknown recipients requeued"
    )
    return count


def estimate_send_duration(recipient_count: int) -> timedelta:
    """How long sending `recipient_count` emails takes at MAILER_SMTP_MAX_PER_HOUR (quota not shared)."""
    per_hour = get_settings().smtp_max_per_hour
    if recipient_count <= 0:
        return timedelta(0)
    return timedelta(hours=recipient_count / per_hour)


# --- the send loop's transitions ---------------------------------------------------------------


def _due_deferral(now: datetime):
    """SQL condition: the campaign is deferred and its time has come (not a `global_pause` wait)."""
    return and_(
        _campaigns.c.status == DEFERRED,
        exists().where(
            _queues.c.campaign_id == _campaigns.c.id,
            _queues.c.deferred_until.is_not(None),
            _queues.c.deferred_until <= now + DUE_TOLERANCE,
            or_(_queues.c.defer_reason.is_(None), _queues.c.defer_reason != REASON_GLOBAL_PAUSE),
        ),
    )


@dataclass(frozen=True, slots=True)
class SliceCampaign:
    """What a send slice needs of its campaign, read once when the slice begins."""

    id: int
    queue_id: int
    subject: str
    body_text: str
    body_html: str | None


@dataclass(frozen=True, slots=True)
class SliceStart:
    """Answer of `begin_slice`: go ahead (with the campaign), or the reason not to."""

    proceed: bool
    reason: str
    campaign: SliceCampaign | None = None
    # True for the slice that moved the campaign into `sending`: it may start sibling slices.
    started_campaign: bool = False


def begin_slice(campaign_id: int, job_id: str, now: datetime) -> SliceStart:
    """Move the campaign into `sending` for a slice, unless it is paused, cancelled, finished or not due."""
    if sending_paused():
        defer_for_global_pause(campaign_id, now)
        return SliceStart(False, REASON_GLOBAL_PAUSE)
    started = db.session.execute(
        update(_campaigns)
        .where(_campaigns.c.id == campaign_id, or_(_campaigns.c.status == QUEUED, _due_deferral(now)))
        .values(status=SENDING, updated_at=now)
    ).rowcount == 1
    if not started:
        status = _current_status(campaign_id)
        if status != SENDING:
            db.session.commit()
            return SliceStart(False, "not_due" if status == DEFERRED else (status or "missing"))
    values = {"current_job_id": job_id, "heartbeat_at": now, "updated_at": now}
    if started:
        values.update(defer_reason=None, deferred_until=None, scheduled_job_id=None)
    db.session.execute(update(_queues).where(_queues.c.campaign_id == campaign_id).values(**values))
    row = db.session.execute(
        select(_campaigns.c.subject, _campaigns.c.body_text, _campaigns.c.body_html, _queues.c.id)
        .join(_queues, _queues.c.campaign_id == _campaigns.c.id)
        .where(_campaigns.c.id == campaign_id)
    ).one()
    db.session.commit()
    campaign = SliceCampaign(campaign_id, row.id, row.subject, row.body_text or "", row.body_html)
    return SliceStart(True, SENDING, campaign, started_campaign=started)


def defer_campaign(
    campaign_id: int,
    reason: str,
    until: datetime | None,
    *,
    now: datetime | None = None,
    consecutive_errors: int | None = None,
) -> bool:
    """Defer an active campaign until `until` and schedule its continuation then (commits the session).

    Returns False when the campaign is no longer active (paused, cancelled, finished meanwhile).
    """
    now = now or utcnow()
    if not _set_status(campaign_id, ACTIVE_STATUSES, DEFERRED):
        db.session.commit()  # the caller's recorded outcomes still count
        return False
    queue_id, current_errors = db.session.execute(
        update(_queues)
        .where(_queues.c.campaign_id == campaign_id)
        .values(
            defer_reason=reason,
            deferred_until=until,
            scheduled_job_id=continuation_job_id(campaign_id) if until is not None else None,
            current_job_id=None,
            updated_at=now,
        )
        .returning(_queues.c.id, _queues.c.consecutive_transient_errors)
    ).one()
    if consecutive_errors is None:
        consecutive_errors = current_errors
    db.session.commit()
    announce_send_stop(get_redis(), campaign_id)  # the campaign's other slices stop too
    if until is not None:
        _schedule_after_commit(campaign_id, until)
    record = logger.bind(
        campaign_id=campaign_id,
        queue_id=queue_id,
        defer_reason=reason,
        deferred_until=until.isoformat() if until is not None else None,
        consecutive_errors=consecutive_errors,
    )
    if reason == REASON_TRANSIENT_ERROR:
        record.warning("Campaign deferred")
    else:
        record.info("Campaign deferred")
    return True


def defer_for_rate_limit(campaign_id: int, next_free_at: datetime, *, now: datetime | None = None) -> bool:
    """The hourly quota is used up: defer (`rate_limit`) until the moment a token frees."""
    return defer_campaign(campaign_id, REASON_RATE_LIMIT, next_free_at, now=now)


def defer_for_global_pause(campaign_id: int, now: datetime | None = None) -> bool:
    """Sending is switched off: the campaign waits (`global_pause`, no continuation) — but only if the
    switch is still off at this very statement (it holds a share lock on the switch row on PostgreSQL),
    so it can never miss `set_sending_paused(False)`'s re-enqueue."""
    now = now or utcnow()
    switch_off = exists(
        select(_app_state.c.id)
        .where(_app_state.c.id == APP_STATE_ID, _app_state.c.sending_paused.is_(True))
        .with_for_update(read=True)
    )
    # A deferral that is due (its continuation just fired) waits for the switch too; one that is
    # not due yet (a scheduled start tomorrow) keeps its time.
    deferred = db.session.execute(
        update(_campaigns)
        .where(
            _campaigns.c.id == campaign_id,
            or_(_campaigns.c.status.in_((QUEUED, SENDING)), _due_deferral(now)),
            switch_off,
        )
        .values(status=DEFERRED, updated_at=now)
    ).rowcount == 1
    if not deferred:
        db.session.commit()
        return False
    queue_id = db.session.execute(
        update(_queues)
        .where(_queues.c.campaign_id == campaign_id)
        .values(defer_reason=REASON_GLOBAL_PAUSE, deferred_until=None, scheduled_job_id=None, current_job_id=None, updated_at=now)
        .returning(_queues.c.id)
    ).scalar_one()
    db.session.commit()
    safe_cancel_continuation(campaign_id)
    logger.bind(
        campaign_id=campaign_id,
        queue_id=queue_id,
        defer_reason=REASON_GLOBAL_PAUSE,
        deferred_until=None,
        consecutive_errors=None,
    ).info("Campaign deferred")
    return True


def record_transient_error(campaign_id: int, error: str, *, now: datetime | None = None) -> str:
    """Count one transient SMTP error: defer (`transient_error`) or, at the threshold, trip the breaker.

    Commits the session. Returns the reason the campaign now waits with.
    """
    settings = get_settings()
    now = now or utcnow()
    count = db.session.execute(
        update(_queues)
        .where(_queues.c.campaign_id == campaign_id)
        .values(
            consecutive_transient_errors=_queues.c.consecutive_transient_errors + 1,
            last_error=error[:500],
            updated_at=now,
        )
        .returning(_queues.c.consecutive_transient_errors)
    ).scalar_one()
    if count >= settings.circuit_breaker_threshold:
        trip_circuit_breaker(campaign_id, count, now=now)
        return REASON_CIRCUIT_BREAKER
    until = now + timedelta(minutes=settings.transient_retry_delay_minutes)
    defer_campaign(campaign_id, REASON_TRANSIENT_ERROR, until, now=now, consecutive_errors=count)
    return REASON_TRANSIENT_ERROR


def trip_circuit_breaker(campaign_id: int, consecutive_errors: int, *, now: datetime | None = None) -> bool:
    """Pause the campaign (`circuit_breaker`) until an admin resumes it; audit with no actor (commits)."""
    settings = get_settings()
    now = now or utcnow()
    from_status = _current_status(campaign_id)
    if not _set_status(campaign_id, ACTIVE_STATUSES, PAUSED):
        db.session.commit()
        return False
    queue_id = db.session.execute(
        update(_queues)
        .where(_queues.c.campaign_id == campaign_id)
        .values(
            defer_reason=REASON_CIRCUIT_BREAKER,
            deferred_until=None,
            breaker_tripped_at=now,
            scheduled_job_id=None,
            current_job_id=None,
            updated_at=now,
        )
        .returning(_queues.c.id)
    ).scalar_one()
    record_audit(
        None,
        "circuit_breaker_tripped",
        campaign_id=campaign_id,
        from_status=from_status,
        to_status=PAUSED,
        details={"consecutive_errors": consecutive_errors, "threshold": settings.circuit_breaker_threshold},
    )
    db.session.commit()
    announce_send_stop(get_redis(), campaign_id)
    safe_cancel_continuation(campaign_id)
    logger.bind(
        campaign_id=campaign_id,
        queue_id=queue_id,
        consecutive_errors=consecutive_errors,
        threshold=settings.circuit_breaker_threshold,
    ).error("Circuit breaker tripped")
    return True


def finish_campaign_if_done(campaign_id: int, *, now: datetime | None = None) -> bool:
    """When no recipient is pending or being sent, the campaign becomes `finished` (commits).

    `finished_with_errors` is set when some recipients failed permanently. Only one caller
    wins the transition, so "Campaign finished" is logged once.
    """
    now = now or utcnow()
    left = db.session.scalar(
        select(_recipients.c.id)
        .where(_recipients.c.campaign_id == campaign_id, _recipients.c.status.in_((R_PENDING, R_SENDING)))
        .limit(1)
    )
    if left is not None:
        db.session.commit()
        return False
    finished = _set_status(
        campaign_id, (QUEUED, SENDING), FINISHED, finished_at=now, finished_with_errors=_campaigns.c.failed_count > 0
    )
    if not finished:
        db.session.commit()
        return False
    db.session.execute(
        update(_queues)
        .where(_queues.c.campaign_id == campaign_id)
        .values(defer_reason=None, deferred_until=None, current_job_id=None, scheduled_job_id=None, updated_at=now)
    )
    row = db.session.execute(
        select(
            _campaigns.c.sent_count,
            _campaigns.c.failed_count,
            _campaigns.c.recipients_total,
            _campaigns.c.finished_with_errors,
            _campaigns.c.started_at,
            _queues.c.id.label("queue_id"),
        )
        .join(_queues, _queues.c.campaign_id == _campaigns.c.id)
        .where(_campaigns.c.id == campaign_id)
    ).one()
    db.session.commit()
    safe_cancel_continuation(campaign_id)
    duration = (now - row.started_at).total_seconds() if row.started_at is not None else None
    logger.bind(
        campaign_id=campaign_id,
        queue_id=row.queue_id,
        campaign_status=FINISHED,
        totals={"sent": row.sent_count, "failed": row.failed_count, "total": row.recipients_total},
        duration_seconds=round(duration, 3) if duration is not None else None,
        finished_with_errors=bool(row.finished_with_errors),
    ).info("Campaign finished")
    return True
