"""The suppression list: addresses that must never be sent to, and the bounce reports behind it.

An erased person's address is stored as its erasure marker (`erased:` + the salted hash, see
`mailadmin.pii.erasure_marker`): the address stays suppressed without being kept in clear.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from mailadmin.extensions import db
from mailadmin.models.types import UTCDateTime, utcnow

REASON_UNSUBSCRIBED = "unsubscribed"
REASON_HARD_BOUNCE = "hard_bounce"
REASON_COMPLAINT = "complaint"
REASON_SOFT_BOUNCES = "soft_bounces"  # 3 soft bounces within 30 days
REASON_MANUAL = "manual"
SUPPRESSION_REASONS = (REASON_UNSUBSCRIBED, REASON_HARD_BOUNCE, REASON_COMPLAINT, REASON_SOFT_BOUNCES, REASON_MANUAL)

# Where a suppression or a bounce report came from.
SOURCE_SMTP = "smtp"  # a 5xx "no such user" during our own SMTP conversation
SOURCE_UNSUBSCRIBE = "unsubscribe"
SOURCE_ADMIN = "admin"
SOURCE_IMPORT = "import"
SOURCE_MAILBOX = "mailbox"
SOURCE_SES = "ses"
SOURCE_SENDGRID = "sendgrid"
SOURCE_POSTMARK = "postmark"
SOURCE_MAILGUN = "mailgun"
SUPPRESSION_SOURCES = (
    SOURCE_SMTP,
    SOURCE_UNSUBSCRIBE,
    SOURCE_ADMIN,
    SOURCE_IMPORT,
    SOURCE_MAILBOX,
    SOURCE_SES,
    SOURCE_SENDGRID,
    SOURCE_POSTMARK,
    SOURCE_MAILGUN,
)


class Suppression(db.Model):
    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    reason: Mapped[str] = mapped_column(String(32))
    source: Mapped[str | None] = mapped_column(String(32))
    # Why an admin added it (free text, shown on the suppression page).
    note: Mapped[str | None] = mapped_column(String(200))
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class BounceEvent(db.Model):
    """One bounce or complaint report, applied once (`event_key` is unique per report and address).

    Holds no address: `email_hash` (the erasure hash) groups soft bounces of one address.
    """

    __tablename__ = "bounce_events"
    __table_args__ = (Index("ix_bounce_events_email_hash_kind", "email_hash", "kind", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    event_key: Mapped[str] = mapped_column(String(255), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(32))
    email_hash: Mapped[str] = mapped_column(String(64))
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id", ondelete="SET NULL"), index=True)
    recipient_id: Mapped[int | None] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), ForeignKey("recipients.id", ondelete="SET NULL")
    )
    status_code: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
