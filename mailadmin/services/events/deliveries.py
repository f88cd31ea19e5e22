"""Deliveries of events out: which are due, one attempt each, and what an attempt's outcome changes.

* `claim_due_deliveries` takes due deliveries for one run, setting their next attempt a lease ahead
  (a run that dies leaves them to be attempted again after the lease: at least once). A campaign
  event waits while an earlier event of the same campaign is still pending for the same endpoint.
* `attempt_delivery` signs and sends one delivery (no transaction is open during the HTTP call)
  and records the outcome: delivered; or failed and retried after an exponential, jittered delay
  (`retry_delay`); or given up after MAILER_EVENTS_MAX_ATTEMPTS. An endpoint whose attempts all
  failed for DISABLE_AFTER is disabled, with the reason on its page.
* `record_delivery_outcome` is the one point each attempt's outcome passes (log record; metrics).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from loguru import logger
from sqlalchemy import and_, exists, select, update
from sqlalchemy.orm import aliased

from mailadmin.extensions import db, get_settings
from mailadmin.models.events import DeliveryStatus, EventDelivery, EventEndpoint
from mailadmin.models.types import utcnow
from mailadmin.services.events.sending import AttemptResult, post_event
from mailadmin.services.events.signing import signature_headers, signing_secrets
from mailadmin.services.transaction import transaction

# An endpoint whose every attempt failed for this long is disabled (SPEC: "keeps failing").
DISABLE_AFTER = timedelta(hours=24)
# No single wait between two attempts is longer than this, whatever MAILER_EVENTS_MAX_ATTEMPTS says.
MAX_RETRY_DELAY = timedelta(hours=12)
# Each delay is its exponential value times a random factor in this range (receivers coming back
# after an outage are not hit by every retry in the same second).
JITTER = (0.8, 1.2)

_deliveries = EventDelivery.__table__


class DeliveryOutcome(StrEnum):
    """What one attempt ended as."""

    DELIVERED = "delivered"
    RETRYING = "retrying"  # failed; another attempt is scheduled
    GIVEN_UP = "given_up"  # failed for the last time


def retry_delay(failed_attempts: int, base_seconds: float, rng: random.Random | None = None) -> timedelta:
    """The wait after the `failed_attempts`-th failure: base × 2^(n-1), jittered, at most MAX_RETRY_DELAY."""
    exponential = base_seconds * 2 ** (failed_attempts - 1)
    jittered = exponential * (rng or random).uniform(*JITTER)
    return min(timedelta(seconds=jittered), MAX_RETRY_DELAY)


def lease(timeout_seconds: int) -> timedelta:
    """How long a claimed delivery is left alone: one attempt's time-outs with a wide margin."""
    return timedelta(seconds=4 * timeout_seconds + 30)


def _due_condition(now: datetime):
    earlier = aliased(EventDelivery)
    return and_(
        EventDelivery.status == DeliveryStatus.PENDING,
        EventDelivery.next_attempt_at <= now,
        exists().where(EventEndpoint.id == EventDelivery.endpoint_id, EventEndpoint.active.is_(True)),
        ~exists().where(
            earlier.endpoint_id == EventDelivery.endpoint_id,
            earlier.ordering_key == EventDelivery.ordering_key,
            earlier.status == DeliveryStatus.PENDING,
            earlier.id < EventDelivery.id,
        ),
    )


def due_deliveries_exist(now: datetime | None = None) -> bool:
    """Is any delivery due now (the scheduler's sweep asks)?"""
    with transaction():
        return db.session.scalar(select(EventDelivery.id).where(_due_condition(now or utcnow())).limit(1)) is not None


def claim_due_deliveries(limit: int, now: datetime | None = None) -> list[int]:
    """Up to `limit` due deliveries, oldest first, claimed for a lease (a concurrent run gets others)."""
    now = now or utcnow()
    until = now + lease(get_settings().events_timeout_seconds)
    with transaction():
        ids = db.session.scalars(
            select(EventDelivery.id).where(_due_condition(now)).order_by(EventDelivery.id).limit(limit)
        ).all()
        if not ids:
            return []
        claimed = db.session.execute(
            update(_deliveries)
            .where(_deliveries.c.id.in_(ids), _deliveries.c.status == DeliveryStatus.PENDING,
                   _deliveries.c.next_attempt_at <= now)
            .values(next_attempt_at=until)
            .returning(_deliveries.c.id)
        ).scalars().all()
    return sorted(claimed)


def release_claims(delivery_ids: list[int]) -> None:
    """Give claimed deliveries back unattempted (a run out of time): due again at once."""
    if not delivery_ids:
        return
    with transaction():
        db.session.execute(update(_deliveries).where(
            _deliveries.c.id.in_(delivery_ids), _deliveries.c.status == DeliveryStatus.PENDING,
        ).values(next_attempt_at=utcnow()))


