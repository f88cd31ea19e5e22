"""The `data` of each event type, and the calls the services make to record them.

Ids are the plain integer primary keys the API uses (campaigns, recipients, contacts, lists); person
events carry the address too (the receiver is our own system, not a log).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy import select

from mailadmin.extensions import db
from mailadmin.models.audience import Contact
from mailadmin.models.campaign import Recipient, RecipientStatus
from mailadmin.models.events import EventType
from mailadmin.services.events.recording import endpoints_wanting, record_event

__all__ = ["EventType", "record_campaign_event", "record_contact_event", "record_recipient_event",
           "record_recipients_failed"]


def record_campaign_event(event_type: EventType, campaign_id: int, **details) -> None:
    """A campaign started, paused (`reason`), resumed, finished or was cancelled — in the caller's transaction."""
    record_event(event_type, {"campaign_id": campaign_id, **details}, campaign_id=campaign_id)


def _contact_id(email: str) -> int | None:
    return db.session.scalar(select(Contact.id).where(Contact.email == email.lower()))


def record_recipient_event(event_type: EventType, *, campaign_id: int, recipient_id: int, email: str,
                           source: str | None) -> None:
    """A recipient bounced or complained — in the caller's transaction."""
    record_event(event_type, lambda: {
        "campaign_id": campaign_id, "recipient_id": recipient_id, "contact_id": _contact_id(email),
        "email": email, "source": source,
    })


def record_recipients_failed(campaign_id: int, recipient_ids: Sequence[int], at: datetime) -> None:
    """The recipients of a send batch that failed for good — those whose row this batch changed (status
    `failed`, updated at `at`: a claim lost meanwhile is not reported) — in the caller's transaction."""
    targets = endpoints_wanting(EventType.RECIPIENT_FAILED) if recipient_ids else []
    if not targets:
        return
    rows = db.session.execute(select(Recipient.id, Recipient.email, Recipient.smtp_code, Recipient.last_error).where(
        Recipient.id.in_(recipient_ids), Recipient.status == RecipientStatus.FAILED, Recipient.updated_at == at))
    for row in rows:
        record_event(EventType.RECIPIENT_FAILED, {
            "campaign_id": campaign_id, "recipient_id": row.id, "contact_id": _contact_id(row.email),
            "email": row.email, "smtp_code": row.smtp_code, "error": (row.last_error or "")[:200] or None,
        }, endpoint_ids=targets)


def record_contact_event(event_type: EventType, *, email: str | Callable[[], str], contact_id: int | None = None,
                         list_id: int | None = None, campaign_id: int | None = None, source: str | None = None) -> None:
    """A contact subscribed to a list, or unsubscribed from one (`list_id`) or from everything
    (`list_id` None: the address is suppressed) — in the caller's transaction. `email` may be a function
    (called only when an endpoint wants the event)."""
    def data() -> dict:
        address = email() if callable(email) else email
        return {"contact_id": contact_id if contact_id is not None else _contact_id(address), "email": address,
                "list_id": list_id, "scope": "list" if list_id is not None else "all", "campaign_id": campaign_id,
                "source": source}

    record_event(event_type, data)
