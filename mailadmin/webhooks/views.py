"""The webhook routes: verify, then read, then apply once (see the package docstring)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass

from flask import Blueprint, abort, g, jsonify, request
from loguru import logger
from redis import RedisError

from mailadmin.counters import WEBHOOKS, count
from mailadmin.counters.families import WEBHOOK_PROVIDERS
from mailadmin.extensions import get_settings
from mailadmin.limits.replay import DeliveryClaim, delivery_fingerprint
from mailadmin.mail.bounces import BounceReport
from mailadmin.services.bounces import WebhookDelivery, apply_webhook_delivery
from mailadmin.webhooks import verify
from mailadmin.webhooks.providers import (
    PayloadError,
    mailgun_reports,
    postmark_delivery_id,
    postmark_reports,
    sendgrid_reports,
    ses_reports,
)
from mailadmin.webhooks.verify import Refusal, WebhookRefused

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")

# How long a provider is asked to wait before retrying a delivery another request is applying.
RETRY_AFTER_SECONDS = 5


@dataclass(frozen=True)
class Delivery:
    """One verified delivery: the id the provider gives it, a fingerprint of its content (what makes
    a redelivery identical, see `limits.replay`), and its reports."""

    delivery_id: str
    fingerprint: str
    reports: list[BounceReport]


def _receive(provider: str, configured: object, read_delivery: Callable[[], Delivery | object]):
    """Common path: 404 when not configured; refuse unproven requests; apply the rest once."""
    if not configured:
        _outcome("not_configured")
        abort(404)
    try:
        delivery = read_delivery()
        if not isinstance(delivery, Delivery):
            _outcome("subscription")
            return delivery
        received = apply_webhook_delivery(provider, delivery.delivery_id, delivery.fingerprint, delivery.reports)
        if received.claim is DeliveryClaim.CONFLICT:
            raise WebhookRefused(Refusal.REPLAYED, "this delivery id was received before with another content")
    except WebhookRefused as exc:
        _outcome("refused")
        # Never the body: it holds addresses, and a forged one is attacker-controlled text.
        logger.bind(provider=provider, refusal=exc.reason, remote_addr=request.remote_addr,
                    content_length=request.content_length).warning("Webhook refused")
        return jsonify(error=exc.reason), exc.status
    except PayloadError as exc:
        _outcome("unreadable")
        logger.bind(provider=provider, error=str(exc)).warning("Webhook payload not understood")
        return jsonify(error="unreadable payload"), 400
    except RedisError as exc:
        _outcome("unavailable")
        logger.bind(provider=provider, error_type=type(exc).__name__).error("Webhook refused: Redis unavailable")
        return jsonify(error="temporarily unavailable"), 503
    return _answer(provider, delivery, received)


def _answer(provider: str, delivery: Delivery, received: WebhookDelivery):
    """The provider's answer: 200 once applied, now or before (so it stops retrying); 503 while
    another request is still applying the same delivery (so it retries)."""
    if received.claim is DeliveryClaim.IN_PROGRESS:
        _outcome("in_progress")
        logger.bind(provider=provider).warning("Webhook delivery still being applied")
        return jsonify(error="in_progress"), 503, {"Retry-After": str(RETRY_AFTER_SECONDS)}
    if received.claim is DeliveryClaim.ALREADY_APPLIED:
        _outcome("already_applied")
        logger.bind(provider=provider, reports=len(delivery.reports)).info("Webhook delivery already applied")
        return jsonify(already_applied=True, applied=0, duplicates=len(delivery.reports)), 200
    applied = sum(1 for outcome in received.outcomes if outcome.applied)
    _outcome("applied")
    return jsonify(applied=applied, duplicates=len(received.outcomes) - applied), 200


def _outcome(outcome: str) -> None:
    """What became of this request, for `mailadmin_webhooks_received_total` (counted after the request)."""
    g.webhook_outcome = outcome


@bp.after_request
def _count_webhook(response):
    """Count the request by provider and outcome; the metrics blueprint writes the tally after it."""
    outcome = g.pop("webhook_outcome", None)
    provider = (request.endpoint or "").rpartition(".")[2]
    if outcome is not None and provider in WEBHOOK_PROVIDERS:
        count(WEBHOOKS, provider, outcome)
    return response


def _canonical_json(payload: object) -> bytes:
    """A parsed JSON body written one way, so that a provider re-serialising it is still identical."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _json_body() -> object:
    try:
        return json.loads(request.get_data(cache=True))
    except ValueError:
        raise WebhookRefused(Refusal.MISSING_CREDENTIALS, "the body is not JSON") from None


