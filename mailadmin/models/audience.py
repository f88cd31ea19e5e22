"""Audiences that live between campaigns: contacts, lists with their memberships, and segments.

A contact is one row per address for the whole install (normalised as at import), with free JSON
attributes. A list is owned by one user; an admin may share it with every manager (they may then
target it and see its counts, not edit it). A membership carries its status and every change of it
(`membership_changes`: when, from what to what, and how). A segment is a saved filter over contacts
(`filter`: validated JSON, compiled to bound SQL by `services.audiences.segments`). A campaign's
targets name the lists and segments it sends to or excludes; at start they resolve once into the
campaign's recipients. An import's uploaded CSV and its rejected rows are kept as chunks of bytes
(`import_chunks`) where the web and the worker processes both reach them: the database.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from mailadmin.extensions import db
from mailadmin.models.types import UTCDateTime, utcnow

# JSONB on PostgreSQL (a GIN index, jsonb_path_ops: containment and jsonpath), JSON (JSON1) on SQLite.
AttributesJSON = JSON().with_variant(JSONB(), "postgresql")


class MembershipStatus(StrEnum):
    """Where a contact stands on one list."""

    SUBSCRIBED = "subscribed"
    UNCONFIRMED = "unconfirmed"  # double opt-in: the confirmation link was not followed yet
    UNSUBSCRIBED = "unsubscribed"


class OptIn(StrEnum):
    """How a list takes new members from its public form."""

    SINGLE = "single"
    DOUBLE = "double"  # a confirmation message with a signed, expiring link first


class ChangeSource(StrEnum):
    """How a contact or a membership changed (shown in its history)."""

    PAGE = "page"  # a manager in the browser
    IMPORT = "import"
    API = "api"
    FORM = "form"  # the list's public subscription form
    CONFIRMATION = "confirmation"  # the double opt-in link
    UNSUBSCRIBE_LINK = "unsubscribe_link"  # the one-click link of a campaign message
    PREFERENCES = "preferences"  # the signed preference page
    BOUNCE = "bounce"
    ADMIN = "admin"


class Contact(db.Model):
    __tablename__ = "contacts"
    __table_args__ = (
        # jsonb_path_ops (migration 0014): one entry per attribute, a third cheaper to keep up on an import.
        Index("ix_contacts_attributes", "attributes", postgresql_using="gin",
              postgresql_ops={"attributes": "jsonb_path_ops"}),
        Index("ix_contacts_created_at", "created_at"),
        Index("ix_contacts_updated_at", "updated_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    attributes: Mapped[dict] = mapped_column(AttributesJSON, default=dict)
    source: Mapped[str] = mapped_column(String(32))  # how it last changed (ChangeSource)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class MailingList(db.Model):
    __tablename__ = "lists"
    __table_args__ = (CheckConstraint("opt_in IN ('single', 'double')", name="ck_lists_opt_in"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    opt_in: Mapped[str] = mapped_column(String(8), default=OptIn.SINGLE)
    # Shared by an admin with every manager: they may target it and see its counts, not edit it.
    shared: Mapped[bool] = mapped_column(Boolean, default=False)
    # The public subscription form (`/subscribe/<public_id>`): answered only while published. The id is
    # random (not derived from the list id or the secret key), made at the first publication and kept,
    # so an embedded form keeps working across key rotations and unpublish/publish.
    form_published: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    public_id: Mapped[str | None] = mapped_column(String(32), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ListMembership(db.Model):
    __tablename__ = "list_memberships"
    __table_args__ = (
        UniqueConstraint("list_id", "contact_id", name="uq_list_memberships_list_contact"),
        Index("ix_list_memberships_list_status", "list_id", "status", "contact_id"),
        Index("ix_list_memberships_contact", "contact_id"),
        Index("ix_list_memberships_list_id", "list_id", "id"),  # a list's members paged newest first
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16))  # MembershipStatus
    source: Mapped[str] = mapped_column(String(32))  # how the status last changed (ChangeSource)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    status_changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class MembershipChange(db.Model):
    """One change of a membership's status: its history, shown on the contact's page and exported."""

    __tablename__ = "membership_changes"
    __table_args__ = (Index("ix_membership_changes_membership", "membership_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    membership_id: Mapped[int] = mapped_column(ForeignKey("list_memberships.id", ondelete="CASCADE"))
    from_status: Mapped[str | None] = mapped_column(String(16))  # None: the membership began
    to_status: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(32))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Segment(db.Model):
    __tablename__ = "segments"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    filter: Mapped[dict] = mapped_column(JSON)  # validated by services.audiences.segments before it is stored
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CampaignTarget(db.Model):
    """A list or a segment a campaign sends to (or, with `exclude`, leaves out)."""

    __tablename__ = "campaign_targets"
    __table_args__ = (
        CheckConstraint("(list_id IS NULL) <> (segment_id IS NULL)", name="ck_campaign_targets_one_kind"),
        Index("ix_campaign_targets_campaign", "campaign_id"),
        Index("ix_campaign_targets_list", "list_id"),
        Index("ix_campaign_targets_segment", "segment_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    list_id: Mapped[int | None] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"))
    segment_id: Mapped[int | None] = mapped_column(ForeignKey("segments.id", ondelete="CASCADE"))
    exclude: Mapped[bool] = mapped_column(Boolean, default=False)


class ImportChunk(db.Model):
    """One piece (up to `services.audiences.import_store.CHUNK_BYTES`) of an import's uploaded file
    (`kind` upload) or of its rejected rows (`kind` rejected), in order of `seq`."""

    __tablename__ = "import_chunks"
    __table_args__ = (Index("ix_import_chunks_created_at", "created_at"),)

    import_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    seq: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ListDailyCount(db.Model):
    """A list's member counts kept by the writes themselves (`services.audiences.list_counts`), so no page
    counts memberships: per list and UTC day, the change of each status's count that day and the members
    who joined that day. A list's counts are the sums over its days; its growth the joins of recent days."""

    __tablename__ = "list_daily_counts"

    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    subscribed: Mapped[int] = mapped_column(default=0)
    unconfirmed: Mapped[int] = mapped_column(default=0)
    unsubscribed: Mapped[int] = mapped_column(default=0)
    joined: Mapped[int] = mapped_column(default=0)
