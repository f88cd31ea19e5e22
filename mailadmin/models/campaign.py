"""The campaign aggregate: Campaign, its Recipients and its CampaignQueue (send-loop state).

`Campaign.status` is the one source of truth for the lifecycle; `CampaignQueue` holds
what the send loop needs (defer/pause reason, deferred_until, the breaker counter, the
current job id; a scheduled continuation's id is always `continuation_job_id(campaign_id)`).
Counters on Campaign are kept up to date by the services so that lists never COUNT(*)
recipients per row.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from mailadmin.extensions import db
from mailadmin.models.types import UTCDateTime, utcnow

# A campaign's counters by outcome (`<name>_count` columns); bounced and complained stay counted in sent.
OUTCOME_COUNTS = ("sent", "failed", "skipped", "unknown", "bounced", "complained")


class CampaignStatus(StrEnum):
    """A campaign's lifecycle state (SPEC "Campaign lifecycle"), as stored in `campaigns.status`."""

    DRAFT = "draft"
    QUEUED = "queued"
    SENDING = "sending"
    DEFERRED = "deferred"
    PAUSED = "paused"
    FINISHED = "finished"
    CANCELLED = "cancelled"


class RecipientStatus(StrEnum):
    """A recipient's state (SPEC "Recipients"), as stored in `recipients.status`."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"
    UNKNOWN = "unknown"  # claimed by a job that died: the SMTP outcome cannot be known
    # A `sent` recipient whose provider reported a hard bounce / a spam complaint later (SPEC "Bounces").
    BOUNCED = "bounced"
    COMPLAINED = "complained"


# Short names of the members, used across the pages, jobs and tests (the same objects).
DRAFT, QUEUED, SENDING, DEFERRED, PAUSED, FINISHED, CANCELLED = CampaignStatus
CAMPAIGN_STATUSES = tuple(CampaignStatus)
# States in which the send loop may work on a campaign.
ACTIVE_STATUSES = (QUEUED, SENDING, DEFERRED)
FINAL_STATUSES = (FINISHED, CANCELLED)

R_PENDING, R_SENDING, R_SENT, R_FAILED, R_SKIPPED, R_UNKNOWN, R_BOUNCED, R_COMPLAINED = RecipientStatus
RECIPIENT_STATUSES = tuple(RecipientStatus)


class Campaign(db.Model):
    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    subject: Mapped[str] = mapped_column(String(998))
    body_text: Mapped[str] = mapped_column(Text, default="")
    body_html: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=DRAFT, index=True)
    # Stored although derivable from failed_count: lists filter and sort on it without recomputing.
    finished_with_errors: Mapped[bool] = mapped_column(Boolean, default=False)
    scheduled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    recipients_total: Mapped[int] = mapped_column(Integer, default=0)
    sent_count: Mapped[int] = mapped_column(Integer, default=0)
    failed_count: Mapped[int] = mapped_column(Integer, default=0)
    skipped_count: Mapped[int] = mapped_column(Integer, default=0)
    unknown_count: Mapped[int] = mapped_column(Integer, default=0)
    # Reported after sending (webhooks, bounce mailbox); these stay counted in sent_count too.
    bounced_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    complained_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    owner = relationship("User", lazy="joined")
    queue: Mapped[CampaignQueue | None] = relationship(back_populates="campaign", uselist=False, lazy="joined")

    @property
    def done_count(self) -> int:
        return self.sent_count + self.failed_count + self.skipped_count + self.unknown_count

    @property
    def outcome_counts(self) -> dict[str, int]:
        """The recipients by outcome so far, by the name the API and the progress JSON give each."""
        return {name: getattr(self, f"{name}_count") for name in OUTCOME_COUNTS}

    @property
    def progress_percent(self) -> int:
        if not self.recipients_total:
            return 100 if self.status == FINISHED else 0
        return min(100, round(100 * self.done_count / self.recipients_total))

    def __repr__(self) -> str:
        return f"<Campaign {self.id} {self.status}>"


class Recipient(db.Model):
    __tablename__ = "recipients"
    __table_args__ = (
        UniqueConstraint("campaign_id", "email"),
        # The send loop's claim query: the next pending recipients of one campaign, by id.
        Index("ix_recipients_claim", "campaign_id", "status", "id"),
        # Sends-per-hour chart and "last errors" on the campaign page.
        Index("ix_recipients_campaign_sent_at", "campaign_id", "sent_at"),
        # A bounce report that names only the address finds its latest recipient.
        Index("ix_recipients_email", "email"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str | None] = mapped_column(String(200))
    fields: Mapped[dict | None] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default=R_PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(500))
    smtp_code: Mapped[int | None] = mapped_column(Integer)
    smtp_message_id: Mapped[str | None] = mapped_column(String(255))
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Soft bounces (mailbox full, greylisting...) reported for this recipient after sending.
    soft_bounce_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    # Which import of a draft added this recipient (1, 2, ...), so that the last import can be undone.
    import_batch: Mapped[int | None] = mapped_column(Integer)
    # The recipient's place in its campaign (1, 2, ...), kept gap-free while it is a draft: the "#"
    # the pages show, read from the row instead of counted (a count per row is a scan per row).
    position: Mapped[int | None] = mapped_column(Integer)

    def merge_fields(self) -> dict:
        """The values a template may use: email, name and the import's extra columns."""
        values = dict(self.fields or {})
        values["email"] = self.email
        values["name"] = self.name or ""
        return values


class CampaignQueue(db.Model):
    """The send-loop state of a started campaign (one row per campaign)."""

    __tablename__ = "campaign_queue"

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"), unique=True)
    defer_reason: Mapped[str | None] = mapped_column(String(32))
    deferred_until: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    consecutive_transient_errors: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    current_job_id: Mapped[str | None] = mapped_column(String(64))
    last_error: Mapped[str | None] = mapped_column(String(500))
    breaker_tripped_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The pause the campaign is in, if any: who (NULL: the product itself, or nobody known), when,
    # and an optional detail the pages show with the reason. Written by every pause, cleared when
    # the campaign goes on (services.transitions.PauseNote).
    paused_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    pause_detail: Mapped[str | None] = mapped_column(String(300))

    campaign: Mapped[Campaign] = relationship(back_populates="queue")
    paused_by = relationship("User", lazy="joined")
