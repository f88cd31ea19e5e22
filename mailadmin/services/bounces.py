"""Applying bounce and complaint reports (webhooks, the bounce mailbox) — each exactly once.

A report is first recorded as a `BounceEvent` under a unique key (provider, notification id,
address hash): when that insert finds the key taken, the report was applied before and nothing
changes. Otherwise, in the same transaction:

- hard bounce: the recipient `sent` -> `bounced`, `campaigns.bounced_count + 1`, address suppressed;
- complaint: the recipient `sent`/`bounced` -> `complained`, `complained_count + 1`, suppressed;
- soft bounce: the recipient's `soft_bounce_count + 1`; the 3rd soft bounce of the address within
  30 days suppresses it.

After the commit, a campaign is paused (`bounce_rate`) when its hard bounces + complaints exceed
MAILER_BOUNCE_RATE_PAUSE_PERCENT of at least 100 sent, or its spam complaints alone exceed
MAILER_COMPLAINT_RATE_PAUSE_PERCENT of at least 1,000 sent (`bounce_rate_trip` decides which).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta
from fractions import Fraction

from loguru import logger
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from mailadmin.counters import BOUNCES, COMPLAINTS, PAUSES, count
from mailadmin.extensions import db, get_redis, get_settings
from mailadmin.limits.replay import DeliveryClaim, claim_delivery, forget_delivery, mark_delivery_applied
from mailadmin.mail.bounces import BOUNCE_COMPLAINT, BOUNCE_HARD, BOUNCE_SOFT, BounceReport, find_our_message_id
from mailadmin.models import AuditEvent, BounceEvent, Campaign, Recipient
from mailadmin.models.campaign import ACTIVE_STATUSES, PAUSED, R_BOUNCED, R_COMPLAINED, R_SENT
from mailadmin.models.reasons import BounceRateTrip, PauseLine, Reason
from mailadmin.models.suppression import (
    REASON_COMPLAINT,
    REASON_HARD_BOUNCE,
    REASON_SOFT_BOUNCES,
)
from mailadmin.models.types import utcnow
from mailadmin.pii import erasure_hash, get_pii_log_fields
from mailadmin.queue.dispatch import safe_cancel_continuation
from mailadmin.queue.signals import announce_send_stop
from mailadmin.services.audit import record_audit
from mailadmin.services.events.payloads import EventType, record_campaign_event, record_recipient_event
from mailadmin.services.suppressions import normalise_suppressed_email, suppress
from mailadmin.services.transaction import after_commit, in_transaction, transaction
from mailadmin.services.transitions import current_status, hold_queue, set_status

SOFT_BOUNCE_LIMIT = 3
SOFT_BOUNCE_WINDOW = timedelta(days=30)
# Hard bounces + complaints are judged only once a campaign has sent this many messages.
BOUNCE_RATE_MIN_SENT = 100
# Spam complaints alone are judged from this many: a few complaints among the first messages say little.
COMPLAINT_RATE_MIN_SENT = 1000
BOUNCE_RATE_AUDIT_ACTION = "bounce_rate_paused"

_recipients = Recipient.__table__
_campaigns = Campaign.__table__


@dataclass(frozen=True)
class BounceOutcome:
    """What applying one report did."""

    applied: bool  # False: the same report was applied before (or the address is not one)
    campaign_id: int | None = None
    recipient_id: int | None = None
    recipient_changed: bool = False
    suppressed: bool = False


def _event_key(report: BounceReport, email_hash: str) -> str:
    event_id = report.event_id
    if len(event_id) > 160:
        event_id = hashlib.sha256(event_id.encode("utf-8")).hexdigest()
    return f"{report.source}:{report.kind}:{event_id}:{email_hash[:32]}"


def _insert_event(report: BounceReport, email_hash: str, campaign_id: int | None, recipient_id: int | None) -> bool:
    table = BounceEvent.__table__
    insert = pg_insert if db.session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = (
        insert(table)
        .values(event_key=_event_key(report, email_hash), kind=report.kind, source=report.source,
                email_hash=email_hash, campaign_id=campaign_id, recipient_id=recipient_id,
                status_code=(report.status_code or None) and report.status_code[:16], created_at=utcnow())
        .on_conflict_do_nothing(index_elements=["event_key"])
        .returning(table.c.id)
    )
    return db.session.execute(statement).first() is not None


def find_reported_recipient(report: BounceReport, address: str) -> tuple[int, int] | None:
    """(campaign_id, recipient_id) the report is about: VERP, then our Message-ID, then the address."""
    if report.recipient_id is not None:
        row = db.session.execute(
            select(_recipients.c.campaign_id, _recipients.c.id)
            .where(_recipients.c.id == report.recipient_id, _recipients.c.campaign_id == report.campaign_id)
        ).first()
        if row is not None:
            return row.campaign_id, row.id
    ours = find_our_message_id(report.message_id)
    if ours is not None:
        (campaign_id, recipient_id), message_id = (ours[0].campaign_id, ours[0].recipient_id), ours[1]
        row = db.session.execute(
            select(_recipients.c.campaign_id, _recipients.c.id).where(
                _recipients.c.id == recipient_id,
                _recipients.c.campaign_id == campaign_id,
                _recipients.c.smtp_message_id == message_id,
            )
        ).first()
        if row is not None:
            return row.campaign_id, row.id
    row = db.session.execute(
        select(_recipients.c.campaign_id, _recipients.c.id)
        .where(_recipients.c.email == address, _recipients.c.status.in_((R_SENT, R_BOUNCED, R_COMPLAINED)))
        .order_by(_recipients.c.sent_at.desc().nulls_last(), _recipients.c.id.desc())
        .limit(1)
    ).first()
    return (row.campaign_id, row.id) if row is not None else None


def _mark_recipient(kind: str, campaign_id: int, recipient_id: int) -> bool:
    """Move the recipient to bounced/complained (or count a soft bounce) and the campaign's counter."""
    if kind == BOUNCE_SOFT:
        db.session.execute(
            update(_recipients).where(_recipients.c.id == recipient_id)
            .values(soft_bounce_count=_recipients.c.soft_bounce_count + 1, updated_at=utcnow())
        )
        return True
    to_status, from_statuses, counter = (
        (R_BOUNCED, (R_SENT,), _campaigns.c.bounced_count)
        if kind == BOUNCE_HARD
        else (R_COMPLAINED, (R_SENT, R_BOUNCED), _campaigns.c.complained_count)
    )
    changed = db.session.execute(
        update(_recipients)
        .where(_recipients.c.id == recipient_id, _recipients.c.status.in_(from_statuses))
        .values(status=to_status, updated_at=utcnow())
        .returning(_recipients.c.id)
    ).first() is not None
    if changed:
        db.session.execute(
            update(_campaigns).where(_campaigns.c.id == campaign_id)
            .values({counter.key: counter + 1, "updated_at": utcnow()})
        )
    return changed


