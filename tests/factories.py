"""Test data, the one place tests and benchmarks (bench/) create it: users, draft campaigns with N
recipients, recipients' addresses; and reading a campaign back fresh from the database.

Every function works inside an app context on the app's `db.session`.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence

from sqlalchemy import func, insert, select

from mailadmin.extensions import db
from mailadmin.models import (
    Campaign,
    CampaignQueue,
    CampaignTarget,
    Contact,
    ListMembership,
    MailingList,
    MembershipChange,
    Recipient,
    Suppression,
    User,
)
from mailadmin.models.campaign import DRAFT, R_PENDING, R_SENT, SENDING
from mailadmin.models.types import utcnow

PASSWORD = "correct horse battery"
ADMIN_EMAIL = "admin@example.com"
MANAGER_EMAIL = "manager@example.com"
OTHER_MANAGER_EMAIL = "other.manager@example.com"
OWNER_EMAIL = "owner@example.com"

DEFAULT_SUBJECT = "Hello {{ name }}"
DEFAULT_TEXT = "Hi {{ name }},\n\nthis is campaign mail for {{ email }}.\n"
_INSERT_CHUNK = 5000  # rows per INSERT: large campaigns (the benchmarks') stay within driver limits


def create_user(email: str = MANAGER_EMAIL, role: str = "manager", password: str = PASSWORD) -> User:
    """A user made through the users service, as an admin would."""
    from mailadmin.services.users import create_user as create

    return create(email, password, role)


def recipient_address(index: int, domain: str = "example.test") -> str:
    """The address of the index-th generated recipient."""
    return f"user{index:05d}@{domain}"


def numbered_addresses(count: int, domain: str = "example.com", start: int = 0) -> str:
    """`count` distinct CSV lines "userN@domain,User N" (for the import service and form)."""
    return "\n".join(f"user{n}@{domain},User {n}" for n in range(start, start + count))


def create_campaign(
    owner: User,
    recipients: int | Sequence[str],
    *,
    subject: str = DEFAULT_SUBJECT,
    body_text: str = DEFAULT_TEXT,
    body_html: str | None = None,
    name: str = "Engine test campaign",
    recipient_name: Callable[[int], str] = lambda index: f"Person {index}",
    fields: dict | None = None,
) -> Campaign:
    """A draft campaign with `recipients` pending recipients (a count of generated addresses, or the
    addresses themselves), bulk-inserted without the import service."""
    emails = [recipient_address(i) for i in range(recipients)] if isinstance(recipients, int) else list(recipients)
    campaign = Campaign(
        owner_id=owner.id, name=name, subject=subject, body_text=body_text, body_html=body_html, status=DRAFT
    )
    db.session.add(campaign)
    db.session.flush()
    now = utcnow()
    for start in range(0, len(emails), _INSERT_CHUNK):
        rows = [
            {"campaign_id": campaign.id, "email": email, "name": recipient_name(index), "fields": fields,
             "status": R_PENDING, "attempts": 0, "updated_at": now, "position": index + 1}
            for index, email in enumerate(emails[start:start + _INSERT_CHUNK], start)
        ]
        db.session.execute(insert(Recipient.__table__), rows)
    campaign.recipients_total = len(emails)
    db.session.commit()
    return campaign


def make_draft(
    owner: User,
    name: str = "Spring news",
    subject: str = "Hello {{ name }}",
    body_text: str = "Hi {{ name }},\nour spring news.\n",
    body_html: str | None = None,
    recipients: str | bytes | None = None,
) -> Campaign:
    """A draft made through the services a manager's pages use, optionally with recipients
    imported from `recipients` (CSV text)."""
    from mailadmin.services.drafts import create_campaign as create_draft
    from mailadmin.services.recipients import import_recipients

    campaign = create_draft(owner, name, subject, body_text, body_html)
    if recipients:
        import_recipients(campaign, recipients)
    return campaign


def fresh_campaign(campaign_id: int) -> Campaign:
    """The campaign reloaded from the database (another request or process changed it)."""
    db.session.commit()
    db.session.expire_all()
    return db.session.get(Campaign, campaign_id)


def reload(campaign: Campaign) -> Campaign:
    """The campaign as the database has it now."""
    return fresh_campaign(campaign.id)


def recipient_statuses(campaign_id: int) -> dict[str, int]:
    """{status: count} of a campaign's recipients, read fresh from the database."""
    db.session.commit()
    rows = db.session.execute(
        select(Recipient.status, func.count()).where(Recipient.campaign_id == campaign_id).group_by(Recipient.status)
    ).all()
    db.session.commit()
    return {status: count for status, count in rows}


def create_started_campaign(owner: User, recipients: int | Sequence[str], **kwargs) -> Campaign:
    """A campaign of `owner`'s with `recipients` (see `create_campaign`), started now (queued; nothing ran yet)."""
    from mailadmin.services.campaigns import start_campaign

    campaign = create_campaign(owner, recipients, **kwargs)
    start_campaign(campaign, owner, enforce_throttle=False)
    return fresh_campaign(campaign.id)


