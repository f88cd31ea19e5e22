"""The admins' side of events out: endpoints (create, edit, enable, rotate the secret), their recent
deliveries, a re-send of one delivery and a test-send of a sample event. Each change is audited.

A secret is returned once, by the call that made it (the page shows it once); a rotation keeps the
previous secret signing for SECRET_OVERLAP, so receivers can switch without missing an event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from flask_babel import gettext
from sqlalchemy import select

from mailadmin.extensions import db, get_settings
from mailadmin.models import User
from mailadmin.models.events import SUBSCRIBABLE_TYPES, DeliveryStatus, EventDelivery, EventEndpoint, EventType
from mailadmin.models.types import utcnow
from mailadmin.services.audit import record_audit
from mailadmin.services.errors import ErrorKind, ServiceError
from mailadmin.services.events.addresses import check_endpoint_url
from mailadmin.services.events.recording import ask_for_delivery, record_event
from mailadmin.services.events.signing import new_secret
from mailadmin.services.transaction import after_commit, transaction

SECRET_OVERLAP = timedelta(hours=24)
RECENT_DELIVERIES = 50
DESCRIPTION_MAX = 200


class EndpointError(ServiceError):
    """A refused endpoint action; `.message` says why."""


@dataclass(frozen=True)
class EndpointFields:
    """What an admin gives for an endpoint."""

    url: str
    description: str
    event_types: tuple[str, ...]
    active: bool = True


def _checked(fields: EndpointFields) -> EndpointFields:
    """The fields with the URL checked now (production: https, public addresses), types known."""
    check_endpoint_url(fields.url, production=get_settings().is_production)
    unknown = set(fields.event_types) - set(SUBSCRIBABLE_TYPES)
    if unknown or not fields.event_types:
        raise EndpointError(gettext("Choose at least one event type.") if not unknown
                            else gettext("Unknown event type %(type)s.", type=sorted(unknown)[0]))
    return EndpointFields(fields.url.strip(), (fields.description or "").strip()[:DESCRIPTION_MAX],
                          tuple(t for t in SUBSCRIBABLE_TYPES if t in fields.event_types), fields.active)


def list_endpoints() -> list[EventEndpoint]:
    """Every endpoint, newest first."""
    return list(db.session.scalars(select(EventEndpoint).order_by(EventEndpoint.id.desc())))


def get_endpoint(endpoint_id: int) -> EventEndpoint:
    """The endpoint, or EndpointError (not found)."""
    endpoint = db.session.get(EventEndpoint, endpoint_id)
    if endpoint is None:
        raise EndpointError(gettext("No such endpoint."), ErrorKind.NOT_FOUND)
    return endpoint


def create_endpoint(fields: EndpointFields, actor: User) -> tuple[EventEndpoint, str]:
    """A new endpoint and its secret (shown once)."""
    fields = _checked(fields)
    secret = new_secret()
    now = utcnow()
    with transaction():
        endpoint = EventEndpoint(url=fields.url, description=fields.description, event_types=list(fields.event_types),
                                 active=fields.active, secret=secret, created_at=now, updated_at=now)
        db.session.add(endpoint)
        db.session.flush()
        record_audit(actor, "events_endpoint_created", details={"endpoint_id": endpoint.id})
    return endpoint, secret


def update_endpoint(endpoint_id: int, fields: EndpointFields, actor: User) -> EventEndpoint:
    """Change an endpoint; enabling it again clears its failing streak and the reason it was disabled."""
    fields = _checked(fields)
    with transaction():
        endpoint = get_endpoint(endpoint_id)
        enabled = fields.active and not endpoint.active
        endpoint.url, endpoint.description = fields.url, fields.description
        endpoint.event_types, endpoint.active, endpoint.updated_at = list(fields.event_types), fields.active, utcnow()
        if enabled:
            endpoint.failing_since = endpoint.disabled_at = endpoint.disabled_reason = None
            after_commit(ask_for_delivery)  # its pending deliveries are due
        record_audit(actor, "events_endpoint_changed", details={"endpoint_id": endpoint.id, "active": fields.active})
    return endpoint


def rotate_secret(endpoint_id: int, actor: User) -> str:
    """A new secret (shown once); the previous one keeps signing for SECRET_OVERLAP."""
    secret = new_secret()
    now = utcnow()
    with transaction():
        endpoint = get_endpoint(endpoint_id)
        endpoint.previous_secret, endpoint.previous_secret_until = endpoint.secret, now + SECRET_OVERLAP
        endpoint.secret, endpoint.updated_at = secret, now
        record_audit(actor, "events_endpoint_secret_rotated", details={"endpoint_id": endpoint.id})
    return secret


def recent_deliveries(endpoint_id: int, limit: int = RECENT_DELIVERIES) -> list[EventDelivery]:
    """The endpoint's latest deliveries, newest first."""
    return list(db.session.scalars(
        select(EventDelivery).where(EventDelivery.endpoint_id == endpoint_id).order_by(EventDelivery.id.desc())
        .limit(limit)
    ))


def resend_delivery(delivery_id: int, actor: User) -> EventDelivery:
    """Send a delivery's event again to its endpoint (same event id: receivers deduplicate), as a new delivery."""
    now = utcnow()
    with transaction():
        original = db.session.get(EventDelivery, delivery_id)
        if original is None:
            raise EndpointError(gettext("No such delivery."), ErrorKind.NOT_FOUND)
        again = EventDelivery(event_id=original.event_id, endpoint_id=original.endpoint_id,
                              ordering_key=original.ordering_key, status=DeliveryStatus.PENDING, attempts=0,
                              next_attempt_at=now, created_at=now)
        db.session.add(again)
        db.session.flush()
        record_audit(actor, "events_delivery_resent",
                     details={"endpoint_id": original.endpoint_id, "delivery_id": original.id})
        after_commit(ask_for_delivery)
    return again


def send_test_event(endpoint_id: int, actor: User) -> None:
    """Queue a sample `endpoint.test` event for this endpoint only (even a disabled one's test waits)."""
    with transaction():
        endpoint = get_endpoint(endpoint_id)
        record_event(EventType.ENDPOINT_TEST, {"endpoint_id": endpoint.id, "message": "A test event from mailadmin."},
                     endpoint_ids=[endpoint.id])
        record_audit(actor, "events_test_sent", details={"endpoint_id": endpoint.id})