def _soft_bounces_reached_limit(email_hash: str) -> bool:
    since = utcnow() - SOFT_BOUNCE_WINDOW
    count = db.session.scalar(
        select(func.count()).select_from(BounceEvent)
        .where(BounceEvent.email_hash == email_hash, BounceEvent.kind == BOUNCE_SOFT, BounceEvent.created_at >= since)
    )
    return (count or 0) >= SOFT_BOUNCE_LIMIT


def _suppress_for(report: BounceReport, address: str, email_hash: str, campaign_id: int | None) -> bool:
    if report.kind == BOUNCE_HARD:
        reason = REASON_HARD_BOUNCE
    elif report.kind == BOUNCE_COMPLAINT:
        reason = REASON_COMPLAINT
    elif _soft_bounces_reached_limit(email_hash):
        reason = REASON_SOFT_BOUNCES
    else:
        return False
    return suppress(address, reason, campaign_id, source=report.source)


def record_bounce(report: BounceReport) -> BounceOutcome:
    """Apply one report once (see the module docstring); commits, then checks the bounce rate in a
    transaction of its own (the report stays recorded whatever the check finds)."""
    address = normalise_suppressed_email(report.email)
    if "@" not in address or len(address) > 320:
        return BounceOutcome(False)
    with transaction():
        outcome = _apply_report(report, address)
    if outcome.recipient_changed and outcome.campaign_id is not None and report.kind != BOUNCE_SOFT:
        pause_if_bounce_rate_exceeded(outcome.campaign_id)
    return outcome


