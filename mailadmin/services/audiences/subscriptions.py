"""A list's public subscription form and double opt-in: publish the form, take a sign-up, confirm it.

The form's answer never depends on whether the address is already known (SPEC: forms "never
reveal whether an address is already known"): `subscribe_from_form` returns nothing a page could
tell apart. A `double` list records the member `unconfirmed` and, once committed, queues the
confirmation mail (`queue.confirmations`: the send queue, the same hourly quota, at the head of its
waiting line); following the mail's signed link within 7 days makes the membership `subscribed`.
A sign-up never changes a known contact's name: a stranger typing someone's address must not
rewrite what is stored about them.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from flask_babel import gettext
from loguru import logger
from sqlalchemy import select

from mailadmin.extensions import db, get_settings
from mailadmin.i18n import DEFAULT_LANGUAGE
from mailadmin.mail.confirmation import ConfirmationRequest, make_confirmation_token, read_confirmation_token
from mailadmin.models import Contact, ListMembership, MailingList, User
from mailadmin.models.audience import ChangeSource, MembershipStatus, OptIn
from mailadmin.models.types import utcnow
from mailadmin.pii import get_pii_log_fields
from mailadmin.queue.confirmations import enqueue_confirmations
from mailadmin.services.audiences.bounds import NAME_MAX
from mailadmin.services.audiences.memberships import (
    AudienceError,
    normalise_contact_email,
    set_membership_status,
    upsert_contact,
)
from mailadmin.services.audit import record_audit
from mailadmin.services.errors import ErrorKind
from mailadmin.services.suppressions import suppressed_among
from mailadmin.services.transaction import after_commit, in_transaction, transaction


def published_form_list(public_id: str) -> MailingList | None:
    """The list whose published form has this public id; None when unknown or not published."""
    if not public_id or len(public_id) > 32:
        return None
    return db.session.scalar(
        select(MailingList).where(MailingList.public_id == public_id, MailingList.form_published.is_(True))
    )


@in_transaction
def set_form_published(list_id: int, published: bool, actor: User) -> MailingList:
    """Publish (or withdraw) the list's public form; its public id is made at the first publication and kept."""
    mailing_list = db.session.get(MailingList, list_id)
    if mailing_list is None:
        raise AudienceError(gettext("No such list."), ErrorKind.NOT_FOUND)
    if mailing_list.public_id is None:
        mailing_list.public_id = secrets.token_urlsafe(16)  # 22 characters, 128 random bits
    if mailing_list.form_published != published:
        mailing_list.form_published, mailing_list.updated_at = published, utcnow()
        record_audit(actor, "list_form_published" if published else "list_form_withdrawn",
                     details={"list_id": list_id})
    return mailing_list


def _queue_confirmations_after_commit(list_id: int, contact_ids: list[int], language: str = DEFAULT_LANGUAGE) -> None:
    after_commit(lambda: enqueue_confirmations(list_id, contact_ids, language=language))


@in_transaction
def subscribe_from_form(list_id: int, raw_email: str, name: str = "", language: str = DEFAULT_LANGUAGE) -> None:
    """A sign-up on the list's public form: `subscribed` on a single opt-in list, `unconfirmed` plus a
    confirmation mail on a double one. An address already subscribed stays as it is, and the caller
    learns nothing either way; AudienceError only for an address that is not one. The confirmation
    mail is written in `language` (the browser's on the form)."""
    email = normalise_contact_email(raw_email)
    mailing_list = db.session.get(MailingList, list_id)
    if mailing_list is None:
        raise AudienceError(gettext("No such list."), ErrorKind.NOT_FOUND)
    known = db.session.scalar(select(Contact).where(Contact.email == email))
    contact = known or upsert_contact(email, ChangeSource.FORM, name=(name or "").strip()[:NAME_MAX])
    membership = db.session.scalar(select(ListMembership).where(
        ListMembership.list_id == list_id, ListMembership.contact_id == contact.id))
    if membership is not None and membership.status == MembershipStatus.SUBSCRIBED:
        return
    if mailing_list.opt_in == OptIn.DOUBLE:
        set_membership_status(list_id, contact.id, MembershipStatus.UNCONFIRMED, ChangeSource.FORM)
        _queue_confirmations_after_commit(list_id, [contact.id], language)
    else:
        set_membership_status(list_id, contact.id, MembershipStatus.SUBSCRIBED, ChangeSource.FORM)
    logger.bind(list_id=list_id, contact_id=contact.id, opt_in=mailing_list.opt_in,
                **get_pii_log_fields(email, "INFO")).info("Subscription form signed")


