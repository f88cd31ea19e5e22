"""What a person may do about their own lists, with no login: the one-click unsubscribe of a list
campaign, "unsubscribe from everything", and the preference page's switches.

A list campaign (one with list targets) carries a link that unsubscribes from *that campaign's
lists*; every other campaign's link keeps today's meaning: the suppression list. A recipient on
none of the campaign's lists (they came in through a segment) is suppressed too: a one-click
unsubscribe must stop the mail it came with. The preference page shows only the lists the person
is or was a member of, and its switches touch only those. Every change is one history row
(`set_membership_status`, source unsubscribe_link / preferences).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from loguru import logger
from sqlalchemy import select

from mailadmin.extensions import db
from mailadmin.models import CampaignTarget, Contact, ListMembership, MailingList, Recipient
from mailadmin.models.audience import ChangeSource, MembershipStatus
from mailadmin.models.suppression import REASON_UNSUBSCRIBED, SOURCE_UNSUBSCRIBE
from mailadmin.pii import get_pii_log_fields
from mailadmin.services.audiences.memberships import set_membership_status
from mailadmin.services.suppressions import is_suppressed, suppress
from mailadmin.services.transaction import in_transaction


def contact_of(recipient: Recipient) -> Contact | None:
    """The contact behind a campaign recipient (same address), None for a one-off or erased address."""
    return db.session.scalar(select(Contact).where(Contact.email == recipient.email.strip().lower()))


def campaign_lists(campaign_id: int) -> list[MailingList]:
    """The lists a campaign was sent to (its list targets, exclusions left out), by name."""
    return list(db.session.scalars(
        select(MailingList).join(CampaignTarget, CampaignTarget.list_id == MailingList.id)
        .where(CampaignTarget.campaign_id == campaign_id, CampaignTarget.exclude.is_(False))
        .order_by(MailingList.name, MailingList.id)
    ))


def _memberships_on(contact_id: int, list_ids: Collection[int]) -> list[ListMembership]:
    return list(db.session.scalars(select(ListMembership).where(
        ListMembership.contact_id == contact_id, ListMembership.list_id.in_(list(list_ids)))))


@dataclass(frozen=True)
class UnsubscribeScope:
    """What a recipient's one-click link unsubscribes from: these lists, or (empty) everything."""

    contact: Contact | None
    lists: list[MailingList]

    @property
    def everything(self) -> bool:
        return not self.lists


def unsubscribe_scope(recipient: Recipient) -> UnsubscribeScope:
    """The lists of the recipient's campaign they are (or were) on; none: the link means the suppression list."""
    contact = contact_of(recipient)
    lists = campaign_lists(recipient.campaign_id) if contact is not None else []
    if lists:
        on = {membership.list_id for membership in _memberships_on(contact.id, [item.id for item in lists])}
        lists = [item for item in lists if item.id in on]
    return UnsubscribeScope(contact, lists)


@in_transaction
def unsubscribe_recipient(recipient: Recipient) -> UnsubscribeScope:
    """The one-click unsubscribe (RFC 8058): off the campaign's lists, or onto the suppression list; idempotent."""
    scope = unsubscribe_scope(recipient)
    if scope.everything:
        suppress(recipient.email, REASON_UNSUBSCRIBED, recipient.campaign_id, source=SOURCE_UNSUBSCRIBE)
        return scope
    for membership in _memberships_on(scope.contact.id, [item.id for item in scope.lists]):
        set_membership_status(membership.list_id, membership.contact_id, MembershipStatus.UNSUBSCRIBED,
                              ChangeSource.UNSUBSCRIBE_LINK)
    logger.bind(campaign_id=recipient.campaign_id, recipient_id=recipient.id, lists=[item.id for item in scope.lists],
                **get_pii_log_fields(recipient.email, "INFO")).info("Unsubscribed from lists")
    return scope


@in_transaction
def unsubscribe_from_everything(recipient: Recipient) -> bool:
    """Put the recipient's address on the suppression list; True when it was not there yet."""
    return suppress(recipient.email, REASON_UNSUBSCRIBED, recipient.campaign_id, source=SOURCE_UNSUBSCRIBE)


@dataclass(frozen=True)
class ListSwitch:
    """One switch of the preference page: a list the person is or was on, and whether it is on."""

    list_id: int
    name: str
    description: str
    on: bool
    unconfirmed: bool = False  # signed up, the confirmation link not followed: off until switched on


@dataclass(frozen=True)
class Preferences:
    """The preference page of one contact: their lists, and whether they are on the suppression list."""

    contact_id: int
    email: str
    switches: list[ListSwitch]
    suppressed: bool


def preferences_of(contact_id: int) -> Preferences | None:
    """The contact's lists with a switch each (only lists they are or were a member of); None when gone."""
    contact = db.session.get(Contact, contact_id)
    if contact is None:
        return None
    rows = db.session.execute(
        select(MailingList.id, MailingList.name, MailingList.description, ListMembership.status)
        .join(ListMembership, ListMembership.list_id == MailingList.id)
        .where(ListMembership.contact_id == contact_id).order_by(MailingList.name, MailingList.id)
    ).all()
    switches = [ListSwitch(list_id, name, description or "", status == MembershipStatus.SUBSCRIBED,
                           status == MembershipStatus.UNCONFIRMED) for list_id, name, description, status in rows]
    return Preferences(contact.id, contact.email, switches, is_suppressed(contact.email))


@in_transaction
def save_preferences(contact_id: int, wanted: Collection[int]) -> int:
    """Set each of the contact's memberships on or off as `wanted` says (lists they were never on are
    ignored; an unconfirmed one left off stays unconfirmed); returns how many changed, each with its history row (source preferences)."""
    changed = 0
    memberships = db.session.scalars(select(ListMembership).where(ListMembership.contact_id == contact_id)).all()
    for membership in memberships:
        on = membership.status == MembershipStatus.SUBSCRIBED
        want = membership.list_id in wanted
        if want and not on:
            # The page's link came in a message to this address: switching a list on needs no second confirmation.
            status = MembershipStatus.SUBSCRIBED
        elif on and not want:
            status = MembershipStatus.UNSUBSCRIBED
        else:
            continue
        set_membership_status(membership.list_id, contact_id, status, ChangeSource.PREFERENCES)
        changed += 1
    if changed:
        logger.bind(contact_id=contact_id, changed=changed).info("Preferences saved")
    return changed