def _apply_report(report: BounceReport, address: str) -> BounceOutcome:
    """The report's event, the recipient's new status and the suppression, in the session (a report seen
    before changes nothing); the record is logged once committed."""
    email_hash = erasure_hash(address, get_settings().log_hash_salt)
    found = find_reported_recipient(report, address)
    campaign_id, recipient_id = found if found else (None, None)
    if not _insert_event(report, email_hash, campaign_id, recipient_id):
        return BounceOutcome(False, campaign_id, recipient_id)
    changed = _mark_recipient(report.kind, campaign_id, recipient_id) if found else False
    suppressed = _suppress_for(report, address, email_hash, campaign_id)
    after_commit(lambda: count(COMPLAINTS, report.source) if report.kind == BOUNCE_COMPLAINT
                 else count(BOUNCES, report.source, report.kind))
    if changed and report.kind != BOUNCE_SOFT:
        record_recipient_event(EventType.RECIPIENT_COMPLAINED if report.kind == BOUNCE_COMPLAINT
                               else EventType.RECIPIENT_BOUNCED, campaign_id=campaign_id, recipient_id=recipient_id,
                               email=address, source=report.source)
    after_commit(lambda: logger.bind(
        campaign_id=campaign_id,
        recipient_id=recipient_id,
        **get_pii_log_fields(address, "INFO"),
        source=report.source,
        bounce_type=report.kind,
        status_code=report.status_code,
        suppressed=suppressed,
    ).info("Complaint recorded" if report.kind == BOUNCE_COMPLAINT else "Bounce recorded"))
    return BounceOutcome(True, campaign_id, recipient_id, changed, suppressed)


def record_bounces(reports: list[BounceReport]) -> list[BounceOutcome]:
    """Apply several reports (one notification may name several addresses)."""
    return [record_bounce(report) for report in reports]


def _over(count: int, sent: int, percent: float) -> bool:
    """`count` above `percent` of `sent` — equal is not over; exact for a percentage like 0.3."""
    return Fraction(count) * 100 > Fraction(str(percent)) * sent


def bounce_rate_trip(
    sent: int, bounced: int, complained: int, *, bounce_percent: float, complaint_percent: float
) -> BounceRateTrip | None:
    """The line a campaign's figures cross, or None: hard bounces + complaints above `bounce_percent` of at
    least BOUNCE_RATE_MIN_SENT sent, else complaints alone above `complaint_percent` of at least
    COMPLAINT_RATE_MIN_SENT sent. A percentage of 0 turns its line off."""
    if bounce_percent > 0 and sent >= BOUNCE_RATE_MIN_SENT and _over(bounced + complained, sent, bounce_percent):
        return BounceRateTrip(PauseLine.BOUNCE_RATE, sent, bounced, complained, bounce_percent)
    if complaint_percent > 0 and sent >= COMPLAINT_RATE_MIN_SENT and _over(complained, sent, complaint_percent):
        return BounceRateTrip(PauseLine.COMPLAINT_RATE, sent, bounced, complained, complaint_percent)
    return None


@in_transaction
def pause_if_bounce_rate_exceeded(campaign_id: int) -> bool:
    """Pause an active campaign (`bounce_rate`) whose list bounces or draws complaints too much; True when
    this call paused it."""
    row = db.session.execute(
        select(_campaigns.c.sent_count, _campaigns.c.bounced_count, _campaigns.c.complained_count)
        .where(_campaigns.c.id == campaign_id)
    ).first()
    if row is None:
        return False
    settings = get_settings()
    trip = bounce_rate_trip(row.sent_count, row.bounced_count, row.complained_count,
                            bounce_percent=settings.bounce_rate_pause_percent,
                            complaint_percent=settings.complaint_rate_pause_percent)
    return trip is not None and pause_for_bounce_rate(campaign_id, trip)


