"""Who may do what with a list and a contact: the one access rule of audiences (SPEC "Roles").

- A list's owner may see, target and edit it; an admin may do all three with every list.
- A list an admin shared (`shared`) is visible and targetable for every manager, not editable.
- Any other list does not exist for the user: it answers "not found" (404), never "forbidden",
  so a manager cannot learn that it exists.
- A manager sees the contacts on the lists they may use (see or target); an admin sees every contact.

Pages, the import, segments, campaign targets and the API all ask here; none repeats the rule.
"""

from __future__ import annotations

from enum import StrEnum

from flask_babel import gettext
from sqlalchemy import ColumnElement, Select, exists, or_, select, true

from mailadmin.extensions import db
from mailadmin.models import Contact, MailingList, User
from mailadmin.models.audience import ListMembership
from mailadmin.services.audiences.memberships import AudienceError
from mailadmin.services.errors import ErrorKind

LIST_NOT_FOUND = "No such list."
CONTACT_NOT_FOUND = "No such contact."


class ListAccess(StrEnum):
    """What a user wants to do with a list."""

    SEE = "see"  # its page, counts and members
    TARGET = "target"  # send a campaign to it, use it in a segment or an exclusion
    EDIT = "edit"  # rename, delete, change members, import into it


def usable_lists_clause(user: User) -> ColumnElement[bool]:
    """WHERE clause on `MailingList` of the lists `user` may see and target (the same set)."""
    if user.is_admin:
        return true()
    return or_(MailingList.owner_id == user.id, MailingList.shared.is_(True))


def editable_lists_clause(user: User) -> ColumnElement[bool]:
    """WHERE clause on `MailingList` of the lists `user` may edit."""
    if user.is_admin:
        return true()
    return MailingList.owner_id == user.id


def visible_lists(user: User) -> Select:
    """SELECT of the lists `user` may see (and target), by name."""
    return select(MailingList).where(usable_lists_clause(user)).order_by(MailingList.name, MailingList.id)


def may(user: User, mailing_list: MailingList, access: ListAccess) -> bool:
    """Whether `user` may do `access` with `mailing_list`."""
    if user.is_admin or mailing_list.owner_id == user.id:
        return True
    return access is not ListAccess.EDIT and bool(mailing_list.shared)


def get_list_for(user: User, list_id: int, access: ListAccess = ListAccess.SEE) -> MailingList:
    """The list if `user` may do `access` with it. A list they may not even see is "not found"; a
    shared list they may see but not edit is refused as a conflict naming why."""
    mailing_list = db.session.get(MailingList, list_id)
    if mailing_list is None or not may(user, mailing_list, ListAccess.SEE):
        raise AudienceError(LIST_NOT_FOUND, ErrorKind.NOT_FOUND)
    if not may(user, mailing_list, access):
        raise AudienceError(gettext("This list is shared by an admin: you may send to it, not change it."),
                            ErrorKind.CONFLICT)
    return mailing_list


def visible_contacts_clause(user: User) -> ColumnElement[bool]:
    """WHERE clause on `Contact` of the contacts `user` may see: an admin all, a manager those on a
    list they may use (whatever the membership's status)."""
    if user.is_admin:
        return true()
    return exists(
        select(ListMembership.id)
        .join(MailingList, MailingList.id == ListMembership.list_id)
        .where(ListMembership.contact_id == Contact.id, usable_lists_clause(user))
    )


def visible_contacts(user: User) -> Select:
    """SELECT of the contacts `user` may see."""
    return select(Contact).where(visible_contacts_clause(user))


def get_contact_for(user: User, contact_id: int) -> Contact:
    """The contact if `user` may see it; "not found" otherwise (never "forbidden")."""
    contact = db.session.scalar(visible_contacts(user).where(Contact.id == contact_id))
    if contact is None:
        raise AudienceError(CONTACT_NOT_FOUND, ErrorKind.NOT_FOUND)
    return contact
