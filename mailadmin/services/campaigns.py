"""People's campaign transitions: start, pause, resume, cancel, re-queue unknown recipients, start a
scheduled campaign now or move its start (the global switch: `sending_switch`; the send loop's
writes: `delivery/`; what all share: `transitions`). Each is a conditional UPDATE on
`campaigns.status` (`... WHERE status IN (...)`), so requests, send workers and the scheduler race
without one undoing another. Each public function is one `with transaction():`; RQ and rq-scheduler
are told after the commit (if Redis fails then, the recovery sweep enqueues the campaign later).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flask_babel import gettext, lazy_gettext
from loguru import logger
from sqlalchemy import and_, case, exists, func, or_, select, update

from mailadmin.extensions import db, get_redis, get_settings
from mailadmin.limits.throttle import ACTION_CAMPAIGN_START, is_user_throttled, throttle_message
from mailadmin.models import Campaign, CampaignQueue, Recipient, User
from mailadmin.models.campaign import (
    ACTIVE_STATUSES,
    CANCELLED,
    DEFERRED,
    DRAFT,
    FINISHED,
    PAUSED,
    QUEUED,
    R_PENDING,
    R_SKIPPED,
    R_UNKNOWN,
    SENDING,
    CampaignStatus,
)
from mailadmin.models.reasons import SWITCH_REASONS, Reason, reason_of
from mailadmin.models.types import utcnow
from mailadmin.queue.dispatch import new_slice_job_id, safe_cancel_continuation
from mailadmin.queue.signals import announce_send_stop
from mailadmin.services.audiences.targets import audience_resolved_for_start
from mailadmin.services.audit import actor_field, record_audit
from mailadmin.services.errors import ErrorKind, ServiceError, throttle_refusal
from mailadmin.services.events.payloads import EventType, record_campaign_event
from mailadmin.services.sending_switch import sending_paused
from mailadmin.services.transaction import after_commit, transaction
from mailadmin.services.transitions import (
    NO_PAUSE,
    PauseNote,
    Transition,
    current_status,
    enqueue_after_commit,
    schedule_after_commit,
    set_status,
)

_campaigns = Campaign.__table__
_queues = CampaignQueue.__table__
_recipients = Recipient.__table__

MSG_NOT_DRAFT = lazy_gettext("Only a draft campaign can be started.")
MSG_NO_RECIPIENTS = lazy_gettext("This campaign has no recipients yet. Import recipients before starting it.")
MSG_NOTHING_TO_SEND = lazy_gettext("Every recipient of this campaign is suppressed or invalid: there is nothing to send.")
MSG_TOO_LARGE = lazy_gettext(
    "Campaign is too large ({count} recipients). Maximum: {maximum}. Split it into several campaigns.")
MSG_NAIVE_SCHEDULE = lazy_gettext("The scheduled start time must include a time zone.")


class CampaignError(ServiceError):
    """A campaign action that cannot be carried out; `.message` is shown to the user as is."""

    default_kind = ErrorKind.CONFLICT


def _queue_row(campaign: Campaign) -> CampaignQueue:
    """The campaign's CampaignQueue, created on first start."""
    row = db.session.scalar(select(CampaignQueue).where(CampaignQueue.campaign_id == campaign.id))
    if row is None:
        row = CampaignQueue(campaign_id=campaign.id, consecutive_transient_errors=0)
        db.session.add(row)
    return row


# --- admin and manager actions ---------------------------------------------------------------


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


def _waiting_state(switched_off: bool) -> tuple[str, Reason | None]:
    """Status and reason of a campaign that is (re)started now: queued, or waiting for the switch."""
    if switched_off:
        return DEFERRED, next(iter(SWITCH_REASONS))
    return QUEUED, None