@in_transaction
def pause_for_bounce_rate(campaign_id: int, trip: BounceRateTrip) -> bool:
    """Pause an active campaign (`bounce_rate`) until an admin resumes it; audit with no actor.

    The send loop sees `paused` before its next message, exactly as after an admin pause. The audit row
    and the log record carry the trip (which line, the figures): the pages read it back from the audit.
    """
    now = utcnow()
    from_status = current_status(campaign_id)
    if not set_status(campaign_id, ACTIVE_STATUSES, PAUSED):
        return False
    queue_id = hold_queue(campaign_id, Reason.BOUNCE_RATE, now)
    details = trip.details()
    record_campaign_event(EventType.CAMPAIGN_PAUSED, campaign_id, reason=str(Reason.BOUNCE_RATE), **details)
    record_audit(None, BOUNCE_RATE_AUDIT_ACTION, campaign_id=campaign_id, from_status=from_status, to_status=PAUSED,
                 details=details)
    after_commit(lambda: _announce_bounce_rate_pause(campaign_id, queue_id, details))
    return True


def _announce_bounce_rate_pause(campaign_id: int, queue_id: int | None, details: dict) -> None:
    """After the pause's commit: running slices stop before their next message, no continuation."""
    announce_send_stop(get_redis(), campaign_id)
    safe_cancel_continuation(campaign_id)
    count(PAUSES, Reason.BOUNCE_RATE.value)
    logger.bind(campaign_id=campaign_id, queue_id=queue_id, defer_reason=Reason.BOUNCE_RATE.value, **details).log(
        Reason.BOUNCE_RATE.info.log_level, "Campaign paused (bounce rate too high)"
    )


def bounce_rate_trips(campaign_ids: list[int]) -> dict[int, BounceRateTrip]:
    """The trip of each campaign's latest `bounce_rate` pause (audit log), by campaign id; read only."""
    if not campaign_ids:
        return {}
    rows = db.session.execute(
        select(AuditEvent.campaign_id, AuditEvent.details)
        .where(AuditEvent.action == BOUNCE_RATE_AUDIT_ACTION, AuditEvent.campaign_id.in_(campaign_ids))
        .order_by(AuditEvent.id)
    ).all()
    trips = {row.campaign_id: BounceRateTrip.from_details(row.details) for row in rows}  # the latest wins
    return {campaign_id: trip for campaign_id, trip in trips.items() if trip is not None}


# Replays are refused for at least this long; a signature older than the freshness window is
# refused as stale anyway.
REPLAY_MEMORY_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True)
class WebhookDelivery:
    """What receiving one verified webhook delivery did: its claim, and the outcomes when it was applied now."""

    claim: DeliveryClaim
    outcomes: list[BounceOutcome]


def apply_webhook_delivery(provider: str, delivery_id: str, fingerprint: str,
                           reports: list[BounceReport]) -> WebhookDelivery:
    """Apply a verified webhook delivery once (see `limits.replay`): a delivery seen before is not
    applied again, whether it is an identical redelivery or another body under the same id.

    Raises RedisError when the replay store is unreachable (the caller refuses; the provider retries).
    """
    redis = get_redis()
    claim = claim_delivery(redis, provider, delivery_id, fingerprint, REPLAY_MEMORY_SECONDS)
    if claim is not DeliveryClaim.FIRST:
        return WebhookDelivery(claim, [])
    try:
        outcomes = record_bounces(reports)
    except BaseException:  # each report's transaction rolled back: the provider's retry applies it
        forget_delivery(redis, provider, delivery_id)
        raise
    # Should this fail (Redis gone after the commit), the claim is taken over after a minute and
    # the retry finds every report already recorded: nothing is applied twice.
    mark_delivery_applied(redis, provider, delivery_id, fingerprint, REPLAY_MEMORY_SECONDS)
    return WebhookDelivery(claim, outcomes)
