"""Contacts as a manager sees them: a search, and one contact's page (attributes, memberships with
their history, campaigns sent, bounces, suppression). Reads only; who sees what is `access`.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from mailadmin.extensions import db, get_settings
from mailadmin.models import BounceEvent, Campaign, Contact, MailingList, Recipient, User
from mailadmin.models.audience import ListMembership, MembershipChange
from mailadmin.models.suppression import Suppression
from mailadmin.pii import erasure_hash
from mailadmin.services.audiences.access import get_contact_for, usable_lists_clause, visible_contacts
from mailadmin.services.audiences.bounds import BOUNCES_SHOWN, CONTACTS_PER_PAGE, SENT_SHOWN
from mailadmin.services.audiences.lists import member_search_clause


@dataclass(frozen=True)
class MembershipView:
    """One of a contact's memberships with its history (oldest change first)."""

    mailing_list: MailingList
    membership: ListMembership
    history: list[MembershipChange]


@dataclass(frozen=True)
class ContactPage:
    """Everything a contact's page shows."""

    contact: Contact
    memberships: list[MembershipView]
    campaigns: list[tuple[Campaign, Recipient]]
    bounces: list[BounceEvent]
    suppression: Suppression | None


def search_contacts(user: User, search: str = "", page: int = 1) -> tuple[list[Contact], bool]:
    """A page of the contacts `user` may see matching `search` (address, name, or attribute key=value)."""
    page = max(1, min(page, 100_000))
    query = visible_contacts(user)
    clause = member_search_clause(search)
    if clause is not None:
        query = query.where(clause)
    rows = db.session.scalars(query.order_by(Contact.id.desc()).offset((page - 1) * CONTACTS_PER_PAGE)
                              .limit(CONTACTS_PER_PAGE + 1)).all()
    return rows[:CONTACTS_PER_PAGE], len(rows) > CONTACTS_PER_PAGE


def contact_page(user: User, contact_id: int) -> ContactPage:
    """A contact `user` may see with its memberships (on lists they may use), campaigns, bounces, suppression."""
    contact = get_contact_for(user, contact_id)
    return ContactPage(contact, _memberships(user, contact), _campaigns(user, contact.email),
                       _bounces(contact.email), db.session.scalar(
                           select(Suppression).where(Suppression.email == contact.email)))


def _memberships(user: User, contact: Contact) -> list[MembershipView]:
    rows = db.session.execute(
        select(ListMembership, MailingList).join(MailingList, MailingList.id == ListMembership.list_id)
        .where(ListMembership.contact_id == contact.id, usable_lists_clause(user)).order_by(MailingList.name)
    ).all()
    ids = [membership.id for membership, _ in rows]
    history: dict[int, list[MembershipChange]] = {i: [] for i in ids}
    if ids:
        for change in db.session.scalars(select(MembershipChange).where(MembershipChange.membership_id.in_(ids))
                                          .order_by(MembershipChange.id)):
            history[change.membership_id].append(change)
    return [MembershipView(mailing_list, membership, history[membership.id]) for membership, mailing_list in rows]


def _campaigns(user: User, email: str) -> list[tuple[Campaign, Recipient]]:
    """The campaigns that had this address as a recipient (a manager: only their own)."""
    query = (select(Campaign, Recipient).join(Recipient, Recipient.campaign_id == Campaign.id)
             .where(Recipient.email == email))
    if not user.is_admin:
        query = query.where(Campaign.owner_id == user.id)
    return [tuple(row) for row in db.session.execute(query.order_by(Recipient.id.desc()).limit(SENT_SHOWN))]


def _bounces(email: str) -> list[BounceEvent]:
    """Bounce and complaint reports of the address: they hold only its erasure hash."""
    digest = erasure_hash(email, get_settings().log_hash_salt)
    return list(db.session.scalars(select(BounceEvent).where(BounceEvent.email_hash == digest)
                                   .order_by(BounceEvent.id.desc()).limit(BOUNCES_SHOWN)))
