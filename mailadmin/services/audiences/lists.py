"""Lists: create, edit, delete; their counts and growth; their members, paged and searched; a member
added, removed or moved to another status (each change through `set_membership_status`, so it is in
the membership's history). Who may do what is `services.audiences.access`.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask_babel import gettext
from sqlalchemy import String, cast, delete, func, or_, select, true

from mailadmin.extensions import db
from mailadmin.models import Contact, MailingList, User
from mailadmin.models.audience import ChangeSource, ListMembership, MembershipStatus, OptIn
from mailadmin.models.suppression import Suppression
from mailadmin.models.types import utcnow
from mailadmin.services.audiences import list_counts
from mailadmin.services.audiences.access import ListAccess, get_list_for, visible_lists
from mailadmin.services.audiences.bounds import DESCRIPTION_MAX, MEMBERS_PER_PAGE, NAME_MAX, SEARCH_MAX
from mailadmin.services.audiences.memberships import (
    AudienceError,
    normalise_contact_email,
    required_text,
    set_membership_status,
    upsert_contact,
)
from mailadmin.services.audit import record_audit
from mailadmin.services.errors import ErrorKind
from mailadmin.services.transaction import in_transaction


@dataclass(frozen=True)
class ListSummary:
    """A list on the lists page: its members by status and how many joined in the last GROWTH_DAYS."""

    mailing_list: MailingList
    subscribed: int
    unconfirmed: int
    unsubscribed: int
    added_recently: int

    @property
    def total(self) -> int:
        return self.subscribed + self.unconfirmed + self.unsubscribed


def _clean_fields(name: str, description: str, opt_in: str) -> tuple[str, str, str]:
    name = required_text(name, NAME_MAX, gettext("A list needs a name."),
                         gettext("The name is longer than %(max)s characters.", max=NAME_MAX))
    description = (description or "").strip()
    if len(description) > DESCRIPTION_MAX:
        raise AudienceError(gettext("The description is longer than %(max)s characters.", max=DESCRIPTION_MAX))
    if opt_in not in (OptIn.SINGLE, OptIn.DOUBLE):
        raise AudienceError(gettext("Opt-in is single or double."))
    return name, description, opt_in


@in_transaction
def create_list(user: User, name: str, description: str = "", opt_in: str = OptIn.SINGLE,
                shared: bool = False) -> MailingList:
    """A new list owned by `user`; only an admin may share it with every manager."""
    name, description, opt_in = _clean_fields(name, description, opt_in)
    now = utcnow()
    mailing_list = MailingList(name=name, description=description, opt_in=opt_in, owner_id=user.id,
                               shared=bool(shared and user.is_admin), created_at=now, updated_at=now)
    db.session.add(mailing_list)
    db.session.flush()
    record_audit(user, "list_created", details={"list_id": mailing_list.id, "name": name})
    return mailing_list


@in_transaction
def update_list(user: User, list_id: int, name: str, description: str, opt_in: str,
                shared: bool | None = None) -> MailingList:
    """Rename / describe / change the opt-in of a list `user` may edit (an admin also the shared switch)."""
    mailing_list = get_list_for(user, list_id, ListAccess.EDIT)
    mailing_list.name, mailing_list.description, mailing_list.opt_in = _clean_fields(name, description, opt_in)
    if user.is_admin and shared is not None:
        mailing_list.shared = bool(shared)
    mailing_list.updated_at = utcnow()
    record_audit(user, "list_edited", details={"list_id": list_id})
    return mailing_list


@in_transaction
def delete_list(user: User, list_id: int) -> str:
    """Delete a list `user` may edit with its memberships (contacts stay); returns its name."""
    mailing_list = get_list_for(user, list_id, ListAccess.EDIT)
    name = mailing_list.name
    db.session.execute(delete(ListMembership).where(ListMembership.list_id == list_id))
    list_counts.forget_list(list_id)
    db.session.delete(mailing_list)
    record_audit(user, "list_deleted", details={"list_id": list_id, "name": name})
    return name


def list_summaries(user: User, list_id: int | None = None) -> list[ListSummary]:
    """The lists `user` may see (or only `list_id`), each with its counts by status and its growth: one
    query over the counts the writes keep (`list_counts`), never over the memberships."""
    counts = list_counts.counts_query(list_id).subquery()
    lists = visible_lists(user).subquery()
    rows = db.session.execute(
        select(MailingList, counts).join(lists, lists.c.id == MailingList.id)
        .outerjoin(counts, counts.c.list_id == MailingList.id)
        .where(MailingList.id == list_id if list_id is not None else true()).order_by(MailingList.name, MailingList.id)
    ).all()
    return [ListSummary(row[0], *(int(value or 0) for value in row[2:])) for row in rows]


def member_search_clause(search: str):
    """WHERE clause on Contact for a search: part of an address or name, or `key=value` on an attribute."""
    search = (search or "").strip()[:SEARCH_MAX]
    if not search:
        return None
    key, equals, value = search.partition("=")
    if equals and key.strip():
        return attribute_equals(key.strip(), value.strip())
    pattern = "%" + search.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return or_(Contact.email.like(pattern, escape="\\"), func.lower(Contact.name).like(pattern, escape="\\"))


def attribute_equals(key: str, value: str):
    """Contact attribute `key` equals `value` compared as text (a number or a date by its text)."""
    as_text = Contact.attributes[key].as_string()
    if db.engine.dialect.name == "sqlite":  # JSON_EXTRACT gives a number as a number: compare its text
        as_text = cast(as_text, String)
    return as_text == value


def members_query(list_id: int, search: str = "", status: str = ""):
    """SELECT (membership, contact) of a list's members, searched and filtered by status, newest first."""
    query = (select(ListMembership, Contact).join(Contact, Contact.id == ListMembership.contact_id)
             .where(ListMembership.list_id == list_id))
    if status in MembershipStatus.__members__.values():
        query = query.where(ListMembership.status == status)
    clause = member_search_clause(search)
    if clause is not None:
        query = query.where(clause)
    return query


