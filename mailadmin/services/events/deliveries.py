"""Deliveries of events out: which are due, one attempt each, and what an attempt's outcome changes.

* `claim_due_deliveries` takes due deliveries for one run, setting their next attempt a lease ahead
  (a run that dies leaves them to be attempted again after the lease: at least once). A campaign
  event waits while an earlier event of the same campaign is still pending for the same endpoint.
* `attempt_deliveries` signs and sends a claimed batch, ATTEMPTS_AT_ONCE side by side (no
  transaction is open during the HTTP calls), and records the outcomes in one transaction: delivered; or failed and retried after an exponential, jittered delay
  (`retry_delay`); or given up after MAILER_EVENTS_MAX_ATTEMPTS. An endpoint whose attempts all
  failed for DISABLE_AFTER is disabled, with the reason on its page.
* `record_delivery_outcome` is the one point each attempt's outcome passes (log record; metrics).
"""

from __future__ import annotations

import json
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from loguru import logger
from sqlalchemy import and_, exists, select, update
from sqlalchemy.orm import aliased

from mailadmin.counters.tally import count_event_delivery
from mailadmin.extensions import db, get_settings
from mailadmin.i18n import N_, stored_form
from mailadmin.models.events import DeliveryStatus, EventDelivery, EventEndpoint, OutboxEvent
from mailadmin.models.moments import format_utc
from mailadmin.models.types import utcnow
from mailadmin.services.events.sending import AttemptResult, post_event
from mailadmin.services.events.signing import signature_headers, signing_secrets
from mailadmin.services.transaction import transaction

# An endpoint whose every attempt failed for this long is disabled (SPEC: "keeps failing").
DISABLE_AFTER = timedelta(hours=24)
# The endpoint's disabled_reason, stored as an i18n.stored_form: the pages show it in the viewer's language.
AUTO_DISABLED = N_("Disabled automatically: every attempt failed since %(since)s (24 hours); the last one got "
                   "%(last)s. Fix the receiver, then enable the endpoint again.")
# No single wait between two attempts is longer than this, whatever MAILER_EVENTS_MAX_ATTEMPTS says.
MAX_RETRY_DELAY = timedelta(hours=12)
# Each delay is its exponential value times a random factor in this range (receivers coming back
# after an outage are not hit by every retry in the same second).
JITTER = (0.8, 1.2)
# Attempts of one run sent side by side (threads: each waits on its socket, MAILER_EVENTS_TIMEOUT_SECONDS at most).
ATTEMPTS_AT_ONCE = 20

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


@dataclass(frozen=True)
class _Request:
    delivery_id: int
    url: str
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True)
class AttemptRecord:
    """One attempt as `record_delivery_outcome` sees it (read before the commit: no query after)."""

    outcome: DeliveryOutcome
    endpoint_id: int
    delivery_id: int
    event_id: str
    event_type: str
    attempt: int
    status_code: int | None
    response_ms: int | None
    error: str | None
    next_attempt_at: datetime | None


def _signed_requests(delivery_ids: list[int], at: datetime) -> list[_Request]:
    """The claimed deliveries still pending, each with its endpoint's URL, its body and its signatures."""
    with transaction():
        rows = db.session.execute(
            select(EventDelivery.id, EventEndpoint, OutboxEvent.public_id, OutboxEvent.payload)
            .join(EventEndpoint, EventEndpoint.id == EventDelivery.endpoint_id)
            .join(OutboxEvent, OutboxEvent.id == EventDelivery.event_id)
            .where(EventDelivery.id.in_(delivery_ids), EventDelivery.status == DeliveryStatus.PENDING)
            .order_by(EventDelivery.id)
        ).all()
        requests = []
        for delivery_id, endpoint, public_id, payload in rows:
            body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
            headers = signature_headers(public_id, body, signing_secrets(endpoint, at), at)
            requests.append(_Request(delivery_id, endpoint.url, body.encode(), headers))
        return requests


def attempt_deliveries(delivery_ids: list[int]) -> list[DeliveryOutcome]:
    """Sign and send claimed deliveries, up to ATTEMPTS_AT_ONCE at a time (no transaction open meanwhile),
    and record their outcomes in one transaction. A claimed batch never holds two deliveries that must
    keep an order (see `_due_condition`), so sending them side by side keeps every order."""
    settings = get_settings()
    requests = _signed_requests(delivery_ids, utcnow())
    if not requests:
        return []

    def send(request: _Request) -> AttemptResult:
        return post_event(request.url, request.body, request.headers, production=settings.is_production,
                          timeout=settings.events_timeout_seconds)

    with ThreadPoolExecutor(max_workers=min(ATTEMPTS_AT_ONCE, len(requests))) as pool:
        results = list(pool.map(send, requests))
    return record_attempts([(r.delivery_id, result) for r, result in zip(requests, results, strict=True)], utcnow())


