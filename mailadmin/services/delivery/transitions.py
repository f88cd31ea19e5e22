"""The send loop's campaign transitions: a slice begins (or is refused: paused, cancelled, not
due, the switch off, a missed schedule), the campaign is deferred (each reason), a transient error
is counted and at the threshold trips the breaker, and the campaign finishes.

Each function owns its transaction: it commits once, and on any failure rolls back and raises.
Stop announcements, continuations and cancellations reach Redis only after the commit.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from loguru import logger
from sqlalchemy import exists, or_, select, update

from mailadmin.extensions import db, get_redis, get_settings
from mailadmin.limits.waiting_line import leave_waiting_line
from mailadmin.models import APP_STATE_ID, AppState, Campaign, CampaignQueue, Recipient
from mailadmin.models.campaign import (
    ACTIVE_STATUSES,
    DEFERRED,
    FINISHED,
    PAUSED,
    QUEUED,
    R_PENDING,
    R_SENDING,
    SENDING,
)
from mailadmin.models.reasons import Reason, reason_of
from mailadmin.models.types import utcnow
from mailadmin.queue.dispatch import safe_cancel_continuation
from mailadmin.queue.signals import announce_send_stop
from mailadmin.services.audit import record_audit
from mailadmin.services.delivery.counting import count_breaker_trip, count_deferral, count_pause
from mailadmin.services.delivery.values import SliceCampaign, SliceRefusal, SliceStart
from mailadmin.services.events.payloads import EventType, record_campaign_event
from mailadmin.services.sending_switch import sending_paused
from mailadmin.services.transaction import after_commit, in_transaction
from mailadmin.services.transitions import (
    PauseNote,
    current_status,
    due_deferral,
    hold_queue,
    schedule_after_commit,
    set_status,
    update_queue,
)

_campaigns = Campaign.__table__
_recipients = Recipient.__table__
_queues = CampaignQueue.__table__
_app_state = AppState.__table__


# --- a slice begins ------------------------------------------------------------------------------


@in_transaction
def begin_slice(campaign_id: int, job_id: str, now: datetime) -> SliceStart:
    """Move the campaign into `sending` for a slice, unless it is paused, cancelled, finished or not due
    (one transaction: the switch, a missed schedule and the move are decided together)."""
    if sending_paused():
        defer_for_global_pause(campaign_id, now)
        return SliceStart(False, Reason.GLOBAL_PAUSE)
    if pause_missed_schedule(campaign_id, now):
        return SliceStart(False, Reason.MISSED_SCHEDULE)
    return _begin_slice(campaign_id, job_id, now)


def _begin_slice(campaign_id: int, job_id: str, now: datetime) -> SliceStart:
    fan_out = set_status(campaign_id, (QUEUED,), SENDING)
    started = fan_out or db.session.execute(
        update(_campaigns).where(_campaigns.c.id == campaign_id, due_deferral(now)).values(status=SENDING, updated_at=now)
    ).rowcount == 1
    if not started:
        status = current_status(campaign_id)
        if status != SENDING:
            return SliceStart(False, SliceRefusal.NOT_DUE if status == DEFERRED else (status or SliceRefusal.MISSING))
    values = {"current_job_id": job_id, "heartbeat_at": now, "updated_at": now}
    if started:
        values.update(defer_reason=None, deferred_until=None)
    update_queue(campaign_id, **values)
    row = db.session.execute(
        select(_campaigns.c.subject, _campaigns.c.body_text, _campaigns.c.body_html, _campaigns.c.name, _queues.c.id)
        .join(_queues, _queues.c.campaign_id == _campaigns.c.id)
        .where(_campaigns.c.id == campaign_id)
    ).one()
    campaign = SliceCampaign(campaign_id, row.id, row.subject, row.body_text or "", row.body_html, row.name or "")
    return SliceStart(True, SENDING, campaign, fan_out=fan_out)


@in_transaction
def pause_missed_schedule(campaign_id: int, now: datetime) -> bool:
    """A scheduled start found more than MAILER_SCHEDULE_MAX_LATE_MINUTES late (everything was
    down when it came) is not sent by surprise: the campaign pauses with `missed_schedule` until
    its owner or an admin resumes it."""
    max_late = get_settings().schedule_max_late_minutes
    scheduled_at = db.session.scalar(
        select(_queues.c.deferred_until).where(
            _queues.c.campaign_id == campaign_id,
            _queues.c.defer_reason == Reason.SCHEDULED,
            _queues.c.deferred_until < now - timedelta(minutes=max_late),
        )
    )
    if scheduled_at is None or not set_status(campaign_id, (DEFERRED,), PAUSED):
        return False
    queue_id = hold_queue(campaign_id, Reason.MISSED_SCHEDULE, now, PauseNote(now))
    after_commit(lambda: count_pause(Reason.MISSED_SCHEDULE))
    record_campaign_event(EventType.CAMPAIGN_PAUSED, campaign_id, reason=str(Reason.MISSED_SCHEDULE))
    after_commit(lambda: logger.bind(
        campaign_id=campaign_id,
        queue_id=queue_id,
        scheduled_at=scheduled_at.isoformat(),
        late_minutes=round((now - scheduled_at).total_seconds() / 60, 1),
        max_late_minutes=max_late,
    ).warning("Scheduled start missed; campaign paused"))
    return True



# --- deferrals, the breaker, the end -------------------------------------------------------------


def _log_deferral(campaign_id: int, queue_id: int, reason: Reason, until: datetime | None, errors: int | None) -> None:
    count_deferral(reason)
    logger.bind(
        campaign_id=campaign_id,
        queue_id=queue_id,
        defer_reason=str(reason),
        deferred_until=until.isoformat() if until is not None else None,
        consecutive_errors=errors,
    ).log(reason.info.log_level, "Campaign deferred")


@in_transaction
def defer_campaign(
    campaign_id: int,
    reason: Reason,
    until: datetime | None,
    *,
    now: datetime | None = None,
    consecutive_errors: int | None = None,
) -> bool:
    """Defer an active campaign until `until` and schedule its continuation then (after the commit).

    Returns False when the campaign is no longer active (paused, cancelled, finished meanwhile).
    """
    reason = Reason(reason)
    now = now or utcnow()
    if not set_status(campaign_id, ACTIVE_STATUSES, DEFERRED):
        return False
    queue_id, current_errors = update_queue(
        campaign_id, _queues.c.id, _queues.c.consecutive_transient_errors,
        defer_reason=reason, deferred_until=until, current_job_id=None, updated_at=now,
    ).one()
    after_commit(lambda: announce_send_stop(get_redis(), campaign_id))  # the campaign's other slices stop too
    if until is not None:
        after_commit(lambda: schedule_after_commit(campaign_id, until))
    errors = current_errors if consecutive_errors is None else consecutive_errors
    after_commit(lambda: _log_deferral(campaign_id, queue_id, reason, until, errors))
    return True


def defer_for_rate_limit(campaign_id: int, next_free_at: datetime, *, now: datetime | None = None) -> bool:
    """The hourly quota is used up: defer (`rate_limit`) until the moment a token frees."""
    return defer_campaign(campaign_id, Reason.RATE_LIMIT, next_free_at, now=now)


@in_transaction
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
        .where(_campaigns.c.id == campaign_id, or_(_campaigns.c.status.in_((QUEUED, SENDING)), due_deferral(now)), switch_off)
        .values(status=DEFERRED, updated_at=now)
    ).rowcount == 1
    if not deferred:
        return False
    queue_id = hold_queue(campaign_id, Reason.GLOBAL_PAUSE, now)
    after_commit(lambda: safe_cancel_continuation(campaign_id))
    after_commit(lambda: _log_deferral(campaign_id, queue_id, Reason.GLOBAL_PAUSE, None, None))
    return True


def record_transient_error(campaign_id: int, error: str, *, now: datetime | None = None) -> Reason:
    """Count one transient SMTP error: defer (`transient_error`) or, at the threshold, trip the breaker.

    Returns the reason the campaign now waits with.
    """
    settings = get_settings()
    now = now or utcnow()
    count = _count_transient_error(campaign_id, error, now)
    if count is None:  # a sibling slice already counted this retry cycle
        return _current_reason(campaign_id) or Reason.TRANSIENT_ERROR
    if count >= settings.circuit_breaker_threshold:
        trip_circuit_breaker(campaign_id, count, now=now)
        return Reason.CIRCUIT_BREAKER
    defer_campaign(campaign_id, Reason.TRANSIENT_ERROR, transient_retry_at(now), now=now, consecutive_errors=count)
    return Reason.TRANSIENT_ERROR


def transient_retry_at(now: datetime) -> datetime:
    """When a campaign deferred by a transient error at `now` retries (MAILER_TRANSIENT_RETRY_DELAY_MINUTES)."""
    return now + timedelta(minutes=get_settings().transient_retry_delay_minutes)


@in_transaction
def _count_transient_error(campaign_id: int, error: str, now: datetime) -> int | None:
    """One more consecutive transient error on the campaign's queue row (its own commit); the new count.

    One count per failed retry cycle: only the slice that moves the campaign out of `sending`
    counts (None for the others: a sibling failing in the same cycle finds it deferred; the row
    lock orders them).
    """
    if not set_status(campaign_id, (QUEUED, SENDING), DEFERRED):
        return None
    count = update_queue(
        campaign_id, _queues.c.consecutive_transient_errors,
        consecutive_transient_errors=_queues.c.consecutive_transient_errors + 1, last_error=error[:500], updated_at=now,
    ).scalar_one()
    return count


@in_transaction
def _current_reason(campaign_id: int) -> Reason | None:
    """The reason the campaign waits with now, as stored (None when it does not wait)."""
    return reason_of(db.session.scalar(select(_queues.c.defer_reason).where(_queues.c.campaign_id == campaign_id)))


@in_transaction
def trip_circuit_breaker(campaign_id: int, consecutive_errors: int, *, now: datetime | None = None) -> bool:
    """Pause the campaign (`circuit_breaker`) until an admin resumes it; audit with no actor."""
    settings = get_settings()
    now = now or utcnow()
    from_status = current_status(campaign_id)
    if not set_status(campaign_id, ACTIVE_STATUSES, PAUSED):
        return False
    queue_id = update_queue(
        campaign_id, _queues.c.id,
        defer_reason=Reason.CIRCUIT_BREAKER, deferred_until=None, breaker_tripped_at=now, current_job_id=None,
        updated_at=now, **PauseNote(now).queue_values(),
    ).scalar_one()
    record_audit(
        None,
        "circuit_breaker_tripped",
        campaign_id=campaign_id,
        from_status=from_status,
        to_status=PAUSED,
        details={"consecutive_errors": consecutive_errors, "threshold": settings.circuit_breaker_threshold},
    )
    record_campaign_event(EventType.CAMPAIGN_PAUSED, campaign_id, reason=str(Reason.CIRCUIT_BREAKER),
                          consecutive_errors=consecutive_errors)
    after_commit(lambda: _announce_breaker(campaign_id, queue_id, consecutive_errors, settings.circuit_breaker_threshold))
    return True


def _announce_breaker(campaign_id: int, queue_id: int, consecutive_errors: int, threshold: int) -> None:
    """After the breaker's commit: running slices stop, no continuation, no place in the waiting line."""
    announce_send_stop(get_redis(), campaign_id)
    safe_cancel_continuation(campaign_id)
    leave_waiting_line(get_redis(), campaign_id)  # paused until a person resumes it: it waits for no token
    count_breaker_trip()
    logger.bind(
        campaign_id=campaign_id, queue_id=queue_id, consecutive_errors=consecutive_errors, threshold=threshold,
    ).log(Reason.CIRCUIT_BREAKER.info.log_level, "Circuit breaker tripped")


