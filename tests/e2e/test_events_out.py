"""Events out end to end: real worker and scheduler processes, real SMTP, real Redis and database, and a
real HTTP receiver in the test that verifies every signature with the `standardwebhooks` library and
deduplicates by `webhook-id`, as the CRM would.

The receiver answers 500 for a while, then is down (connection refused), then comes back: every event of
the campaign (started, paused, resumed, finished), of a recipient refused for good, of its bounces, complaints and unsubscribes arrives
exactly once after deduplication, campaign events in order, and a rolled-back change sends nothing.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from mailadmin.extensions import db
from mailadmin.mail.bounces import BounceReport
from mailadmin.models.events import DeliveryStatus, EventDelivery, OutboxEvent
from mailadmin.models.suppression import REASON_UNSUBSCRIBED, SOURCE_UNSUBSCRIBE
from mailadmin.services import campaigns as campaign_service
from mailadmin.services.audiences.preferences import unsubscribe_from_everything
from mailadmin.services.bounces import record_bounce
from mailadmin.services.events import endpoints as endpoint_service
from mailadmin.services.suppressions import suppress
from mailadmin.services.transaction import transaction
from tests.factories import create_started_campaign, fresh_campaign, recipient_address, recipient_of
from tests.support.engine import fast_engine, wait_finished
from tests.support.receiver import EventReceiver
from tests.support.waiting import wait_until

ALL_TYPES = ("contact.subscribed", "contact.unsubscribed", "recipient.failed", "recipient.bounced", "recipient.complained",
             "campaign.started", "campaign.paused", "campaign.resumed", "campaign.finished", "campaign.cancelled")


@pytest.fixture(autouse=True)
def _fast(app_env) -> None:
    # Retries after 1, 2, 4, 8 s... instead of 5, 10, 20 s...: the same schedule, shorter.
    app_env.update(fast_engine(1, 3, MAILER_EVENTS_RETRY_BASE_SECONDS="1", MAILER_EVENTS_TIMEOUT_SECONDS="2"))


@pytest.fixture
def receiver():
    started = EventReceiver(answer=500).start()
    yield started
    started.stop()


def _attempts_with_error(prefix: str) -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count()).select_from(EventDelivery).where(
        EventDelivery.last_error.like(f"{prefix}%")))


def _all_delivered() -> bool:
    db.session.expire_all()
    left = db.session.scalar(select(func.count()).select_from(EventDelivery).where(
        EventDelivery.status != DeliveryStatus.DELIVERED))
    return left == 0


def test_a_receiver_that_fails_then_is_down_gets_every_event_once_in_order(app, smtp, owner, admin, receiver,
                                                                           engine_processes):
    _, receiver.secret = endpoint_service.create_endpoint(
        endpoint_service.EndpointFields(receiver.url, "CRM", ALL_TYPES), admin)
    engine_processes.worker()
    engine_processes.scheduler()
    smtp.delay_per_message(0.05)
    smtp.reply_for_address(recipient_address(7), 550)  # refused for good: recipient.failed
    campaign = create_started_campaign(owner, 60)
    smtp.wait_for(5, timeout=20)
    campaign_service.pause_campaign(fresh_campaign(campaign.id), owner)
    campaign_service.resume_campaign(fresh_campaign(campaign.id), owner)
    wait_finished(campaign.id, timeout=60)
    addresses = sorted(set(smtp.recipients()) - {recipient_address(7)})
    for number, address in enumerate(addresses[:3]):
        record_bounce(BounceReport(address, "hard", "ses", f"bounce-{number}", campaign_id=campaign.id))
    record_bounce(BounceReport(addresses[3], "complaint", "ses", "complaint-1", campaign_id=campaign.id))
    for address in addresses[4:6]:
        unsubscribe_from_everything(recipient_of(fresh_campaign(campaign.id), address))
    with pytest.raises(RuntimeError), transaction():  # a change rolled back: its event must never leave
        suppress("rolled-back@example.com", REASON_UNSUBSCRIBED, source=SOURCE_UNSUBSCRIBE)
        raise RuntimeError("the request failed after the change")

    wait_until(lambda: _attempts_with_error("HTTP 500") >= 3, 30, 0.2, "attempts answered 500")
    receiver.stop()  # down: connections refused
    wait_until(lambda: _attempts_with_error("no answer") >= 1, 40, 0.2, "an attempt finding the receiver down")
    receiver.answer = 204
    receiver.start()
    wait_until(_all_delivered, 90, 0.2, "every delivery delivered")

    outbox = {event.public_id: event.type for event in db.session.scalars(select(OutboxEvent))}
    assert set(receiver.events) == set(outbox)  # every committed event, after deduplication by webhook-id
    assert receiver.bad_signatures == 0
    assert len(receiver.received) > len(receiver.events)  # the failures were retried
    assert [t for t in receiver.types() if t.startswith("campaign.")] == [
        "campaign.started", "campaign.paused", "campaign.resumed", "campaign.finished"]
    assert sorted(e["data"]["email"] for e in receiver.of_type("recipient.bounced")) == addresses[:3]
    assert [e["data"]["email"] for e in receiver.of_type("recipient.complained")] == [addresses[3]]
    assert sorted(e["data"]["email"] for e in receiver.of_type("contact.unsubscribed")) == addresses[4:6]
    assert [e["data"]["email"] for e in receiver.of_type("recipient.failed")] == [recipient_address(7)]
    assert all(e["data"]["campaign_id"] == campaign.id for e in receiver.events.values())
    assert "rolled-back@example.com" not in str(receiver.received)
    assert fresh_campaign(campaign.id).sent_count == 59  # sending went on while the receiver failed


def test_a_burst_of_events_to_a_slow_receiver_does_not_hold_back_a_campaign(app, smtp, owner, admin,
                                                                              engine_processes):
    from mailadmin.models.events import EventType
    from mailadmin.services.events.recording import record_event

    receiver = EventReceiver(delay=0.2).start()  # 200 ms an event: 2,000 events take about 40 s
    try:
        endpoint, receiver.secret = endpoint_service.create_endpoint(
            endpoint_service.EndpointFields(receiver.url, "CRM", ALL_TYPES), admin)
        with transaction():
            for number in range(2000):
                record_event(EventType.RECIPIENT_BOUNCED, {"email": f"b{number}@example.com"})
        engine_processes.worker()  # ONE worker for both queues
        wait_until(lambda: len(receiver.events) >= 20, 30, 0.1, "the burst being delivered")

        campaign = create_started_campaign(owner, 20)
        wait_finished(campaign.id, timeout=30)  # a send slice waits for one events run at most (≈ 10 s)
        assert len(receiver.events) < 1500  # the campaign did not wait for the burst to drain
        assert len(smtp.recipients()) == 20
    finally:
        receiver.stop()


def test_a_worker_of_its_own_for_events_takes_only_the_events_queue(app, owner, admin, receiver, engine_processes,
                                                                     tmp_path):
    import sys

    from rq import Queue

    from mailadmin.extensions import EVENTS_QUEUE, SEND_QUEUE, get_redis
    from tests.support.processes import ManagedProcess

    receiver.answer = 204
    _, receiver.secret = endpoint_service.create_endpoint(
        endpoint_service.EndpointFields(receiver.url, "CRM", ALL_TYPES), admin)
    campaign = create_started_campaign(owner, 3)  # a send slice waits on the send queue, campaign.started on events
    command = [sys.executable, "worker.py", "--burst", "--queue", EVENTS_QUEUE]
    worker = ManagedProcess("events-worker", command, engine_processes._environ({}), tmp_path / "events.log").start()
    engine_processes.started.append(worker)
    assert worker.wait(60) == 0
    assert receiver.types() == ["campaign.started"]
    assert Queue(SEND_QUEUE, connection=get_redis()).count == 1  # the send slice was left to the send workers
    assert fresh_campaign(campaign.id).sent_count == 0
