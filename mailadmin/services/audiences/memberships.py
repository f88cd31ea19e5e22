"""A contact by its address, and a membership's status with its history: the shared writes of audiences.

Each function works in the caller's transaction (`with transaction():` in the service that calls
it): a page, an import, the API and the public pages all change contacts and memberships through
these, so every membership change has exactly one history row.
"""

from __future__ import annotations

from dataclasses import dataclass

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select

from mailadmin.extensions import db
from mailadmin.models.audience import ChangeSource, Contact, ListMembership, MembershipChange, MembershipStatus
from mailadmin.models.types import utcnow
from mailadmin.services.audiences import list_counts
from mailadmin.services.errors import ErrorKind, ServiceError
from mailadmin.services.events.payloads import EventType, record_contact_event
from mailadmin.services.recipients import EMAIL_MAX, send_path_refusal


class AudienceError(ServiceError):
    """A refused audience action; `.message` names what was wrong."""

    stored: str | None = None  # a refusal of an import's file, as the job keeps it (import_files.file_refusal)


def required_text(raw: str | None, maximum: int, missing: str, too_long: str) -> str:
    """`raw` stripped; AudienceError(`missing`) when empty, AudienceError(`too_long`) over `maximum` characters."""
    text = (raw or "").strip()
    if not text:
        raise AudienceError(missing)
    if len(text) > maximum:
        raise AudienceError(too_long)
    return text


def normalise_contact_email(raw: str) -> str:
    """The address as contacts store it (as at import: validated, lower-cased); AudienceError names why not."""
    raw = required_text(raw, EMAIL_MAX, "No email address given.",
                        f"The email address is longer than {EMAIL_MAX} characters.")
    try:
        email = validate_email(raw, check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise AudienceError(f"{raw[:80]}: {exc}") from None
    if refusal := send_path_refusal(email):
        raise AudienceError(f"{raw[:80]}: {refusal}")
    return email


def upsert_contact(email: str, source: ChangeSource, *, name: str | None = None,
                   attributes: dict | None = None, replace_attributes: bool = False) -> Contact:
    """The contact of a normalised `email`, created when new; `name`/`attributes` update it when given
    (merged into the stored attributes, or replacing them with `replace_attributes`). In the session."""
    contact = db.session.scalar(select(Contact).where(Contact.email == email))
    now = utcnow()
    if contact is None:
        contact = Contact(email=email, name=name or "", attributes=dict(attributes or {}), source=source,
                          created_at=now, updated_at=now)
        db.session.add(contact)
        db.session.flush()
        return contact
    changed = False
    if name is not None and name != contact.name:
        contact.name, changed = name, True
    if attributes is not None:
        merged = dict(attributes) if replace_attributes else {**(contact.attributes or {}), **attributes}
        if merged != contact.attributes:
            contact.attributes, changed = merged, True
    if changed:
        contact.source, contact.updated_at = source, now
    return contact


@dataclass(frozen=True)
class MembershipChangeResult:
    """What `set_membership_status` did: the membership, and its status before (None: it is new)."""

    membership: ListMembership
    previous: MembershipStatus | None

    @property
    def changed(self) -> bool:
        return self.previous != self.membership.status


def set_membership_status(list_id: int, contact_id: int, status: MembershipStatus, source: ChangeSource,
                          actor_id: int | None = None) -> MembershipChangeResult:
    """Put the contact on the list with `status` (creating the membership when new); a change writes one
    history row, the same status again writes nothing (confirming twice is harmless). In the session."""
    if status not in MembershipStatus.__members__.values():
        raise AudienceError(f"Unknown membership status {status!r}.", ErrorKind.INVALID)
    membership = db.session.scalar(
        select(ListMembership).where(ListMembership.list_id == list_id, ListMembership.contact_id == contact_id)
    )
    now = utcnow()
    previous = None if membership is None else MembershipStatus(membership.status)
    if membership is None:
        membership = ListMembership(list_id=list_id, contact_id=contact_id, status=status, source=source,
                                    created_at=now, status_changed_at=now)
        db.session.add(membership)
        db.session.flush()
    elif previous == status:
        return MembershipChangeResult(membership, previous)
    else:
        membership.status, membership.source, membership.status_changed_at = status, source, now
    db.session.add(MembershipChange(membership_id=membership.id, from_status=previous, to_status=status,
                                    source=source, actor_id=actor_id, created_at=now))
    list_counts.status_change(list_id, previous, status)
    _record_membership_event(membership, status, source)
    return MembershipChangeResult(membership, previous)


def _record_membership_event(membership: ListMembership, status: MembershipStatus, source: ChangeSource) -> None:
    """Events out: a contact now subscribed to the list, or unsubscribed from it (unconfirmed is neither)."""
    event_type = {MembershipStatus.SUBSCRIBED: EventType.CONTACT_SUBSCRIBED,
                  MembershipStatus.UNSUBSCRIBED: EventType.CONTACT_UNSUBSCRIBED}.get(status)
    if event_type is not None:
        record_contact_event(event_type, email=lambda: db.session.get(Contact, membership.contact_id).email,
                             contact_id=membership.contact_id, list_id=membership.list_id, source=str(source))