def _check_startable(campaign: Campaign, actor: User | None, scheduled_at: datetime | None, enforce_throttle: bool
                     ) -> tuple[int, int]:
    """Refuse a start that cannot happen (state, recipients, size cap, per-user throttle); (total, skipped)."""
    settings = get_settings()
    if campaign.status != DRAFT:
        raise CampaignError(MSG_NOT_DRAFT)
    if scheduled_at is not None and scheduled_at.tzinfo is None:
        raise CampaignError(MSG_NAIVE_SCHEDULE, ErrorKind.INVALID)
    total, pending, skipped = _recipient_counts(campaign.id)
    if total == 0:
        raise CampaignError(MSG_NO_RECIPIENTS)
    if pending == 0:
        raise CampaignError(MSG_NOTHING_TO_SEND)
    if total > settings.max_campaign_recipients:
        raise CampaignError(
            MSG_TOO_LARGE.format(count=total, maximum=settings.max_campaign_recipients), ErrorKind.TOO_LARGE
        )
    if enforce_throttle and actor is not None:
        limit = settings.throttle_campaign_start_per_hour
        result = is_user_throttled(get_redis(), ACTION_CAMPAIGN_START, actor.id, limit)
        if result.is_throttled:
            raise CampaignError(
                throttle_message(ACTION_CAMPAIGN_START, limit, result.reason), throttle_refusal(result.reason)
            )
    return total, skipped


@dataclass(frozen=True, slots=True)
class _StartPlan:
    """Where a start leads: the status, the reason it waits (if it does), until when, and the first job."""

    status: str
    reason: Reason | None
    until: datetime | None
    job_id: str | None


def _plan_start(campaign_id: int, scheduled_at: datetime | None, now: datetime) -> _StartPlan:
    if scheduled_at is not None and scheduled_at > now:
        return _StartPlan(DEFERRED, Reason.SCHEDULED, scheduled_at, None)
    status, reason = _waiting_state(sending_paused())
    return _StartPlan(status, reason, None, new_slice_job_id(campaign_id) if status == QUEUED else None)


def _reset_queue_row(campaign: Campaign, plan: _StartPlan, now: datetime) -> None:
    queue = _queue_row(campaign)
    queue.defer_reason = plan.reason
    queue.deferred_until = plan.until
    queue.consecutive_transient_errors = 0
    queue.current_job_id = plan.job_id
    queue.last_error = None
    queue.breaker_tripped_at = None
    queue.heartbeat_at = now
    for column, value in NO_PAUSE.items():
        setattr(queue, column, value)


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
    with transaction():
        with audience_resolved_for_start(campaign):  # lists/segments → recipients, committed with this start or not at all
            total, skipped = _check_startable(campaign, actor, scheduled_at, enforce_throttle)
        now = utcnow()
        plan = _plan_start(campaign.id, scheduled_at, now)
        scheduled = plan.reason is Reason.SCHEDULED
        if not set_status(
            campaign.id, (DRAFT,), plan.status,
            started_at=now, finished_at=None, finished_with_errors=False,
            scheduled_at=scheduled_at if scheduled else None, recipients_total=total,
            skipped_count=skipped, sent_count=0, failed_count=0, unknown_count=0,
        ):
            raise CampaignError(MSG_NOT_DRAFT)  # a concurrent start won
        _reset_queue_row(campaign, plan, now)
        record_audit(
            actor,
            "campaign_started",
            campaign_id=campaign.id,
            from_status=DRAFT,
            to_status=plan.status,
            details={"recipients": total, "scheduled_at": scheduled_at.isoformat() if scheduled else None},
        )
        record_campaign_event(EventType.CAMPAIGN_STARTED, campaign.id, recipients=total,
                              scheduled_at=scheduled_at.isoformat() if scheduled else None)
        if plan.job_id is not None:
            after_commit(lambda: enqueue_after_commit(campaign.id, plan.job_id))
        elif scheduled:
            after_commit(lambda: schedule_after_commit(campaign.id, plan.until))
    logger.bind(
        actor=actor_field(actor), campaign_id=campaign.id, recipients=total, campaign_status=plan.status,
        defer_reason=plan.reason,
    ).info("Campaign started")
    return campaign