def members_page(list_id: int, search: str = "", status: str = "", page: int = 1) -> tuple[list, bool]:
    """One page of members (newest first) and whether there is a next page."""
    page = max(1, min(page, 100_000))
    rows = db.session.execute(
        members_query(list_id, search, status).order_by(ListMembership.id.desc())
        .offset((page - 1) * MEMBERS_PER_PAGE).limit(MEMBERS_PER_PAGE + 1)
    ).all()
    return rows[:MEMBERS_PER_PAGE], len(rows) > MEMBERS_PER_PAGE


@in_transaction
def add_member(user: User, list_id: int, email: str, name: str = "",
               status: str = MembershipStatus.SUBSCRIBED, source: ChangeSource = ChangeSource.PAGE,
               ) -> tuple[Contact, bool]:
    """Put one address on a list `user` may edit; a suppressed address is refused as subscribed.
    Returns the contact and whether its membership changed."""
    get_list_for(user, list_id, ListAccess.EDIT)
    address = normalise_contact_email(email)
    if status == MembershipStatus.SUBSCRIBED and db.session.scalar(
            select(Suppression.id).where(Suppression.email == address)):
        raise AudienceError(gettext("%(address)s is on the suppression list: it cannot be subscribed.", address=address),
                            ErrorKind.CONFLICT)
    contact = upsert_contact(address, source, name=(name or "").strip()[:NAME_MAX] or None)
    result = set_membership_status(list_id, contact.id, MembershipStatus(_status(status)), source,
                                   actor_id=user.id)
    return contact, result.changed


def _status(status: str) -> str:
    if status not in MembershipStatus.__members__.values():
        raise AudienceError(f"Unknown membership status {status!r}.")
    return status


@in_transaction
def change_member_status(user: User, list_id: int, contact_id: int, status: str,
                         source: ChangeSource = ChangeSource.PAGE) -> bool:
    """Move a member of a list `user` may edit to `status` (one history row); False if it was already so."""
    get_list_for(user, list_id, ListAccess.EDIT)
    _member(list_id, contact_id)
    if status == MembershipStatus.SUBSCRIBED:
        email = db.session.scalar(select(Contact.email).where(Contact.id == contact_id))
        if db.session.scalar(select(Suppression.id).where(Suppression.email == email)):
            raise AudienceError(gettext("%(address)s is on the suppression list: it cannot be subscribed.", address=email),
                                ErrorKind.CONFLICT)
    return set_membership_status(list_id, contact_id, MembershipStatus(_status(status)), source,
                                 actor_id=user.id).changed


@in_transaction
def remove_member(user: User, list_id: int, contact_id: int, source: ChangeSource = ChangeSource.PAGE) -> None:
    """Take a contact off a list `user` may edit: its membership becomes unsubscribed (kept, with its
    history, so the removal is on record and a later import does not quietly put it back)."""
    get_list_for(user, list_id, ListAccess.EDIT)
    _member(list_id, contact_id)
    set_membership_status(list_id, contact_id, MembershipStatus.UNSUBSCRIBED, source, actor_id=user.id)


def _member(list_id: int, contact_id: int) -> ListMembership:
    membership = db.session.scalar(select(ListMembership).where(
        ListMembership.list_id == list_id, ListMembership.contact_id == contact_id))
    if membership is None:
        raise AudienceError(gettext("This contact is not on the list."), ErrorKind.NOT_FOUND)
    return membership


EXPORT_HEADER = ("email", "name", "status", "attributes", "joined_at", "status_changed_at")


def export_statement(list_id: int):
    """The members' export rows (keyed by membership id, for `read_in_batches`)."""
    return (select(ListMembership.id, Contact.email, Contact.name, ListMembership.status, Contact.attributes,
                   ListMembership.created_at, ListMembership.status_changed_at)
            .join(Contact, Contact.id == ListMembership.contact_id).where(ListMembership.list_id == list_id))