def sent_campaign(owner: User, addresses: Sequence[str], *, pending: Sequence[str] = (), status: str = SENDING) -> Campaign:
    """A started campaign whose `addresses` were sent (each with our Message-ID) and `pending` wait."""
    now = utcnow()
    campaign = Campaign(owner_id=owner.id, name="Autumn news", subject="News", body_text="Hi", status=status,
                        recipients_total=len(addresses) + len(pending), sent_count=len(addresses), started_at=now)
    db.session.add(campaign)
    db.session.flush()
    db.session.add(CampaignQueue(campaign_id=campaign.id, consecutive_transient_errors=0))
    for address in addresses:
        recipient = Recipient(campaign_id=campaign.id, email=address, status=R_SENT, attempts=1, sent_at=now)
        db.session.add(recipient)
        db.session.flush()
        recipient.smtp_message_id = our_message_id(campaign.id, recipient.id)
    for address in pending:
        db.session.add(Recipient(campaign_id=campaign.id, email=address, status=R_PENDING))
    db.session.commit()
    return campaign


def create_suppressions(addresses: Sequence[str], reason: str = "manual", source: str = "import") -> None:
    """`addresses` on the suppression list in this order (ids rising), bulk-inserted without the service."""
    now = utcnow()
    for start in range(0, len(addresses), _INSERT_CHUNK):
        rows = [{"email": address, "reason": reason, "source": source, "created_at": now}
                for address in addresses[start:start + _INSERT_CHUNK]]
        db.session.execute(insert(Suppression.__table__), rows)
    db.session.commit()


def our_message_id(campaign_id: int, recipient_id: int) -> str:
    return f"<campaign-{campaign_id}.recipient-{recipient_id}.{secrets.token_hex(6)}@mailadmin.test>"


def recipient_of(campaign: Campaign, address: str) -> Recipient:
    db.session.expire_all()
    return db.session.scalar(db.select(Recipient).where(Recipient.campaign_id == campaign.id,
                                                        Recipient.email == address))


# --- audiences: lists, members, a campaign's list targets -----------------------------------------


def create_list(owner: User, name: str = "Newsletter", *, opt_in: str = "single", published: bool = False,
                description: str = "") -> MailingList:
    """A list of `owner`'s; `published`: its public form answers at `/subscribe/<public_id>`."""
    mailing_list = MailingList(name=name, description=description, owner_id=owner.id, opt_in=opt_in,
                               shared=False, form_published=published,
                               public_id=secrets.token_urlsafe(16) if published else None)
    db.session.add(mailing_list)
    db.session.commit()
    return mailing_list


def add_member(mailing_list: MailingList, email: str, status: str = "subscribed", *, name: str = "") -> Contact:
    """`email` on `mailing_list` with `status` (the contact made when new), through the shared writes."""
    from mailadmin.models.audience import ChangeSource
    from mailadmin.services.audiences.memberships import set_membership_status, upsert_contact

    contact = upsert_contact(email, ChangeSource.IMPORT, name=name or None)
    set_membership_status(mailing_list.id, contact.id, status, ChangeSource.IMPORT)
    db.session.commit()
    return contact


def target_lists(campaign: Campaign, lists: Sequence[MailingList], *, exclude: Sequence[MailingList] = ()) -> None:
    """The campaign sends to `lists` (and leaves out `exclude`)."""
    for item in lists:
        db.session.add(CampaignTarget(campaign_id=campaign.id, list_id=item.id, exclude=False))
    for item in exclude:
        db.session.add(CampaignTarget(campaign_id=campaign.id, list_id=item.id, exclude=True))
    db.session.commit()


def membership_status(mailing_list: MailingList, contact: Contact) -> str | None:
    """The contact's status on the list as the database has it now (None: not a member)."""
    db.session.expire_all()
    return db.session.scalar(select(ListMembership.status).where(ListMembership.list_id == mailing_list.id,
                                                                 ListMembership.contact_id == contact.id))


def membership_history(mailing_list: MailingList, contact: Contact) -> list[tuple[str | None, str, str]]:
    """(from, to, source) of each change of the contact's membership of the list, oldest first."""
    db.session.expire_all()
    return [tuple(row) for row in db.session.execute(
        select(MembershipChange.from_status, MembershipChange.to_status, MembershipChange.source)
        .join(ListMembership, ListMembership.id == MembershipChange.membership_id)
        .where(ListMembership.list_id == mailing_list.id, ListMembership.contact_id == contact.id)
        .order_by(MembershipChange.id))]


def api_token(user: User, scopes: str = "read,write,send", *, name: str = "CRM", expires_in_days: int | None = None
              ) -> str:
    """A new API token of `user` with `scopes`, made through the service the account page uses: the secret."""
    from mailadmin.services.api_tokens import create_token

    return create_token(user, name, scopes, expires_in_days=expires_in_days).secret


def bearer(secret: str, **headers: str) -> dict[str, str]:
    """Request headers carrying an API token."""
    return {"Authorization": f"Bearer {secret}", **headers}