def send_confirmations(list_id: int, contact_ids: Sequence[int]) -> int:
    """Queue the double opt-in mail for these members of `list_id` once the caller's transaction commits
    (an import of unconfirmed members calls this); members no longer unconfirmed by then get none."""
    ids = sorted({int(contact_id) for contact_id in contact_ids})
    if ids:
        with transaction():
            _queue_confirmations_after_commit(list_id, ids)
    return len(ids)


@dataclass(frozen=True)
class DueConfirmation:
    """One confirmation mail still owed: the member and what the message says."""

    contact_id: int
    request: ConfirmationRequest


def confirmation_url(list_id: int, contact_id: int) -> str:
    """The signed, expiring link that confirms one membership."""
    settings = get_settings()
    return f"{settings.public_url}/subscribe/confirm/{make_confirmation_token(settings.secret_key, list_id, contact_id)}"


def confirmations_due(list_id: int, contact_ids: Sequence[int], language: str = DEFAULT_LANGUAGE) -> list[DueConfirmation]:
    """The confirmation mails still owed among these members: unconfirmed, and not on the suppression
    list; each written in `language`."""
    mailing_list = db.session.get(MailingList, list_id)
    if mailing_list is None or not contact_ids:
        return []
    rows = db.session.execute(
        select(Contact.id, Contact.email, Contact.name)
        .join(ListMembership, ListMembership.contact_id == Contact.id)
        .where(ListMembership.list_id == list_id, ListMembership.contact_id.in_(list(contact_ids)),
               ListMembership.status == MembershipStatus.UNCONFIRMED)
        .order_by(Contact.id)
    ).all()
    suppressed = suppressed_among(email for _, email, _ in rows)
    return [
        DueConfirmation(contact_id, ConfirmationRequest(email, name or "", mailing_list.name,
                                                        confirmation_url(list_id, contact_id), language))
        for contact_id, email, name in rows if email.lower() not in suppressed
    ]


@dataclass(frozen=True)
class ConfirmationResult:
    """What following a confirmation link did: the list's name and the membership's status now."""

    list_name: str
    status: MembershipStatus
    changed: bool


@in_transaction
def confirm_subscription(token: str) -> ConfirmationResult:
    """Follow a confirmation link: `unconfirmed` becomes `subscribed` (source confirmation); again is
    harmless. Raises BadConfirmationToken / ExpiredConfirmationToken, AudienceError NOT_FOUND when the
    membership is gone (the list deleted, the person erased)."""
    list_id, contact_id = read_confirmation_token(get_settings().secret_key, token)
    row = db.session.execute(
        select(ListMembership, MailingList.name).join(MailingList, MailingList.id == ListMembership.list_id)
        .where(ListMembership.list_id == list_id, ListMembership.contact_id == contact_id)
    ).first()
    if row is None:
        raise AudienceError(gettext("This subscription no longer exists."), ErrorKind.NOT_FOUND)
    membership, list_name = row
    if membership.status != MembershipStatus.UNCONFIRMED:
        # Confirming twice is harmless; a member who unsubscribed since is not put back by an old link.
        return ConfirmationResult(list_name, MembershipStatus(membership.status), False)
    set_membership_status(list_id, contact_id, MembershipStatus.SUBSCRIBED, ChangeSource.CONFIRMATION)
    logger.bind(list_id=list_id, contact_id=contact_id).info("Subscription confirmed")
    return ConfirmationResult(list_name, MembershipStatus.SUBSCRIBED, True)


def read_confirmation(token: str) -> tuple[int, int]:
    """(list_id, contact_id) a confirmation link names; BadConfirmationToken / ExpiredConfirmationToken."""
    return read_confirmation_token(get_settings().secret_key, token)
