"""The `data` of each event type, and the calls the services make to record them.

Ids are the plain integer primary keys the API uses (campaigns, recipients, contacts, lists); person
events carry the address too (the receiver is our own system, not a log).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select

from mailadmin.extensions import db
from mailadmin.models.audience import Contact
from mailadmin.models.events import EventType
from mailadmin.services.events.recording import record_event

__all__ = ["EventType", "record_campaign_event", "record_contact_event", "record_recipient_event"]


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