@bp.post("/ses")
def ses():
    """Amazon SES bounce/complaint notifications through an SNS topic (also confirms the subscription)."""
    settings = get_settings()

    def read() -> Delivery | object:
        message = _json_body()
        verify.verify_sns_message(message, settings.webhook_sns_topic_arns, settings.webhook_max_age_seconds)
        if message["Type"] == "SubscriptionConfirmation":
            verify.sns_region_of_host(str(message.get("SubscribeURL", "")))
            try:
                verify.confirm_sns_subscription(message["SubscribeURL"])
            except OSError:
                raise WebhookRefused(Refusal.SNS_UNREACHABLE, "the SubscribeURL could not be visited") from None
            logger.bind(provider="ses", topic=message["TopicArn"]).info("SNS subscription confirmed")
            return jsonify(confirmed=True)
        if message["Type"] == "UnsubscribeConfirmation":
            return jsonify(ignored=True)
        # What SNS signed: a redelivery of this notification signs the very same fields.
        return Delivery(message["MessageId"], delivery_fingerprint(verify.sns_string_to_sign(message)),
                        ses_reports(message["Message"], message["MessageId"]))

    return _receive("ses", settings.webhook_sns_topic_arns, read)


@bp.post("/sendgrid")
def sendgrid():
    """SendGrid Event Webhook (signed events)."""
    settings = get_settings()

    def read() -> Delivery:
        body = request.get_data(cache=True)
        signature = request.headers.get(verify.SENDGRID_SIGNATURE_HEADER)
        verify.verify_sendgrid_request(settings.webhook_sendgrid_public_key, signature,
                                       request.headers.get(verify.SENDGRID_TIMESTAMP_HEADER), body,
                                       settings.webhook_max_age_seconds)
        timestamp = request.headers.get(verify.SENDGRID_TIMESTAMP_HEADER, "")
        return Delivery(hashlib.sha256(signature.encode("utf-8")).hexdigest(),
                        delivery_fingerprint(timestamp.encode("utf-8"), body), sendgrid_reports(body))

    return _receive("sendgrid", settings.webhook_sendgrid_public_key, read)


@bp.post("/postmark")
def postmark():
    """Postmark bounce and spam-complaint webhooks (shared secret: basic auth or header)."""
    settings = get_settings()

    def read() -> Delivery:
        auth = request.authorization
        verify.verify_postmark_secret(settings.webhook_postmark_secret, auth.password if auth else None,
                                      request.headers.get(verify.POSTMARK_SECRET_HEADER))
        payload = _json_body()
        # Postmark signs nothing: identical means the same record, field for field.
        return Delivery(postmark_delivery_id(payload), delivery_fingerprint(_canonical_json(payload)),
                        postmark_reports(payload))

    return _receive("postmark", settings.webhook_postmark_secret, read)


@bp.post("/mailgun")
def mailgun():
    """Mailgun webhooks (failed, complained), signed with the webhook signing key."""
    settings = get_settings()

    def read() -> Delivery:
        payload = _json_body()
        if not isinstance(payload, dict):
            raise WebhookRefused(Refusal.MISSING_CREDENTIALS, "the body is not a Mailgun payload")
        token = verify.verify_mailgun_signature(settings.webhook_mailgun_signing_key, payload.get("signature"),
                                                settings.webhook_max_age_seconds)
        # The signature covers timestamp + token only: identical means the whole payload.
        return Delivery(token, delivery_fingerprint(_canonical_json(payload)), mailgun_reports(payload.get("event-data")))

    return _receive("mailgun", settings.webhook_mailgun_signing_key, read)
