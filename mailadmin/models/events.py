"""Events out: the endpoints other systems registered, the outbox of events, and their deliveries.

An `OutboxEvent` is written by the service that makes the change, in the same transaction, with one
`EventDelivery` per active endpoint that wants its type: a rolled-back change leaves no row, a
committed one stays until each delivery is delivered or given up (`mailadmin.services.events`).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from mailadmin.extensions import db
from mailadmin.models.types import UTCDateTime, utcnow

_ID = BigInteger().with_variant(Integer, "sqlite")


class EventType(StrEnum):
    """The event types of SPEC "Events out", and the sample an admin test-sends."""

    CONTACT_SUBSCRIBED = "contact.subscribed"
    CONTACT_UNSUBSCRIBED = "contact.unsubscribed"
    RECIPIENT_FAILED = "recipient.failed"
    RECIPIENT_BOUNCED = "recipient.bounced"
    RECIPIENT_COMPLAINED = "recipient.complained"
    CAMPAIGN_STARTED = "campaign.started"
    CAMPAIGN_PAUSED = "campaign.paused"
    CAMPAIGN_RESUMED = "campaign.resumed"
    CAMPAIGN_FINISHED = "campaign.finished"
    CAMPAIGN_CANCELLED = "campaign.cancelled"
    ENDPOINT_TEST = "endpoint.test"  # sent only to the endpoint an admin tests, whatever it subscribed to


# The types an endpoint may subscribe to (the test sample is not one).
SUBSCRIBABLE_TYPES = tuple(t for t in EventType if t is not EventType.ENDPOINT_TEST)


class DeliveryStatus(StrEnum):
    """Where one event stands for one endpoint."""

    PENDING = "pending"  # waiting for its (next) attempt, or being attempted now
    DELIVERED = "delivered"  # a 2xx answer
    GIVEN_UP = "given_up"  # MAILER_EVENTS_MAX_ATTEMPTS failed attempts


class EventEndpoint(db.Model):
    __tablename__ = "event_endpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str] = mapped_column(String(200), default="")
    event_types: Mapped[list] = mapped_column(JSON, default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # `whsec_` + base64 of 32 random bytes. During a rotation's overlap the previous one signs too.
    secret: Mapped[str] = mapped_column(String(100))
    previous_secret: Mapped[str | None] = mapped_column(String(100))
    previous_secret_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Since when every attempt failed (None after a success); a day of it disables the endpoint.
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disabled_reason: Mapped[str | None] = mapped_column(String(500))
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class OutboxEvent(db.Model):
    __tablename__ = "outbox_events"

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    # The `id` of the payload and the `webhook-id` header: the same on every attempt and re-send.
    public_id: Mapped[str] = mapped_column(String(40), unique=True)
    type: Mapped[str] = mapped_column(String(40))
    campaign_id: Mapped[int | None] = mapped_column(Integer)
    payload: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class EventDelivery(db.Model):
    __tablename__ = "event_deliveries"
    __table_args__ = (
        # Due deliveries are taken oldest first: pending ones in id order, never a scan of the delivered.
        Index("ix_event_deliveries_due", "status", "id"),
        Index("ix_event_deliveries_endpoint", "endpoint_id", "id"),
        Index("ix_event_deliveries_ordering", "endpoint_id", "ordering_key", "status"),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("outbox_events.id", ondelete="CASCADE"), index=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("event_endpoints.id", ondelete="CASCADE"))
    # Deliveries sharing a key (`campaign-12`) reach one endpoint in order: one waits for the earlier ones.
    ordering_key: Mapped[str | None] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_response_ms: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(300))
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    event: Mapped[OutboxEvent] = relationship(lazy="joined")
