"""Recording who did what: one audit row plus one structured log record."""

from __future__ import annotations

from loguru import logger

from mailadmin.extensions import db
from mailadmin.models import AuditEvent, User


def actor_field(actor: User | None) -> int | str:
    """The `actor` field of a log record: the user's id, or "system" for the sweep, the CLI without a user."""
    return actor.id if actor is not None else "system"


def record_audit(
    actor: User | None,
    action: str,
    *,
    campaign_id: int | None = None,
    from_status: str | None = None,
    to_status: str | None = None,
    details: dict | None = None,
) -> AuditEvent:
    """Add an audit row to the session (the calling service commits) and log it."""
    event = AuditEvent(
        actor_id=actor.id if actor else None,
        action=action,
        campaign_id=campaign_id,
        from_status=from_status,
        to_status=to_status,
        details=details or None,
    )
    db.session.add(event)
    logger.bind(
        actor=actor.id if actor else "system",
        action=action,
        campaign_id=campaign_id,
        from_status=from_status,
        to_status=to_status,
    ).info("Audit: {action}", action=action)
    return event
