"""The global sending switch: an admin switches all sending off (running campaigns wait with
`global_pause`, running slices stop before their next message) and back on (they are re-enqueued)."""

from __future__ import annotations

from datetime import datetime

from loguru import logger
from sqlalchemy import func, select, update

from mailadmin.extensions import db, get_redis
from mailadmin.models import APP_STATE_ID, AppState, Campaign, CampaignQueue, User
from mailadmin.models.campaign import ACTIVE_STATUSES, DEFERRED, QUEUED, SENDING
from mailadmin.models.reasons import SWITCH_REASONS
from mailadmin.models.types import utcnow
from mailadmin.queue.dispatch import new_slice_job_id
from mailadmin.queue.signals import announce_send_stop
from mailadmin.services.audit import actor_field, record_audit
from mailadmin.services.transaction import after_commit, transaction
from mailadmin.services.transitions import enqueue_after_commit, set_status

_campaigns = Campaign.__table__
_queues = CampaignQueue.__table__
_app_state = AppState.__table__


def _app_state_row() -> AppState:
    state = db.session.get(AppState, APP_STATE_ID)
    if state is None:
        state = AppState(id=APP_STATE_ID, sending_paused=False)
        db.session.add(state)
        db.session.flush()
    return state


def sending_paused() -> bool:
    """Is all sending switched off by an admin (AppState row 1)?"""
    return bool(
        db.session.scalar(select(_app_state.c.sending_paused).where(_app_state.c.id == APP_STATE_ID))
    )


def set_sending_paused(paused: bool, actor: User | None) -> bool:
    """Switch all sending off (running campaigns wait with `global_pause`) or back on (they are re-enqueued);
    False when it already was so (nothing changed).

    Idempotent. Switching on commits the switch first and only then re-enqueues the waiting
    campaigns, so a worker that deferred a campaign for `global_pause` at the same moment is
    always seen by the re-enqueue (see `defer_for_global_pause`).
    """
    now = utcnow()
    with transaction():
        state = _app_state_row()
        if bool(state.sending_paused) == paused:
            return False
        state.sending_paused = paused
        state.changed_by_id = actor.id if actor is not None else None
        state.changed_at = now
        if paused:
            _switch_off(actor, now)
        else:
            record_audit(actor, "sending_switched_on")
    if not paused:
        # A second transaction, on purpose: the switch is committed before the waiting campaigns
        # are read, so a slice deferring for `global_pause` meanwhile is seen by this re-enqueue.
        _switch_on(actor, now)
    return True


def _switch_off(actor: User | None, now: datetime) -> None:
    """Running campaigns wait for the switch (in the transaction that changes the switch row)."""
    reason = next(iter(SWITCH_REASONS))
    # Every active campaign waits from now on, deferred ones included (they keep their own time
    # but cannot send before the switch is back on): that is the number the audit records.
    waiting = db.session.scalar(select(func.count()).where(_campaigns.c.status.in_(ACTIVE_STATUSES)))
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
            .values(defer_reason=reason, deferred_until=None, updated_at=now)
        )
    record_audit(actor, "sending_switched_off", details={"campaigns_waiting": waiting})
    after_commit(lambda: announce_send_stop(get_redis(), None))  # running slices stop before their next message
    after_commit(lambda: logger.bind(actor=actor_field(actor), campaign_id=None, campaigns=waiting)
                 .warning("Sending switched off"))


def _switch_on(actor: User | None, now: datetime) -> None:
    """Once the switch is committed on: re-enqueue every campaign that waits for it (its own transaction)."""
    with transaction():
        waiting = db.session.scalars(
            select(_campaigns.c.id)
            .join(_queues, _queues.c.campaign_id == _campaigns.c.id)
            .where(_campaigns.c.status == DEFERRED, _queues.c.defer_reason.in_([str(r) for r in SWITCH_REASONS]))
        ).all()
        requeued = []
        for campaign_id in waiting:
            job_id = new_slice_job_id(campaign_id)
            if set_status(campaign_id, (DEFERRED,), QUEUED):
                db.session.execute(
                    update(_queues)
                    .where(_queues.c.campaign_id == campaign_id)
                    .values(defer_reason=None, deferred_until=None, current_job_id=job_id, heartbeat_at=now,
                            updated_at=now)
                )
                requeued.append((campaign_id, job_id))
    for campaign_id, job_id in requeued:
        enqueue_after_commit(campaign_id, job_id)
    logger.bind(actor=actor_field(actor), campaign_id=None, campaigns=len(requeued)).info("Sending switched on")
