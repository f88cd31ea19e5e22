"""Contacts upserted by a program (the API): one or up to 10,000 in one call, each row answered.

The same set-based merge as a CSV import (`import_loading`: staged, then a handful of statements,
never one per row), with the same rules: into a list the user may edit (an admin may upsert contacts
without a list), new members subscribed or unconfirmed (these get the double opt-in mail once the
call commits), an existing member keeps their status, attributes merged (`update`), replaced
(`replace`) or left alone (`add`). The whole call is one transaction, audited once.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import delete, func, select, text

from mailadmin.extensions import db
from mailadmin.models import User
from mailadmin.models.audience import (
    ChangeSource,
    Contact,
    ListMembership,
    MailingList,
    MembershipChange,
    MembershipStatus,
)
from mailadmin.models.types import utcnow
from mailadmin.services.audiences import import_loading, lists
from mailadmin.services.audiences.access import ListAccess, editable_lists_clause, get_contact_for, get_list_for
from mailadmin.services.audiences.import_files import AddressNormaliser, ContactRow
from mailadmin.services.audiences.memberships import AudienceError, normalise_contact_email, upsert_contact
from mailadmin.services.audiences.subscriptions import send_confirmations
from mailadmin.services.audit import record_audit
from mailadmin.services.transaction import transaction

MAX_ROWS = 10_000
MODES = ("update", "replace", "add")
NEW_MEMBER_STATUSES = (MembershipStatus.SUBSCRIBED, MembershipStatus.UNCONFIRMED)


class RowOutcome(StrEnum):
    CREATED = "created"
    UPDATED = "updated"  # an existing contact, its attributes merged or replaced as the mode says
    REJECTED = "rejected"


@dataclass(frozen=True)
class RowResult:
    """What one row became: its index in the call, the normalised address, the contact's id or why not."""

    row: int
    email: str | None
    outcome: RowOutcome
    contact_id: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class ContactInput:
    email: str
    name: str | None = None
    attributes: dict | None = None


def _checked_rows(contacts: list[ContactInput]) -> tuple[list[ContactRow], dict[int, RowResult]]:
    good, rejected = [], {}
    normalise = AddressNormaliser()  # the import's: each domain checked once
    for index, contact in enumerate(contacts):
        try:
            email = normalise(contact.email)
        except AudienceError as error:
            rejected[index] = RowResult(index, None, RowOutcome.REJECTED, error=error.message)
            continue
        good.append(ContactRow(index, email, contact.name or "", dict(contact.attributes or {})))
    return good, rejected


def upsert_contacts(user: User, contacts: list[ContactInput], *, list_id: int | None = None,
                    status: str = MembershipStatus.SUBSCRIBED, mode: str = "update") -> list[RowResult]:
    """Upsert `contacts` (into `list_id` when given) in one transaction; one result per row, in order."""
    if len(contacts) > MAX_ROWS:
        raise AudienceError(f"At most {MAX_ROWS:,} contacts per call.")
    if mode not in MODES:
        raise AudienceError(f"The mode is one of {', '.join(MODES)}.")
    if status not in NEW_MEMBER_STATUSES:
        raise AudienceError("New members are subscribed or unconfirmed.")
    if list_id is None and not user.is_admin:
        raise AudienceError("Name the list the contacts go into (a manager's contacts live on their lists).")
    if list_id is not None:
        get_list_for(user, list_id, ListAccess.EDIT)
    good, results = _checked_rows(contacts)
    now = utcnow()
    with transaction():
        import_loading.create_staging()
        import_loading.stage_rows(good)
        existing = set(db.session.scalars(text(
            "SELECT c.email FROM contacts c WHERE c.email IN (SELECT email FROM import_staging)")))
        counts = import_loading.merge_staging(list_id, mode, status, user.id, now, ChangeSource.API)
        ids = dict(db.session.execute(text(
            "SELECT c.email, c.id FROM contacts c WHERE c.email IN (SELECT email FROM import_last)")).all())
        if list_id is not None and status == MembershipStatus.UNCONFIRMED:
            _confirm_new_members(list_id, now)
        record_audit(user, "contacts_upserted", details={
            "list_id": list_id, "rows": len(contacts), "rejected": len(results), "added_to_list": counts.added})
    for row in good:
        outcome = RowOutcome.UPDATED if row.email in existing else RowOutcome.CREATED
        results[row.row] = RowResult(row.row, row.email, outcome, ids.get(row.email))
    return [results[index] for index in range(len(contacts))]


