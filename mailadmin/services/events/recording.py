"""The one place an event is recorded: `record_event`, called by the service that makes the change.

It writes the outbox row and one delivery per active endpoint that wants the type, in the caller's
transaction, and asks for a delivery run once that transaction has committed. A rolled-back change
therefore leaves no event; a committed one stays in the outbox until every delivery is delivered or
given up — a lost request for a run (Redis down) is made good by the scheduler's sweep.
No endpoint wanting the type: nothing is written (the outbox holds events someone will receive).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime

from loguru import logger
from redis import RedisError
from sqlalchemy import insert, select

from mailadmin.extensions import db
from mailadmin.models.events import DeliveryStatus, EventDelivery, EventEndpoint, EventType, OutboxEvent
from mailadmin.models.types import utcnow
from mailadmin.queue.events import request_events_delivery
from mailadmin.services.transaction import after_commit

_ENDPOINTS_CACHE = "mailadmin.events.endpoints"


def new_event_id() -> str:
    """A fresh public event id (the payload's `id`, the `webhook-id` header)."""
    return f"evt_{uuid.uuid4().hex}"


def payload_of(event_type: str, public_id: str, created_at: datetime, data: dict) -> dict:
    """The body of an event: `{"type", "id", "created_at", "data"}`."""
    return {"type": event_type, "id": public_id, "created_at": created_at.isoformat().replace("+00:00", "Z"),
            "data": data}


def _ordering_key(event_type: EventType, campaign_id: int | None) -> str | None:
    """Campaign events reach each endpoint in the order they happened; person events need no order."""
    return f"campaign-{campaign_id}" if campaign_id is not None and event_type.startswith("campaign.") else None


def endpoints_wanting(event_type: EventType) -> list[int]:
    """The ids of the active endpoints that subscribed to `event_type` (read once per transaction: a
    transaction recording thousands of events asks the database once)."""
    session = db.session()
    cached = session.info.get(_ENDPOINTS_CACHE)
    if cached is None or session.get_transaction() is None or cached[0] is not session.get_transaction():
        rows = session.execute(
            select(EventEndpoint.id, EventEndpoint.event_types).where(EventEndpoint.active.is_(True))
        ).all()
        cached = (session.get_transaction(), [(row.id, tuple(row.event_types or ())) for row in rows])
        session.info[_ENDPOINTS_CACHE] = cached
    return [endpoint_id for endpoint_id, types in cached[1] if event_type in types]


def record_event(event_type: EventType, data: dict | Callable[[], dict], *, campaign_id: int | None = None,
                 endpoint_ids: list[int] | None = None) -> OutboxEvent | None:
    """Write the event for every active endpoint that wants it (or for `endpoint_ids`), in the caller's
    transaction; None when no endpoint wants it. `data` may be a function: called only when one does."""
    targets = endpoints_wanting(event_type) if endpoint_ids is None else endpoint_ids
    if not targets:
        return None
    data = data() if callable(data) else data
    now = utcnow()
    public_id = new_event_id()
    event = OutboxEvent(public_id=public_id, type=event_type, campaign_id=campaign_id, created_at=now,
                        payload=payload_of(event_type, public_id, now, data))
    db.session.add(event)
    db.session.flush()
    key = _ordering_key(event_type, campaign_id)
    db.session.execute(insert(EventDelivery), [
        {"event_id": event.id, "endpoint_id": endpoint_id, "ordering_key": key, "status": DeliveryStatus.PENDING,
         "attempts": 0, "next_attempt_at": now, "created_at": now}
        for endpoint_id in targets
    ])
    after_commit(ask_for_delivery)
    return event


def ask_for_delivery() -> None:
    """After a commit: queue a delivery run; with Redis down the scheduler's sweep queues it later."""
    try:
        request_events_delivery()
    except RedisError as exc:
        logger.bind(error_type=type(exc).__name__).warning(
            "Events delivery not queued (Redis unavailable); the scheduler's sweep will queue it"
        )
