"""A slice's SMTP connections (one thread each) and the stop signal, without a database.

The connections get a recording fake transport; the stop signal runs on the test Redis.
"""

from __future__ import annotations

import threading
import time

from redis import ConnectionPool, Redis

from mailadmin.extensions import get_redis
from mailadmin.mail.connections import Delivery, SmtpConnections
from mailadmin.queue.signals import StopListener, announce_send_stop, stop_channel
from tests.support.waiting import wait_until


class RecordingTransport:
    """Records (thread name, payload) for each send; `gate` (when set) must be open for a send to finish."""

    def __init__(self, sent: list, gate: threading.Event | None = None) -> None:
        self.sent = sent
        self.gate = gate
        self.closed = False

    def send_one(self, delivery: Delivery) -> str:
        self.sent.append((threading.current_thread().name, delivery.payload))
        if self.gate is not None:
            self.gate.wait(10)
        return f"sent {delivery.payload}"

    def close(self) -> None:
        self.closed = True


def connections(count: int, sent: list, gate: threading.Event | None = None, **options) -> SmtpConnections:
    return SmtpConnections(
        count, lambda: RecordingTransport(sent, gate), lambda transport, delivery: transport.send_one(delivery), **options
    )


def results(pool: SmtpConnections) -> list:
    found = []
    while not pool.results.empty():
        found.append(pool.results.get_nowait())
    return found


def test_only_the_first_connection_sends_until_warm_up_then_all_of_them_do():
    sent: list = []
    pool = connections(4, sent)
    pool.submit([Delivery(number) for number in range(3)])
    wait_until(lambda: pool.outstanding == 0, 5, 0.01, "three deliveries")
    assert {name for name, _ in sent} == {"smtp-connection-0"}  # slow start

    gate = threading.Event()
    pool.warm_up()
    busy = connections(4, [], gate)  # a pool whose sends wait: four at once once warmed
    busy.warm_up()
    busy.submit([Delivery(number) for number in range(4)])
    wait_until(lambda: len(busy.in_flight()) == 4, 5, 0.01, "four messages in flight at once")
    gate.set()
    wait_until(lambda: busy.outstanding == 0, 5, 0.01, "the four to finish")
    for each in (pool, busy):
        each.close()
    assert sorted(results(pool)) == ["sent 0", "sent 1", "sent 2"]


def test_stop_sends_nothing_more_and_hands_back_what_was_not_begun():
    sent: list = []
    gate = threading.Event()
    pool = connections(2, sent, gate)
    pool.warm_up()
    pool.submit([Delivery(number) for number in range(10)])
    wait_until(lambda: len(pool.in_flight()) == 2, 5, 0.01, "two in flight")

    pool.stop()
    gate.set()
    wait_until(lambda: pool.outstanding == 0, 5, 0.01, "the pool to settle")
    pool.close()

    assert len(sent) == 2  # the two in flight finished; no connection began another message
    untried = []
    while not pool.untried.empty():
        untried.append(pool.untried.get_nowait().payload)
    assert sorted(untried + [payload for _, payload in sent]) == list(range(10))


def test_a_hold_keeps_every_connection_before_its_next_message_until_release():
    sent: list = []
    pool = connections(3, sent)
    pool.warm_up()
    pool.hold()
    pool.submit([Delivery(number) for number in range(5)])
    time.sleep(0.2)  # nothing may happen while held (a violation would show in `sent`)
    assert sent == []

    pool.release()
    wait_until(lambda: pool.outstanding == 0, 5, 0.01, "the five after the release")
    pool.close()
    assert len(sent) == 5


def test_a_slot_is_waited_for_and_one_reached_too_late_is_handed_back():
    sent: list = []
    # A second of lateness allowed: a busy machine may wake the connection a little after its slot.
    pool = connections(1, sent, max_lateness=1.0)
    now = time.time()
    pool.submit([Delivery("late", slot=now - 5.0), Delivery("on time", slot=now + 0.3)])
    wait_until(lambda: pool.outstanding == 0, 5, 0.01, "both deliveries")
    pool.close()

    assert [payload for _, payload in sent] == ["on time"]
    assert results(pool) == ["sent on time"]
    assert time.time() >= now + 0.3
    assert pool.untried.get_nowait().payload == "late"


def test_an_external_stop_event_stops_the_connections_before_their_next_message():
    sent: list = []
    sigterm = threading.Event()
    gate = threading.Event()
    pool = connections(1, sent, gate, also_stop_on=sigterm)
    pool.submit([Delivery(number) for number in range(3)])
    wait_until(lambda: len(pool.in_flight()) == 1, 5, 0.01, "one in flight")

    sigterm.set()
    gate.set()
    wait_until(lambda: pool.outstanding == 0, 5, 0.01, "the pool to settle")
    pool.close()
    assert [payload for _, payload in sent] == [0]


def test_the_stop_signal_reaches_a_listener_for_its_campaign_or_for_all(app):
    heard: list[str] = []
    listener = StopListener(get_redis(), 7, lambda: heard.append("heard")).start()
    try:
        announce_send_stop(get_redis(), 8)  # another campaign: not for us
        announce_send_stop(get_redis(), 7)
        wait_until(lambda: len(heard) == 1, 5, 0.01, "the campaign's own stop")
        announce_send_stop(get_redis(), None)  # the global switch
        wait_until(lambda: len(heard) == 2, 5, 0.01, "the global stop")
    finally:
        listener.close()
    assert heard == ["heard", "heard"]


def test_a_stop_announced_in_another_redis_database_of_the_same_server_reaches_no_slice_of_ours(own_redis, app):
    """Two installs sharing one redis-server on different indexes do not stop each other's slices
    (pub/sub ignores the index, so the channel names it). A server of the test's own: nobody else
    subscribes there."""
    ours = get_redis()
    index = ours.connection_pool.connection_kwargs.get("db", 0)
    neighbour = Redis(connection_pool=ConnectionPool(**{**ours.connection_pool.connection_kwargs, "db": (index + 1) % 16}))
    heard: list[str] = []
    listener = StopListener(ours, 7, lambda: heard.append("heard")).start()
    try:
        subscribers = dict(ours.pubsub_numsub(stop_channel(ours), stop_channel(neighbour)))
        assert subscribers == {stop_channel(ours).encode(): 1, stop_channel(neighbour).encode(): 0}
        announce_send_stop(ours, 7)
        wait_until(lambda: heard, 5, 0.01, "our own stop")
    finally:
        listener.close()
        neighbour.close()