def pause_campaign(campaign: Campaign, actor: User | None) -> Transition:
    """A person's pause (`admin_pause`, its owner or an admin), noting who and when: the send loop stops
    before its next message; idempotent (a second pause keeps the first one's note)."""
    note = PauseNote(utcnow(), actor.id if actor is not None else None)
    return _stop_campaign(
        campaign, actor, PAUSED, ACTIVE_STATUSES, "paused",
        queue_values={"defer_reason": Reason.ADMIN_PAUSE, **note.queue_values()},
    )


def resume_campaign(campaign: Campaign, actor: User | None) -> Transition:
    """Resume a paused campaign (admin or circuit breaker): back to `queued` and enqueued, breaker counter reset.

    Idempotent for a campaign that is already queued, sending or deferred (nothing changed). While
    sending is switched off globally the campaign waits with `global_pause` instead.
    """
    if campaign.status in ACTIVE_STATUSES:
        return Transition(False, CampaignStatus(campaign.status), CampaignStatus(campaign.status))
    if campaign.status != PAUSED:
        raise CampaignError(gettext("A %(status)s campaign cannot be resumed.", status=campaign.status))
    now = utcnow()
    queue = campaign.queue  # what it resumes from, read before the reset
    from_reason, errors = (reason_of(queue.defer_reason), queue.consecutive_transient_errors) if queue else (None, 0)
    with transaction():
        status, reason = _waiting_state(sending_paused())
        if not set_status(campaign.id, (PAUSED,), status):
            db.session.refresh(campaign)  # another request or the send loop moved it meanwhile
            if campaign.status in ACTIVE_STATUSES:
                return Transition(False, CampaignStatus(campaign.status), CampaignStatus(campaign.status))
            raise CampaignError(gettext("A %(status)s campaign cannot be resumed.", status=campaign.status))
        job_id = _reopen_queue(campaign.id, status, reason, now, consecutive_transient_errors=0)
        record_audit(actor, "campaign_resumed", campaign_id=campaign.id, from_status=PAUSED, to_status=status)
        record_campaign_event(EventType.CAMPAIGN_RESUMED, campaign.id, from_reason=from_reason and str(from_reason))
        if job_id is not None:
            after_commit(lambda: enqueue_after_commit(campaign.id, job_id))
    logger.bind(actor=actor_field(actor), campaign_id=campaign.id, campaign_status=status).info("Campaign resumed")
    return Transition(True, PAUSED, status, from_reason, errors)


def cancel_campaign(campaign: Campaign, actor: User | None) -> Transition:
    """Cancel for good: the send loop stops before its next message; idempotent."""
    return _stop_campaign(
        campaign, actor, CANCELLED, (*ACTIVE_STATUSES, PAUSED), "cancelled",
        queue_values={"current_job_id": None}, finished=True,
    )


def _reopen_queue(campaign_id: int, status: str, reason: Reason | None, now: datetime, **values) -> str | None:
    """The queue row of a campaign sent on again (in the session): waiting on `reason`, with no
    deadline; a queued campaign gets a fresh slice job id, returned for enqueueing after the commit."""
    job_id = new_slice_job_id(campaign_id) if status == QUEUED else None
    db.session.execute(
        update(_queues)
        .where(_queues.c.campaign_id == campaign_id)
        .values(defer_reason=reason, deferred_until=None, current_job_id=job_id, heartbeat_at=now, updated_at=now,
                **NO_PAUSE, **values)
    )
    return job_id


