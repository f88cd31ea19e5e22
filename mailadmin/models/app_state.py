"""Process-wide state kept in the database: the global sending switch."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey
from sqlalchemy.orm import Mapped, mapped_column

from mailadmin.extensions import db
from mailadmin.models.types import UTCDateTime, utcnow

APP_STATE_ID = 1


class AppState(db.Model):
    """A single row (id 1). Kept in the database, not Redis, so that a Redis restart
    never silently switches sending back on."""

    __tablename__ = "app_state"

    id: Mapped[int] = mapped_column(primary_key=True)
    sending_paused: Mapped[bool] = mapped_column(Boolean, default=False)
    changed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=utcnow)
