"""Sending over several pipelined connections, with real worker processes (SPEC "Sending fast and politely").

The per-second cap is checked on the SMTP server's own clock; pause and SIGKILL with ten
connections busy; a relay that does not offer PIPELINING.
"""

from __future__ import annotations

import pytest

from mailadmin.services import campaigns
from tests.factories import create_started_campaign, fresh_campaign, recipient_statuses
from tests.support.engine import (
    assert_nobody_twice,
    assert_within_the_crash_bound,
    fast_engine,
    no_live_claims,
    wait_finished,
)
from tests.support.env import with_env
from tests.support.tcp_proxy import TcpProxy
from tests.support.waiting import wait_until

TEN_CONNECTIONS = fast_engine(5, 5, MAILER_SMTP_CONNECTIONS="10")


@pytest.fixture(autouse=True)
def _ten_connections(app_env) -> None:
    """Ten connections, small batches and short slices for every test here; `with_env` comes on top."""
    app_env.update(TEN_CONNECTIONS)


def most_in_one_second(moments: list[float]) -> int:
    """The largest number of `moments` inside any half-open one-second window."""
    moments = sorted(moments)
    most, first = 0, 0
    for last, moment in enumerate(moments):
        while moment - moments[first] >= 1.0:
            first += 1
        most = max(most, last - first + 1)
    return most


@with_env(MAILER_SMTP_MAX_PER_SECOND="14")
def test_two_workers_never_let_15_messages_into_one_second_at_the_smtp_server(
    engine_env, app, smtp, owner, engine_processes
):
    engine_processes.worker()
    engine_processes.worker()
    campaign = create_started_campaign(owner, 70)

    current = wait_finished(campaign.id)

    assert current.sent_count == 70
    assert_nobody_twice(smtp)
    received = [message.received_at for message in smtp.messages]  # the server's clock
    assert most_in_one_second(received) <= 14
    assert most_in_one_second(smtp.mail_times) <= 14
    # Paced, not starved: 70 messages at ~12.6 per second take about five and a half seconds.
    assert max(received) - min(received) < 15


def test_pause_with_ten_connections_busy_stops_every_connection_before_its_next_message(
    app, smtp, owner, admin, engine_processes
):
    smtp.delay_per_message(1.0)  # every connection waits a second for each message's final reply
    # "Began" is counted on the wire: a connection writes a message's MAIL FROM together with the
    # previous body, and the server reads it only after answering that body a second later.
    wire = TcpProxy("127.0.0.1", smtp.port, watch=b"MAIL FROM:").start()
    engine_processes.worker(SMTP_URL=f"smtp://127.0.0.1:{wire.port}")
    campaign = create_started_campaign(owner, 60)
    # After the first reply (slow start) all ten connections open: wait until ten messages are in flight.
    wait_until(lambda: smtp.unanswered >= 10, 30, 0.01, "ten messages in flight")

    campaigns.pause_campaign(fresh_campaign(campaign.id), admin)
    started_at_pause = wire.seen
    wait_until(lambda: no_live_claims(campaign.id), 20, 0.05, "the slice to stop")

    assert wire.seen == started_at_pause  # no connection began another message
    assert len(smtp.mail_times) == started_at_pause
    # Those whose body was out were delivered; a message whose envelope had gone out with the
    # previous body but not its own body yet was taken back (the connection closed in its DATA):
    # at most one per connection.
    delivered = len(smtp.messages)
    assert started_at_pause - 10 <= delivered <= started_at_pause
    paused = fresh_campaign(campaign.id)
    assert paused.status == "paused" and paused.sent_count == delivered  # ... and recorded as sent
    assert recipient_statuses(campaign.id) == {"sent": delivered, "pending": 60 - delivered}

    smtp.delay_per_message(0)
    campaigns.resume_campaign(paused, admin)
    assert wait_finished(campaign.id).sent_count == 60
    assert_nobody_twice(smtp)
    wire.stop()


@with_env(MAILER_STALE_CLAIM_SECONDS="3")
def test_sigkill_with_ten_connections_busy_leaves_at_most_in_flight_plus_one_batch_unknown(
    engine_env, app, smtp, owner, engine_processes
):
    smtp.delay_per_message(0.2)
    doomed = engine_processes.worker()
    campaign = create_started_campaign(owner, 150)
    wait_until(lambda: smtp.unanswered >= 10, 30, 0.01, "ten messages in flight")

    doomed.kill_hard()
    smtp.delay_per_message(0)
    engine_processes.worker()
    engine_processes.scheduler(recovery_interval=1.0)  # sweeps stale claims, re-enqueues the campaign
    current = wait_finished(campaign.id)

    assert_within_the_crash_bound(smtp, current, app.config["SETTINGS"])


def test_a_relay_without_pipelining_still_gets_every_message_once(app, smtp, owner, engine_processes):
    smtp.pipelining = False
    try:
        engine_processes.worker()
        campaign = create_started_campaign(owner, 120)

        current = wait_finished(campaign.id)
    finally:
        smtp.pipelining = True

    assert current.sent_count == 120
    assert len(smtp.recipients()) == 120
    assert_nobody_twice(smtp)