def _stop_campaign(campaign: Campaign, actor: User | None, to_status: str, from_statuses: tuple[str, ...], done: str,
                   *, queue_values: dict, finished: bool = False) -> Transition:
    """Pause or cancel: one conditional transition, then the send loop is told to stop at once.

    `done` ("paused", "cancelled") names the audit event, the log record and the refusal. Idempotent:
    a campaign already in `to_status` (here or because another request won the race) is left as it is
    (`changed` False); any other status is refused.
    """
    if campaign.status == to_status:
        return Transition(False, to_status, to_status)
    from_status = campaign.status
    now = utcnow()
    with transaction():
        if not set_status(campaign.id, from_statuses, to_status, **({"finished_at": now} if finished else {})):
            status = current_status(campaign.id)  # another request or the send loop moved it meanwhile
            if status == to_status:
                db.session.refresh(campaign)
                return Transition(False, to_status, to_status)
            raise CampaignError(gettext("A %(status)s campaign cannot be paused.", status=status) if done == "paused"
                                else gettext("A %(status)s campaign cannot be cancelled.", status=status))
        db.session.execute(
            update(_queues)
            .where(_queues.c.campaign_id == campaign.id)
            .values(deferred_until=None, updated_at=now, **queue_values)
        )
        record_audit(actor, f"campaign_{done}", campaign_id=campaign.id, from_status=from_status, to_status=to_status)
        record_campaign_event(EventType.CAMPAIGN_CANCELLED if finished else EventType.CAMPAIGN_PAUSED, campaign.id,
                              **({} if finished else {"reason": str(Reason.ADMIN_PAUSE)}))
        after_commit(lambda: _tell_slices_to_stop(campaign.id))
    logger.bind(actor=actor_field(actor), campaign_id=campaign.id).info(f"Campaign {done}")
    return Transition(True, from_status, to_status)


def _tell_slices_to_stop(campaign_id: int) -> None:
    """After a pause or cancel commits. Why both: the signal stops running slices before their next
    message; the continuation would otherwise wake the campaign up again."""
    announce_send_stop(get_redis(), campaign_id)
    safe_cancel_continuation(campaign_id)


# --- a scheduled start: now, or at another time ----------------------------------------------

MSG_NOT_SCHEDULED = lazy_gettext("This campaign is not waiting for a scheduled start (it has started or stopped "
                                 "meanwhile), so it cannot be started now or moved.")
MSG_START_IN_PAST = lazy_gettext("The new start time has already passed. Pick a time in the future.")
# The waits a new start time may replace: a scheduled start still to come, and one that was missed.
_START_WAITS = ((DEFERRED, Reason.SCHEDULED), (PAUSED, Reason.MISSED_SCHEDULE))


def _waits_for_start(campaign_id: int, waits: tuple[tuple[str, Reason], ...]):
    """SQL condition: the campaign is in one of `waits` (status and stored reason) right now."""
    return and_(
        _campaigns.c.id == campaign_id,
        or_(*(
            and_(_campaigns.c.status == status, exists().where(
                _queues.c.campaign_id == _campaigns.c.id, _queues.c.defer_reason == reason))
            for status, reason in waits
        )),
    )


def _planned_start(campaign: Campaign, waits: tuple[tuple[str, Reason], ...]) -> datetime:
    """The start time the campaign waits for (or missed); CampaignError when it waits for no start."""
    queue = campaign.queue
    if queue is None or (campaign.status, queue.defer_reason) not in waits:
        raise CampaignError(MSG_NOT_SCHEDULED)
    return queue.deferred_until or campaign.scheduled_at


def start_scheduled_now(campaign: Campaign, actor: User | None) -> Campaign:
    """Send a campaign waiting for its scheduled start now: `queued` and enqueued (or waiting for the
    switch), its scheduled continuation removed so that the old start time never starts it again."""
    planned = _planned_start(campaign, _START_WAITS[:1])
    now = utcnow()
    with transaction():
        status, reason = _waiting_state(sending_paused())
        started = db.session.execute(
            update(_campaigns).where(_waits_for_start(campaign.id, _START_WAITS[:1]))
            .values(status=status, scheduled_at=None, updated_at=now)
        ).rowcount == 1
        if not started:
            raise CampaignError(MSG_NOT_SCHEDULED)  # its start time came (or a person acted) meanwhile
        job_id = _reopen_queue(campaign.id, status, reason, now)
        record_audit(actor, "campaign_started_now", campaign_id=campaign.id, from_status=DEFERRED, to_status=status,
                     details={"scheduled_at": planned.isoformat() if planned else None})
        # Why before the enqueue: the continuation must be gone before a slice can finish the campaign.
        # A continuation that fired in between only finds a campaign that is already sending or done.
        after_commit(lambda: safe_cancel_continuation(campaign.id))
        if job_id is not None:
            after_commit(lambda: enqueue_after_commit(campaign.id, job_id))
    logger.bind(actor=actor_field(actor), campaign_id=campaign.id, campaign_status=status).info(
        "Scheduled campaign started now")
    db.session.refresh(campaign)
    return campaign


