"""Recording who did what: one audit row plus one structured log record."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from loguru import logger

from mailadmin.extensions import db
from mailadmin.models import AuditEvent, User

# The name of the API token the current request acts through (None: a page, the CLI, a job).
_api_token_name: ContextVar[str | None] = ContextVar("mailadmin_api_token_name", default=None)


@contextmanager
def acting_through_token(name: str) -> Iterator[None]:
    """Every audit row recorded inside this block names the API token `name` (details["api_token"])."""
    reset = _api_token_name.set(name)
    try:
        yield
    finally:
        _api_token_name.reset(reset)


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
    """Add an audit row to the session (the calling service commits) and log it; inside
    `acting_through_token` the row names the API token too."""
    if (token_name := _api_token_name.get()) is not None:
        details = {**(details or {}), "api_token": token_name}
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
        api_token=token_name,
    ).info("Audit: {action}", action=action)
    return event