def attempt_delivery(delivery_id: int) -> DeliveryOutcome | None:
    """`attempt_deliveries` of one delivery; None when it is no longer pending."""
    outcomes = attempt_deliveries([delivery_id])
    return outcomes[0] if outcomes else None


def record_attempts(results: list[tuple[int, AttemptResult]], now: datetime) -> list[DeliveryOutcome]:
    """Write attempts' results in one transaction: delivered, or retried with backoff, or given up; each
    endpoint's failing streak, and its disabling after DISABLE_AFTER of failures. Then log each."""
    settings = get_settings()
    records: list[AttemptRecord] = []
    disabled: list[EventEndpoint] = []
    with transaction():
        deliveries = {d.id: d for d in db.session.scalars(
            select(EventDelivery).where(EventDelivery.id.in_([delivery_id for delivery_id, _ in results])))}
        endpoint_ids = {d.endpoint_id for d in deliveries.values()}
        endpoints = {e.id: e for e in db.session.scalars(select(EventEndpoint).where(EventEndpoint.id.in_(endpoint_ids)))}
        for delivery_id, result in results:
            delivery = deliveries[delivery_id]
            endpoint = endpoints[delivery.endpoint_id]
            outcome = _apply_result(delivery, endpoint, result, now, settings.events_max_attempts,
                                    settings.events_retry_base_seconds)
            if not result.ok and _note_failure(endpoint, now, result):
                disabled.append(endpoint)
            records.append(AttemptRecord(
                outcome, endpoint.id, delivery.id, delivery.event.public_id, delivery.event.type, delivery.attempts,
                delivery.last_status_code, delivery.last_response_ms, delivery.last_error, delivery.next_attempt_at))
        disabled_log = [(e.id, e.failing_since) for e in disabled]
    for record in records:
        record_delivery_outcome(record)
    for endpoint_id, failing_since in disabled_log:
        logger.bind(endpoint_id=endpoint_id, failing_since=failing_since.isoformat()).error("Events endpoint disabled")
    return [record.outcome for record in records]


def _apply_result(delivery: EventDelivery, endpoint: EventEndpoint, result: AttemptResult, now: datetime,
                  max_attempts: int, base_seconds: int) -> DeliveryOutcome:
    """One attempt's result on its delivery (in the session)."""
    delivery.attempts += 1
    delivery.last_attempt_at = now
    delivery.last_status_code, delivery.last_response_ms = result.status_code, result.response_ms
    delivery.last_error = (result.error or None) and result.error[:300]
    if not result.ok:
        return _failed(delivery, now, max_attempts, base_seconds)
    delivery.status, delivery.delivered_at, delivery.next_attempt_at = DeliveryStatus.DELIVERED, now, None
    endpoint.failing_since = None
    return DeliveryOutcome.DELIVERED


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
    endpoint.disabled_reason = stored_form(AUTO_DISABLED, since=format_utc(endpoint.failing_since), last=last)
    return True


# /metrics' names for the outcomes (`mailadmin_event_deliveries_total{outcome}`).
_COUNTED_AS = {DeliveryOutcome.DELIVERED: "delivered", DeliveryOutcome.RETRYING: "failed",
               DeliveryOutcome.GIVEN_UP: "given_up"}


def record_delivery_outcome(record: AttemptRecord) -> None:
    """The one point every attempt's outcome passes: its log record (and the metrics' counter)."""
    log = logger.bind(
        outcome=str(record.outcome), endpoint_id=record.endpoint_id, delivery_id=record.delivery_id,
        event_id=record.event_id, event_type=record.event_type, attempt=record.attempt,
        status_code=record.status_code, response_ms=record.response_ms,
    )
    # The error without the receiver's words (`HTTP 500`, `no answer`, `refused`): bodies are never logged.
    error = (record.error or "").split(":", 1)[0]
    count_event_delivery(_COUNTED_AS[record.outcome])
    if record.outcome is DeliveryOutcome.DELIVERED:
        log.info("Event delivered")
    elif record.outcome is DeliveryOutcome.RETRYING:
        log.bind(next_attempt_at=record.next_attempt_at.isoformat(), error=error).warning("Event delivery failed")
    else:
        log.bind(error=error).error("Event delivery given up")