def reschedule_campaign(campaign: Campaign, actor: User | None, start_at: datetime) -> Campaign:
    """Give a campaign waiting for its scheduled start (or paused because it missed it) another start
    time in the future: `deferred` (`scheduled`) until then, its continuation moved to that moment."""
    if start_at.tzinfo is None:
        raise CampaignError(MSG_NAIVE_SCHEDULE, ErrorKind.INVALID)
    now = utcnow()
    if start_at <= now:
        raise CampaignError(MSG_START_IN_PAST, ErrorKind.INVALID)
    planned = _planned_start(campaign, _START_WAITS)
    from_status = campaign.status
    with transaction():
        moved = db.session.execute(
            update(_campaigns).where(_waits_for_start(campaign.id, _START_WAITS))
            .values(status=DEFERRED, scheduled_at=start_at, updated_at=now)
        ).rowcount == 1
        if not moved:
            raise CampaignError(MSG_NOT_SCHEDULED)
        db.session.execute(
            update(_queues).where(_queues.c.campaign_id == campaign.id)
            .values(defer_reason=Reason.SCHEDULED, deferred_until=start_at, current_job_id=None, updated_at=now,
                    **NO_PAUSE)
        )
        record_audit(actor, "campaign_rescheduled", campaign_id=campaign.id, from_status=from_status,
                     to_status=DEFERRED, details={"scheduled_at": start_at.isoformat(),
                                                  "previous_scheduled_at": planned.isoformat() if planned else None})
        # Replaces the continuation under its stable job id.
        after_commit(lambda: schedule_after_commit(campaign.id, start_at))
    logger.bind(actor=actor_field(actor), campaign_id=campaign.id, scheduled_at=start_at.isoformat()).info(
        "Scheduled start moved")
    db.session.refresh(campaign)
    return campaign


def requeue_unknown_recipients(campaign: Campaign, actor: User | None) -> int:
    """Explicitly send again to the recipients whose outcome is `unknown` (they may get the email twice).

    Returns how many were re-queued. A finished campaign is reopened; a paused or deferred one
    picks them up when it continues.
    """
    if campaign.status in (DRAFT, CANCELLED):
        raise CampaignError(gettext("Recipients of a %(status)s campaign cannot be re-queued.", status=campaign.status))
    with transaction():
        count = _requeue_unknown(campaign, actor, utcnow())
    if not count:
        return 0
    logger.bind(actor=actor_field(actor), campaign_id=campaign.id, recipients=count).warning(
        "Unknown recipients requeued"
    )
    return count


def _requeue_unknown(campaign: Campaign, actor: User | None, now: datetime) -> int:
    """The `unknown` recipients back to `pending`, the campaign reopened or its slice enqueued, in the session."""
    count = db.session.execute(
        update(_recipients)
        .where(_recipients.c.campaign_id == campaign.id, _recipients.c.status == R_UNKNOWN)
        .values(status=R_PENDING, claimed_by=None, claimed_at=None, updated_at=now)
    ).rowcount
    if not count:
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
        to_status, reason = _waiting_state(sending_paused())
        if set_status(campaign.id, (FINISHED,), to_status, finished_at=None, finished_with_errors=False):
            job_id = _reopen_queue(campaign.id, to_status, reason, now)
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
    if job_id is not None:
        after_commit(lambda: enqueue_after_commit(campaign.id, job_id))
    return count
