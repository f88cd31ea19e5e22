"""The suppression list: addresses that must never be sent to (unsubscribed, hard-bounced)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from mailadmin.extensions import db
from mailadmin.models.types import UTCDateTime, utcnow

REASON_UNSUBSCRIBED = "unsubscribed"
REASON_HARD_BOUNCE = "hard_bounce"
REASON_MANUAL = "manual"
SUPPRESSION_REASONS = (REASON_UNSUBSCRIBED, REASON_HARD_BOUNCE, REASON_MANUAL)


class Suppression(db.Model):
    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    reason: Mapped[str] = mapped_column(String(32))
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
