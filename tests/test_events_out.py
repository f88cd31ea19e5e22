"""Events out: the outbox written in the change's transaction, signatures a receiver verifies, the SSRF
refusals, the backoff schedule, giving up, and an endpoint disabled after a day of failures."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from mailadmin.extensions import db
from mailadmin.jobs.events import deliver_due_events
from mailadmin.mail.bounces import BounceReport
from mailadmin.models.events import DeliveryStatus, EventDelivery, EventEndpoint, EventType, OutboxEvent
from mailadmin.models.suppression import REASON_UNSUBSCRIBED, SOURCE_UNSUBSCRIBE
from mailadmin.models.types import utcnow
from mailadmin.services.bounces import record_bounce
from mailadmin.services.campaigns import cancel_campaign, pause_campaign, resume_campaign
from mailadmin.services.events import endpoints as endpoint_service
from mailadmin.services.events.addresses import UnsafeEndpointUrl, check_endpoint_url, refusal_of_address
from mailadmin.services.events.deliveries import (
    DISABLE_AFTER,
    DeliveryOutcome,
    attempt_delivery,
    claim_due_deliveries,
    retry_delay,
)
from mailadmin.services.events.sending import post_event
from mailadmin.services.events.signing import signature_headers
from mailadmin.services.suppressions import suppress
from mailadmin.services.transaction import transaction
from tests.factories import ADMIN_EMAIL, create_started_campaign, fresh_campaign, sent_campaign
from tests.support.jobs import run_queued_jobs
from tests.support.receiver import EventReceiver
from tests.support.web import logged_in_client


@pytest.fixture
def receiver():
    started = EventReceiver().start()
    yield started
    started.stop()


def make_endpoint(admin, url: str, types=tuple(t.value for t in EventType if t is not EventType.ENDPOINT_TEST)):
    endpoint, secret = endpoint_service.create_endpoint(
        endpoint_service.EndpointFields(url, "CRM", tuple(types)), admin)
    return endpoint, secret


def events_of(event_type: str) -> list[OutboxEvent]:
    return list(db.session.scalars(select(OutboxEvent).where(OutboxEvent.type == event_type).order_by(OutboxEvent.id)))


def test_a_rolled_back_unsubscribe_leaves_no_event_and_a_committed_one_is_in_the_outbox(app, admin, receiver):
    make_endpoint(admin, receiver.url)
    with pytest.raises(RuntimeError), transaction():
        suppress("gone@example.com", REASON_UNSUBSCRIBED, source=SOURCE_UNSUBSCRIBE)
        raise RuntimeError("the request failed after the change")
    assert db.session.scalar(select(func.count()).select_from(OutboxEvent)) == 0
    assert db.session.scalar(select(func.count()).select_from(EventDelivery)) == 0

    with transaction():
        suppress("gone@example.com", REASON_UNSUBSCRIBED, source=SOURCE_UNSUBSCRIBE)
    [event] = events_of("contact.unsubscribed")
    assert event.payload["data"]["email"] == "gone@example.com" and event.payload["data"]["scope"] == "all"
    assert event.payload["id"] == event.public_id and event.payload["type"] == "contact.unsubscribed"


def test_no_endpoint_wanting_a_type_writes_nothing(app, admin, receiver):
    make_endpoint(admin, receiver.url, types=("campaign.finished",))
    with transaction():
        suppress("gone@example.com", REASON_UNSUBSCRIBED, source=SOURCE_UNSUBSCRIBE)
    assert db.session.scalar(select(func.count()).select_from(OutboxEvent)) == 0


def test_campaign_transitions_by_people_record_their_events_in_order(app, admin, owner, receiver):
    make_endpoint(admin, receiver.url)
    campaign = create_started_campaign(owner, 3)
    pause_campaign(fresh_campaign(campaign.id), owner)
    resume_campaign(fresh_campaign(campaign.id), owner)
    cancel_campaign(fresh_campaign(campaign.id), owner)
    types = [e.type for e in db.session.scalars(select(OutboxEvent).order_by(OutboxEvent.id))]
    assert types == ["campaign.started", "campaign.paused", "campaign.resumed", "campaign.cancelled"]
    paused = events_of("campaign.paused")[0].payload["data"]
    assert paused == {"campaign_id": campaign.id, "reason": "admin_pause"}
    keys = set(db.session.scalars(select(EventDelivery.ordering_key)))
    assert keys == {f"campaign-{campaign.id}"}


def test_a_hard_bounce_and_a_complaint_record_recipient_events_with_ids_and_address(app, admin, owner, receiver):
    make_endpoint(admin, receiver.url)
    campaign = sent_campaign(owner, ["a@example.com", "b@example.com"])
    record_bounce(BounceReport("a@example.com", "hard", "ses", "n-1", campaign_id=campaign.id))
    record_bounce(BounceReport("b@example.com", "complaint", "ses", "n-2", campaign_id=campaign.id))
    record_bounce(BounceReport("a@example.com", "hard", "ses", "n-1", campaign_id=campaign.id))  # seen before
    [bounced] = events_of("recipient.bounced")
    [complained] = events_of("recipient.complained")
    assert bounced.payload["data"]["email"] == "a@example.com" and bounced.payload["data"]["campaign_id"] == campaign.id
    assert isinstance(bounced.payload["data"]["recipient_id"], int)
    assert complained.payload["data"]["email"] == "b@example.com"


def test_the_delivery_job_posts_a_signed_event_the_receiver_verifies(app, admin, receiver):
    _, secret = make_endpoint(admin, receiver.url)
    receiver.secret = secret
    with transaction():
        suppress("gone@example.com", REASON_UNSUBSCRIBED, source=SOURCE_UNSUBSCRIBE)
    assert deliver_due_events() == 1
    [event] = receiver.events.values()
    assert event["type"] == "contact.unsubscribed" and receiver.bad_signatures == 0
    delivery = db.session.scalar(select(EventDelivery))
    assert delivery.status == DeliveryStatus.DELIVERED and delivery.last_status_code == 204
    assert delivery.last_response_ms is not None


def test_signatures_verify_with_the_library_and_both_secrets_sign_during_a_rotation(app, admin, receiver):
    endpoint, old_secret = make_endpoint(admin, receiver.url)
    new_secret = endpoint_service.rotate_secret(endpoint.id, admin)
    assert new_secret.startswith("whsec_") and new_secret != old_secret
    endpoint = db.session.get(EventEndpoint, endpoint.id)
    now = utcnow()
    from mailadmin.services.events.signing import signing_secrets

    body = '{"type":"x"}'
    headers = signature_headers("evt_1", body, signing_secrets(endpoint, now), now)
    for secret in (old_secret, new_secret):
        Webhook(secret).verify(body, headers)
    later = now + timedelta(hours=25)  # the overlap is over: only the new secret signs
    assert signing_secrets(endpoint, later) == [new_secret]
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret).verify(body + " ", headers)


@pytest.mark.parametrize("url", [
    "http://example.com/hook",  # not https
    "https://127.0.0.1/hook",  # loopback
    "https://localhost/hook",
    "https://10.1.2.3/hook",  # private
    "https://192.168.0.10/hook",
    "https://169.254.169.254/latest/meta-data",  # cloud metadata (link-local)
    "https://[::1]/hook",
    "https://[::ffff:127.0.0.1]/hook",  # IPv4-mapped loopback
    "https://[fd00:ec2::254]/hook",  # AWS metadata over IPv6 (unique local)
    "https://100.100.100.200/hook",  # Alibaba metadata (shared address space)
    "https://user:pass@example.com/hook",
])
def test_production_refuses_urls_that_are_not_https_or_reach_inside(url):
    with pytest.raises(UnsafeEndpointUrl):
        check_endpoint_url(url, production=True)


def test_a_public_address_is_allowed_in_production_and_127_0_0_1_in_development():
    assert refusal_of_address("93.184.215.14") is None
    assert check_endpoint_url("https://93.184.215.14:8443/in?x=1", production=True).target == "/in?x=1"
    assert check_endpoint_url("http://127.0.0.1:9/hook", production=False).address == "127.0.0.1"


def test_each_attempt_checks_the_address_again_and_never_connects_inside_in_production(app, receiver):
    result = post_event(receiver.url, b"{}", {}, production=True, timeout=2)
    assert not result.ok and result.error.startswith("refused:")
    assert receiver.received == []


def test_redirects_are_not_followed(app, admin, receiver):
    receiver.answer = 302
    result = post_event(receiver.url, b"{}", {}, production=False, timeout=2)
    assert not result.ok and result.status_code == 302 and len(receiver.received) == 1


def test_the_backoff_doubles_with_jitter_and_fifteen_attempts_span_about_a_day():
    rng = random.Random(7)
    delays = [retry_delay(n, 5, rng) for n in range(1, 15)]
    for n, delay in enumerate(delays, start=1):
        assert 0.8 * 5 * 2 ** (n - 1) <= delay.total_seconds() <= 1.2 * 5 * 2 ** (n - 1)
    assert timedelta(hours=18) < sum(delays, timedelta()) < timedelta(hours=28)
    assert retry_delay(40, 5) == timedelta(hours=12)  # no single wait beyond the cap


@pytest.fixture
def failing_delivery(app, admin, receiver):
    endpoint, secret = make_endpoint(admin, receiver.url)
    receiver.secret, receiver.answer = secret, 500
    with transaction():
        suppress("gone@example.com", REASON_UNSUBSCRIBED, source=SOURCE_UNSUBSCRIBE)
    return endpoint.id, db.session.scalar(select(EventDelivery.id))


def test_a_failed_attempt_is_retried_later_and_given_up_after_the_last_attempt(app_env, failing_delivery):
    endpoint_id, delivery_id = failing_delivery
    assert claim_due_deliveries(10) == [delivery_id]
    assert attempt_delivery(delivery_id) is DeliveryOutcome.RETRYING
    delivery = db.session.get(EventDelivery, delivery_id)
    assert delivery.status == DeliveryStatus.PENDING and delivery.last_status_code == 500
    assert delivery.next_attempt_at > utcnow() + timedelta(seconds=3)
    assert claim_due_deliveries(10) == []  # not due before its retry time
    with transaction():
        delivery.attempts = 14
    assert attempt_delivery(delivery_id) is DeliveryOutcome.GIVEN_UP
    delivery = db.session.get(EventDelivery, delivery_id)
    assert delivery.status == DeliveryStatus.GIVEN_UP and delivery.next_attempt_at is None
    assert delivery.last_error == "HTTP 500"


def test_an_endpoint_failing_for_a_day_is_disabled_with_the_reason_and_gets_nothing_more(app, failing_delivery):
    endpoint_id, delivery_id = failing_delivery
    with transaction():
        db.session.get(EventEndpoint, endpoint_id).failing_since = utcnow() - DISABLE_AFTER - timedelta(minutes=1)
    assert attempt_delivery(delivery_id) is DeliveryOutcome.RETRYING
    endpoint = db.session.get(EventEndpoint, endpoint_id)
    assert not endpoint.active and endpoint.disabled_at is not None
    assert "24 hours" in endpoint.disabled_reason and "HTTP 500" in endpoint.disabled_reason
    with transaction():
        db.session.get(EventDelivery, delivery_id).next_attempt_at = utcnow()
    assert claim_due_deliveries(10) == []  # a disabled endpoint's deliveries wait



def test_a_disabled_endpoints_reason_shows_in_the_viewers_language(app, failing_delivery):
    endpoint_id, delivery_id = failing_delivery
    with transaction():
        db.session.get(EventEndpoint, endpoint_id).failing_since = utcnow() - DISABLE_AFTER - timedelta(minutes=1)
    attempt_delivery(delivery_id)
    client = logged_in_client(app, ADMIN_EMAIL)
    english = client.get(f"/admin/events/{endpoint_id}").get_data(as_text=True)
    assert "Disabled automatically: every attempt failed since" in english and "got HTTP 500" in english
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "ru-RU,ru;q=0.9"
    for path in ("/admin/events", f"/admin/events/{endpoint_id}"):
        page = client.get(path).get_data(as_text=True)
        assert "Отключён автоматически: все попытки с" in page and "получила HTTP 500" in page
        assert "Disabled automatically" not in page

def test_a_success_ends_the_failing_streak(app, failing_delivery, receiver):
    endpoint_id, delivery_id = failing_delivery
    attempt_delivery(delivery_id)
    assert db.session.get(EventEndpoint, endpoint_id).failing_since is not None
    receiver.answer = 200
    assert attempt_delivery(delivery_id) is DeliveryOutcome.DELIVERED
    assert db.session.get(EventEndpoint, endpoint_id).failing_since is None


def test_a_later_campaign_event_waits_for_the_earlier_one_to_the_same_endpoint(app, admin, owner, receiver):
    make_endpoint(admin, receiver.url)
    campaign = create_started_campaign(owner, 2)
    pause_campaign(fresh_campaign(campaign.id), owner)
    started, paused = db.session.scalars(select(EventDelivery.id).order_by(EventDelivery.id)).all()
    assert claim_due_deliveries(10) == [started]  # paused waits while started is pending
    assert claim_due_deliveries(10) == []


def test_an_event_committed_while_redis_is_down_is_delivered_by_the_sweep_once_redis_is_back(
        app_with_own_redis, own_redis, admin, receiver, log_records):
    from mailadmin.jobs.events import sweep_due_events
    from mailadmin.queue.events import DELIVERY_QUEUED_KEY

    _, receiver.secret = make_endpoint(admin, receiver.url)
    own_redis.stop()
    with transaction():  # the change commits; asking for a run fails and is only logged
        suppress("gone@example.com", REASON_UNSUBSCRIBED, source=SOURCE_UNSUBSCRIBE)
    assert [r for r in log_records if r["message"].startswith("Events delivery not queued (Redis unavailable)")]
    assert db.session.scalar(select(EventDelivery.status)) == DeliveryStatus.PENDING

    own_redis.start()
    assert sweep_due_events()
    from mailadmin.extensions import get_redis

    assert get_redis().exists(DELIVERY_QUEUED_KEY)
    assert run_queued_jobs(own_redis.url)
    assert receiver.types() == ["contact.unsubscribed"]
    db.session.expire_all()
    assert db.session.scalar(select(EventDelivery.status)) == DeliveryStatus.DELIVERED



def test_erasing_a_person_replaces_their_address_in_the_events_out(app, admin, receiver):
    from mailadmin.services.privacy import erase_person

    make_endpoint(admin, receiver.url)
    with transaction():
        suppress("gone@example.com", REASON_UNSUBSCRIBED, source=SOURCE_UNSUBSCRIBE)
    erase_person("gone@example.com", admin)
    [event] = events_of("contact.unsubscribed")
    assert "gone@example.com" not in str(event.payload)
    assert event.payload["data"]["email"].startswith("erased:")


def test_a_persons_data_lists_the_events_out_that_carry_their_address(app, admin, receiver):
    from mailadmin.services.person_export import export_person

    make_endpoint(admin, receiver.url)
    with transaction():
        suppress("gone@example.com", REASON_UNSUBSCRIBED, source=SOURCE_UNSUBSCRIBE)
    [event] = export_person("gone@example.com", admin)["events_out"]
    assert event["type"] == "contact.unsubscribed" and event["data"]["email"] == "gone@example.com"
