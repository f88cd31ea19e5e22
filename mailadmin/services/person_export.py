"""A person's data: everything stored about one address, as one JSON document (SPEC "A person's data").

The contact (name, attributes, source, times), each list membership with its history, every
campaign the address was a recipient of (with its merge fields and outcome), the bounce and
complaint reports (stored by the address's salted hash only), the suppression entry (in clear,
or by its erasure marker) and the events out that carry the address. Read-only; the admin's export is audited without the address.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask_babel import gettext
from sqlalchemy import Text, cast, func, select

from mailadmin.extensions import db, get_settings
from mailadmin.models import (
    BounceEvent,
    Campaign,
    Contact,
    ListMembership,
    MailingList,
    MembershipChange,
    Recipient,
    Suppression,
    User,
)
from mailadmin.models.events import OutboxEvent
from mailadmin.models.types import utcnow
from mailadmin.pii import erasure_hash, erasure_marker
from mailadmin.services.audit import record_audit
from mailadmin.services.suppressions import SuppressionError, normalise_suppressed_email
from mailadmin.services.transaction import transaction

EXPORT_FORMAT = "mailadmin.person/1"


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _contact(address: str) -> tuple[Contact | None, dict | None]:
    contact = db.session.scalar(select(Contact).where(Contact.email == address))
    if contact is None:
        return None, None
    return contact, {"id": contact.id, "email": contact.email, "name": contact.name,
                     "attributes": contact.attributes or {}, "source": contact.source,
                     "created_at": _time(contact.created_at), "updated_at": _time(contact.updated_at)}


def _memberships(contact: Contact | None) -> list[dict]:
    if contact is None:
        return []
    rows = db.session.execute(
        select(ListMembership, MailingList.name).join(MailingList, MailingList.id == ListMembership.list_id)
        .where(ListMembership.contact_id == contact.id).order_by(ListMembership.id)
    ).all()
    out = []
    for membership, list_name in rows:
        history = db.session.scalars(select(MembershipChange).where(MembershipChange.membership_id == membership.id)
                                     .order_by(MembershipChange.id))
        out.append({
            "list_id": membership.list_id, "list_name": list_name, "status": membership.status,
            "source": membership.source, "created_at": _time(membership.created_at),
            "status_changed_at": _time(membership.status_changed_at),
            "history": [{"from_status": change.from_status, "to_status": change.to_status, "source": change.source,
                         "by_user_id": change.actor_id, "at": _time(change.created_at)} for change in history],
        })
    return out


def _campaigns(address: str) -> list[dict]:
    rows = db.session.execute(
        select(Recipient, Campaign.name).join(Campaign, Campaign.id == Recipient.campaign_id)
        .where(Recipient.email == address).order_by(Recipient.campaign_id)
    ).all()
    return [{"campaign_id": recipient.campaign_id, "campaign_name": name, "status": recipient.status,
             "name": recipient.name, "merge_fields": recipient.fields or {}, "sent_at": _time(recipient.sent_at),
             "message_id": recipient.smtp_message_id, "last_error": recipient.last_error}
            for recipient, name in rows]


def _bounces(address: str) -> list[dict]:
    digest = erasure_hash(address, get_settings().log_hash_salt)
    events = db.session.scalars(select(BounceEvent).where(BounceEvent.email_hash == digest).order_by(BounceEvent.id))
    return [{"kind": event.kind, "source": event.source, "campaign_id": event.campaign_id,
             "status_code": event.status_code, "at": _time(event.created_at)} for event in events]


def _suppression(address: str) -> list[dict]:
    stored = (address, erasure_marker(address, get_settings().log_hash_salt))
    entries = db.session.scalars(select(Suppression).where(Suppression.email.in_(stored)))
    return [{"stored_as": "address" if entry.email == address else "hash", "reason": entry.reason,
             "source": entry.source, "campaign_id": entry.campaign_id, "note": entry.note,
             "at": _time(entry.created_at)} for entry in entries]


def _events_out(address: str) -> list[dict]:
    """The events sent (or to be sent) to other systems that carry the address: type, id, time, data."""
    events = db.session.scalars(select(OutboxEvent).where(
        func.lower(cast(OutboxEvent.payload, Text)).contains(address, autoescape=True)).order_by(OutboxEvent.id))
    return [{"type": event.type, "id": event.public_id, "at": _time(event.created_at),
             "data": event.payload.get("data")} for event in events]


def export_person(email: str, actor: User) -> dict[str, Any]:
    """Everything stored about `email` (see the module docstring); the export is audited without the address."""
    address = normalise_suppressed_email(email or "")
    if "@" not in address or len(address) > 320:
        raise SuppressionError(gettext("Enter the one address to export."))
    contact, contact_data = _contact(address)
    document = {
        "format": EXPORT_FORMAT, "address": address, "exported_at": _time(utcnow()),
        "contact": contact_data, "memberships": _memberships(contact), "campaigns": _campaigns(address),
        "bounces": _bounces(address), "suppression": _suppression(address), "events_out": _events_out(address),
    }
    with transaction():
        record_audit(actor, "person_exported", details={
            "email_hash": erasure_hash(address, get_settings().log_hash_salt),
            "memberships": len(document["memberships"]), "campaigns": len(document["campaigns"])})
    return document
