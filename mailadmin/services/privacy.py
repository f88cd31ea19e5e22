"""Erasing a person: every stored copy of an address is replaced by its salted hash and a marker.

Recipients of every campaign (address, name, merge fields and last error), the suppression list
and the audit details all lose the address; the contact (name, attributes) is deleted with its
list memberships and their history (nothing of an audience needs to outlive the person, and a
membership without its contact means nothing); the address stays suppressed by its hash
(`services.suppressions` matches the marker), so an erased person never gets mail again. Bounce
reports only ever stored the hash; events out (`outbox_events`) get the marker too. The erasure is audited with the address's salted hash only.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask_babel import gettext
from loguru import logger
from sqlalchemy import Text, cast, delete, func, select, update

from mailadmin.extensions import db, get_settings
from mailadmin.models import AuditEvent, Contact, ListMembership, MembershipChange, Recipient, Suppression, User
from mailadmin.models.events import OutboxEvent
from mailadmin.models.suppression import REASON_MANUAL, SOURCE_ADMIN
from mailadmin.models.types import utcnow
from mailadmin.pii import erasure_hash, erasure_marker
from mailadmin.services.audiences import list_counts
from mailadmin.services.audit import record_audit
from mailadmin.services.suppressions import SuppressionError, normalise_suppressed_email
from mailadmin.services.transaction import transaction

ERASED_NAME = "(erased)"


@dataclass(frozen=True)
class ErasureReport:
    """How many stored copies one erasure replaced."""

    recipients: int
    suppressions: int
    audit_events: int
    contacts: int = 0
    memberships: int = 0


def _replace_in(value: object, address: str, marker: str) -> object:
    """`value` (JSON: dicts, lists, strings) with every occurrence of `address` replaced by `marker`."""
    if isinstance(value, str):
        lowered = value.lower()
        if address not in lowered:
            return value
        out, start = [], 0
        while (found := lowered.find(address, start)) != -1:
            out += [value[start:found], marker]
            start = found + len(address)
        return "".join(out + [value[start:]])
    if isinstance(value, list):
        return [_replace_in(item, address, marker) for item in value]
    if isinstance(value, dict):
        return {key: _replace_in(item, address, marker) for key, item in value.items()}
    return value


def _erase_in_json(model: type, attribute: str, address: str, marker: str) -> int:
    """The marker instead of the address in one JSON column of every row that holds it (audit details,
    events out payloads — sent or still to be sent); returns how many rows changed."""
    column = getattr(model, attribute)
    rows = db.session.scalars(
        select(model).where(func.lower(cast(column, Text)).contains(address, autoescape=True))
    ).all()
    for row in rows:
        setattr(row, attribute, _replace_in(getattr(row, attribute), address, marker))
    return len(rows)


def _erase_suppression(address: str, marker: str) -> int:
    has_marker = db.session.scalar(select(Suppression.id).where(Suppression.email == marker)) is not None
    if has_marker:
        return db.session.execute(delete(Suppression).where(Suppression.email == address)).rowcount
    changed = db.session.execute(
        update(Suppression).where(Suppression.email == address).values(email=marker, note=None)
    ).rowcount
    if not changed:
        db.session.add(Suppression(email=marker, reason=REASON_MANUAL, source=SOURCE_ADMIN, note="erased",
                                   created_at=utcnow()))
    return changed


def _erase_contact(address: str) -> tuple[int, int]:
    """Delete the address's contact, its memberships and their history; (contacts, memberships) deleted.

    Explicit deletes, child rows first: the foreign keys cascade too, but the history must go whatever
    the database's foreign-key enforcement."""
    contact_ids = select(Contact.id).where(Contact.email == address).scalar_subquery()
    membership_ids = select(ListMembership.id).where(ListMembership.contact_id.in_(
        select(Contact.id).where(Contact.email == address)))
    db.session.execute(delete(MembershipChange).where(MembershipChange.membership_id.in_(membership_ids)))
    list_counts.forget_memberships(ListMembership.contact_id == contact_ids)
    memberships = db.session.execute(delete(ListMembership).where(ListMembership.contact_id == contact_ids)).rowcount
    contacts = db.session.execute(delete(Contact).where(Contact.email == address)).rowcount
    return contacts, memberships


def erase_person(email: str, actor: User) -> ErasureReport:
    """Replace every stored copy of `email` by its erasure marker and delete its contact; it stays suppressed."""
    address = normalise_suppressed_email(email)
    if "@" not in address or len(address) > 320:
        raise SuppressionError(gettext("Enter the one address to erase."))
    salt = get_settings().log_hash_salt
    marker = erasure_marker(address, salt)
    with transaction():
        recipients = db.session.execute(
            update(Recipient.__table__)
            .where(Recipient.__table__.c.email == address)
            .values(email=marker, name=ERASED_NAME, fields=None, last_error=None, updated_at=utcnow())
        ).rowcount
        suppressions = _erase_suppression(address, marker)
        audit_events = _erase_in_json(AuditEvent, "details", address, marker)
        contacts, memberships = _erase_contact(address)
        _erase_in_json(OutboxEvent, "payload", address, marker)
        report = ErasureReport(recipients, suppressions, audit_events, contacts, memberships)
        record_audit(actor, "person_erased", details={
            "email_hash": erasure_hash(address, salt), "recipients": recipients, "suppressions": suppressions,
            "audit_events": audit_events, "contacts": contacts, "memberships": memberships})
    logger.bind(actor=actor.id, recipients=recipients, audit_events=audit_events, contacts=contacts,
                memberships=memberships).info("Person erased")
    return report