@dataclass(frozen=True)
class _Request:
    url: str
    body: bytes
    headers: dict[str, str]


def _signed_request(delivery_id: int, at: datetime) -> _Request | None:
    with transaction():
        delivery = db.session.get(EventDelivery, delivery_id)
        if delivery is None or delivery.status != DeliveryStatus.PENDING:
            return None
        endpoint = db.session.get(EventEndpoint, delivery.endpoint_id)
        body = json.dumps(delivery.event.payload, separators=(",", ":"), ensure_ascii=False)
        headers = signature_headers(delivery.event.public_id, body, signing_secrets(endpoint, at), at)
        return _Request(endpoint.url, body.encode(), headers)


def attempt_delivery(delivery_id: int) -> DeliveryOutcome | None:
    """Sign and send one claimed delivery and record its outcome; None when it is no longer pending."""
    settings = get_settings()
    at = utcnow()
    request = _signed_request(delivery_id, at)
    if request is None:
        return None
    result = post_event(request.url, request.body, request.headers, production=settings.is_production,
                        timeout=settings.events_timeout_seconds)
    return record_attempt(delivery_id, result, utcnow())


def record_attempt(delivery_id: int, result: AttemptResult, now: datetime) -> DeliveryOutcome:
    """Write one attempt's result: delivered, or retried with backoff, or given up; the endpoint's
    failing streak, and its disabling after DISABLE_AFTER of failures."""
    settings = get_settings()
    with transaction():
        delivery = db.session.get(EventDelivery, delivery_id)
        endpoint = db.session.get(EventEndpoint, delivery.endpoint_id)
        delivery.attempts += 1
        delivery.last_attempt_at = now
        delivery.last_status_code, delivery.last_response_ms = result.status_code, result.response_ms
        delivery.last_error = (result.error or None) and result.error[:300]
        if result.ok:
            outcome = DeliveryOutcome.DELIVERED
            delivery.status, delivery.delivered_at, delivery.next_attempt_at = DeliveryStatus.DELIVERED, now, None
            endpoint.failing_since = None
        else:
            outcome = _failed(delivery, now, settings.events_max_attempts, settings.events_retry_base_seconds)
            disabled = _note_failure(endpoint, now, result)
    record_delivery_outcome(outcome, delivery, endpoint.id)
    if not result.ok and disabled:
        logger.bind(endpoint_id=endpoint.id, failing_since=endpoint.failing_since.isoformat()).error(
            "Events endpoint disabled")
    return outcome


def _failed(delivery: EventDelivery, now: datetime, max_attempts: int, base_seconds: int) -> DeliveryOutcome:
    if delivery.attempts >= max_attempts:
        delivery.status, delivery.next_attempt_at = DeliveryStatus.GIVEN_UP, None
        return DeliveryOutcome.GIVEN_UP
    delivery.next_attempt_at = now + retry_delay(delivery.attempts, base_seconds)
    return DeliveryOutcome.RETRYING


def _note_failure(endpoint: EventEndpoint, now: datetime, result: AttemptResult) -> bool:
    """Start or extend the endpoint's failing streak; True when this failure disabled it."""
    endpoint.failing_since = endpoint.failing_since or now
    if not endpoint.active or now - endpoint.failing_since < DISABLE_AFTER:
        return False
    last = result.error.split(":", 1)[0] if result.error else "no answer"
    endpoint.active, endpoint.disabled_at, endpoint.updated_at = False, now, now
    endpoint.disabled_reason = (
        f"Disabled automatically: every attempt failed since {endpoint.failing_since:%Y-%m-%d %H:%M} UTC "
        f"(24 hours); the last one got {last}. Fix the receiver, then enable the endpoint again."
    )
    return True


def record_delivery_outcome(outcome: DeliveryOutcome, delivery: EventDelivery, endpoint_id: int) -> None:
    """The one point every attempt's outcome passes: its log record (and the metrics' counter)."""
    log = logger.bind(
        outcome=str(outcome), endpoint_id=endpoint_id, delivery_id=delivery.id, event_id=delivery.event.public_id,
        event_type=delivery.event.type, attempt=delivery.attempts, status_code=delivery.last_status_code,
        response_ms=delivery.last_response_ms,
    )
    if outcome is DeliveryOutcome.DELIVERED:
        log.info("Event delivered")
    elif outcome is DeliveryOutcome.RETRYING:
        log.bind(next_attempt_at=delivery.next_attempt_at.isoformat(), error=_error_kind(delivery)).warning(
            "Event delivery failed")
    else:
        log.bind(error=_error_kind(delivery)).error("Event delivery given up")


def _error_kind(delivery: EventDelivery) -> str:
    """The error without the receiver's words (`HTTP 500`, `no answer`, `refused`): bodies are never logged."""
    return (delivery.last_error or "").split(":", 1)[0]