def _confirm_new_members(list_id: int, merged_at) -> None:
    """The members this call added unconfirmed get the double opt-in mail once it commits."""
    joined = db.session.scalars(select(ListMembership.contact_id).where(
        ListMembership.list_id == list_id, ListMembership.status == MembershipStatus.UNCONFIRMED,
        ListMembership.source == ChangeSource.API, ListMembership.created_at == merged_at)).all()
    send_confirmations(list_id, joined)


def update_contact(user: User, contact_id: int, *, name: str | None = None, attributes: dict | None = None,
                   replace_attributes: bool = False) -> Contact:
    """Change a contact `user` may see: its name, its attributes merged (or replaced); audited."""
    contact = get_contact_for(user, contact_id)
    with transaction():
        upsert_contact(contact.email, ChangeSource.API, name=name, attributes=attributes,
                       replace_attributes=replace_attributes)
        record_audit(user, "contact_updated", details={"contact_id": contact.id,
                                                       "attributes": sorted(attributes or {})})
    return contact


def delete_contact(user: User, contact_id: int) -> bool:
    """An admin deletes the contact (its memberships and their history with it); a manager takes it off
    the lists they may edit, and it is deleted only when that leaves it on no list. True: deleted."""
    contact = get_contact_for(user, contact_id)
    with transaction():
        mine = select(ListMembership.id).where(ListMembership.contact_id == contact.id)
        if not user.is_admin:
            mine = mine.where(ListMembership.list_id.in_(select(MailingList.id).where(editable_lists_clause(user))))
        ids = list(db.session.scalars(mine))
        db.session.execute(delete(MembershipChange).where(MembershipChange.membership_id.in_(ids)))
        db.session.execute(delete(ListMembership).where(ListMembership.id.in_(ids)))
        remaining = db.session.scalar(select(func.count()).select_from(ListMembership)
                                      .where(ListMembership.contact_id == contact.id))
        deleted = user.is_admin or remaining == 0
        if deleted:
            db.session.execute(delete(Contact).where(Contact.id == contact.id))
        record_audit(user, "contact_deleted" if deleted else "contact_removed_from_lists",
                     details={"contact_id": contact.id, "memberships": len(ids)})
    return deleted


MAX_MEMBER_ROWS = 1000
MEMBER_ACTIONS = ("add", "remove", "status")


def change_members(user: User, list_id: int, action: str, emails: list[str],
                   status: str = MembershipStatus.SUBSCRIBED) -> list[RowResult]:
    """Add addresses to a list `user` may edit (with `status`), remove them (unsubscribed, kept on record)
    or move them to `status` — the list page's actions, row by row in one transaction, audited once.
    A refused row (bad address, suppressed, not a member) is answered and the others go on."""
    if len(emails) > MAX_MEMBER_ROWS:
        raise AudienceError(f"At most {MAX_MEMBER_ROWS:,} members per call.")
    if action not in MEMBER_ACTIONS:
        raise AudienceError(f"The action is one of {', '.join(MEMBER_ACTIONS)}.")
    get_list_for(user, list_id, ListAccess.EDIT)
    results = []
    with transaction():
        for index, raw in enumerate(emails):
            results.append(_change_member(user, list_id, action, index, raw, status))
        record_audit(user, "list_members_changed", details={
            "list_id": list_id, "action": action, "rows": len(emails),
            "rejected": sum(1 for r in results if r.outcome == RowOutcome.REJECTED)})
    return results


def _change_member(user: User, list_id: int, action: str, index: int, raw: str, status: str) -> RowResult:
    try:
        email = normalise_contact_email(raw)
        if action == "add":
            contact, _ = lists.add_member(user, list_id, email, status=status, source=ChangeSource.API)
            return RowResult(index, email, RowOutcome.UPDATED, contact.id)
        contact_id = db.session.scalar(select(Contact.id).where(Contact.email == email))
        if contact_id is None:
            raise AudienceError("This contact is not on the list.")
        if action == "remove":
            lists.remove_member(user, list_id, contact_id, ChangeSource.API)
        else:
            lists.change_member_status(user, list_id, contact_id, status, ChangeSource.API)
        return RowResult(index, email, RowOutcome.UPDATED, contact_id)
    except AudienceError as error:
        return RowResult(index, None, RowOutcome.REJECTED, error=error.message)