@in_transaction
def finish_campaign_if_done(campaign_id: int, *, now: datetime | None = None) -> bool:
    """When no recipient is pending or being sent, the campaign becomes `finished`.

    `finished_with_errors` is set when some recipients failed permanently. Only one caller
    wins the transition, so "Campaign finished" is logged once.
    """
    now = now or utcnow()
    left = db.session.scalar(
        select(_recipients.c.id)
        .where(_recipients.c.campaign_id == campaign_id, _recipients.c.status.in_((R_PENDING, R_SENDING)))
        .limit(1)
    )
    finished = left is None and set_status(
        campaign_id, (QUEUED, SENDING), FINISHED, finished_at=now, finished_with_errors=_campaigns.c.failed_count > 0
    )
    if not finished:
        return False
    hold_queue(campaign_id, None, now)  # finished: no reason, no deadline, no job
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
    record_campaign_event(EventType.CAMPAIGN_FINISHED, campaign_id, recipients=row.recipients_total, sent=row.sent_count,
                          failed=row.failed_count, finished_with_errors=bool(row.finished_with_errors))
    after_commit(lambda: _announce_finished(campaign_id, row, now))
    return True


def _announce_finished(campaign_id: int, row, now: datetime) -> None:
    """After the finish's commit: no continuation; "Campaign finished" with the totals."""
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
