"""The send engine under faults, with real `python worker.py` processes (RQ HerokuWorker, forked work
horses), the real scheduler process, real Redis, real SMTP (CaptureSMTP) and the real database.

Every wait has a deadline; each test keeps its campaign small and its slices short.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta

import pytest
import redis
from sqlalchemy import select

from mailadmin.extensions import db
from mailadmin.jobs.send.tokens import most_handed_out
from mailadmin.limits.rate_limiter import RATE_LIMIT_KEY
from mailadmin.models import Recipient
from mailadmin.queue.dispatch import continuation_time, scheduled_continuation_at
from mailadmin.services import campaigns as service
from tests.factories import create_started_campaign, fresh_campaign, recipient_statuses
from tests.support.engine import (
    assert_nobody_twice,
    assert_within_the_crash_bound,
    fast_engine,
    no_live_claims,
    wait_finished,
)
from tests.support.env import with_env
from tests.support.waiting import wait_until

FAST = fast_engine(1, 3)


@pytest.fixture(autouse=True)
def _fast_engine(app_env) -> None:
    """Short slices and small batches for every test here; `with_env` overrides come on top."""
    app_env.update(FAST)


@with_env(MAILER_SEND_BATCH_SIZE="10")
def test_two_worker_processes_send_1000_recipients_exactly_once(engine_env, app, smtp, owner, engine_processes):
    first = engine_processes.worker()
    second = engine_processes.worker()
    campaign = create_started_campaign(owner, 1000)

    current = wait_finished(campaign.id, timeout=60)

    assert_nobody_twice(smtp)
    assert len(smtp.recipients()) == 1000
    assert recipient_statuses(campaign.id) == {"sent": 1000}
    assert (current.sent_count, current.failed_count, current.unknown_count, current.recipients_total) == (
        1000, 0, 0, 1000)
    assert first.records_with("Email sent successfully") and second.records_with("Email sent successfully")


@with_env(MAILER_STALE_CLAIM_SECONDS="3")
def test_sigkill_mid_campaign_leaves_at_most_one_batch_unknown_and_sends_nobody_twice(
    engine_env, app, smtp, owner, engine_processes
):
    smtp.delay_per_message(0.02)
    doomed = engine_processes.worker()
    campaign = create_started_campaign(owner, 150)
    smtp.wait_for(30, timeout=20)

    doomed.kill_hard()
    engine_processes.worker()
    engine_processes.scheduler(recovery_interval=1.0)  # sweeps stale claims, re-enqueues the campaign
    current = wait_finished(campaign.id, timeout=30)

    assert_within_the_crash_bound(smtp, current, app.config["SETTINGS"])


@with_env(MAILER_SEND_BATCH_SIZE="50", MAILER_SMTP_CONNECTIONS="4", MAILER_SEND_SLICE_SECONDS="30")
def test_sigkill_of_3_workers_with_4_connections_each_leaves_unknown_only_what_was_handed_over(
    engine_env, app, smtp, owner, engine_processes
):
    smtp.delay_per_message(0.05)
    doomed = [engine_processes.worker() for _ in range(3)]
    campaign = create_started_campaign(owner, 900)
    # Every worker's slice sending on its four connections.
    wait_until(lambda: smtp.unanswered >= 10 and len(smtp.messages) >= 150, 30, 0.01, "all three workers sending")

    for process in doomed:
        process.kill_hard()
    in_flight_at_kill = smtp.unanswered
    claimed_at_kill = recipient_statuses(campaign.id).get("sending", 0)
    smtp.delay_per_message(0)
    engine_processes.worker()
    engine_processes.scheduler(recovery_interval=1.0)
    current = wait_finished(campaign.id, timeout=60)

    assert_nobody_twice(smtp)
    statuses = recipient_statuses(campaign.id)
    assert set(statuses) <= {"sent", "unknown"} and sum(statuses.values()) == 900  # nobody lost
    unknown = statuses.get("unknown", 0)
    # Only messages handed to a connection and without a reported verdict: at most
    # `most_handed_out` (4 a connection: one awaiting its verdict, one written with that body, two
    # queued behind) and the verdicts since the last hand-out (one a connection), per killed job;
    # without the hand-over record, every claim (a batch and more each).
    settings = app.config["SETTINGS"]
    in_hand = most_handed_out(settings.smtp_connections, settings.send_batch_size) + settings.smtp_connections
    assert unknown <= 3 * in_hand < claimed_at_kill, (unknown, claimed_at_kill)
    assert (current.sent_count, current.unknown_count) == (statuses["sent"], unknown)
    sent = set(db.session.scalars(select(Recipient.email).where(
        Recipient.campaign_id == campaign.id, Recipient.status == "sent")))
    assert all(smtp.count_for(address) == 1 for address in sent)
    delivered = sum(smtp.count_for(address) for address in db.session.scalars(select(Recipient.email).where(
        Recipient.campaign_id == campaign.id, Recipient.status == "unknown")))
    print(f"SIGKILL 3 workers x 4 connections: {claimed_at_kill} claimed at the kill, {unknown} unknown "
          f"({delivered} of them delivered, {in_flight_at_kill} transactions open at the relay)")


def test_sigterm_mid_campaign_exits_within_10s_and_another_worker_completes_it(
    engine_env, app, smtp, owner, engine_processes
):
    smtp.delay_per_message(0.02)
    leaving = engine_processes.worker()
    campaign = create_started_campaign(owner, 150)
    smtp.wait_for(30, timeout=20)

    leaving.terminate()
    stopped_at = time.monotonic()
    exit_code = leaving.wait(10)

    assert exit_code == 0, leaving.log_text()[-3000:]
    assert time.monotonic() - stopped_at < 10
    assert fresh_campaign(campaign.id).status != "finished"
    engine_processes.worker()
    current = wait_finished(campaign.id)
    assert_nobody_twice(smtp)
    assert recipient_statuses(campaign.id) == {"sent": 150}
    assert (current.sent_count, current.unknown_count) == (150, 0)


@with_env(MAILER_SMTP_MAX_PER_HOUR="20")
def test_quota_of_20_with_three_workers_sends_exactly_20_then_defers_until_a_token_frees(
    engine_env, app, smtp, owner, engine_processes
):
    for _ in range(3):
        engine_processes.worker()
    campaign = create_started_campaign(owner, 60)

    wait_until(lambda: fresh_campaign(campaign.id).status == "deferred", 20, 0.1, "the rate-limit deferral")
    wait_until(lambda: no_live_claims(campaign.id), 10, 0.1, "the slices to stop")

    assert len(smtp.messages) == 20
    assert recipient_statuses(campaign.id) == {"sent": 20, "pending": 40}
    current = fresh_campaign(campaign.id)
    assert (current.queue.defer_reason, current.sent_count) == ("rate_limit", 20)
    connection = redis.Redis.from_url(engine_env["REDIS_URL"])
    oldest_us = int(connection.zrange(RATE_LIMIT_KEY, 0, 0, withscores=True)[0][1])
    frees_at = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=oldest_us) + timedelta(hours=1)
    assert connection.zcard(RATE_LIMIT_KEY) == 20
    assert current.queue.deferred_until == frees_at
    assert scheduled_continuation_at(campaign.id) == continuation_time(frees_at)
    assert scheduled_continuation_at(campaign.id) - frees_at < timedelta(seconds=1)
    assert math.isclose((frees_at - datetime.now(UTC)).total_seconds(), 3600, abs_tol=30)


@with_env(MAILER_STALE_CLAIM_SECONDS="3")
def test_redis_stopped_mid_send_fails_open_and_nothing_is_lost_when_it_returns(
    engine_env, private_redis, app, smtp, owner, engine_processes
):
    smtp.delay_per_message(0.03)
    first = engine_processes.worker()
    campaign = create_started_campaign(owner, 90)
    smtp.wait_for(10, timeout=20)

    private_redis.stop()
    at_stop = len(smtp.messages)

    assert smtp.wait_for(at_stop + 5, timeout=10), "sending did not continue without Redis"
    wait_until(lambda: no_live_claims(campaign.id), 15, 0.1, "the slice to end while Redis is down")
    errors = first.records_with("Error reserving rate limit token (Redis unavailable)")
    assert errors and errors[0]["level"] == "ERROR" and errors[0]["policy"] == "fail_open"

    private_redis.start()
    engine_processes.worker()
    engine_processes.scheduler(recovery_interval=1.0)
    current = wait_finished(campaign.id, timeout=30)

    assert_nobody_twice(smtp)
    assert recipient_statuses(campaign.id) == {"sent": 90}
    assert (current.sent_count, current.unknown_count) == (90, 0)


@with_env(MAILER_SEND_SLICE_SECONDS="5")
def test_pause_mid_campaign_stops_within_one_message_and_resume_sends_nobody_twice(
    engine_env, app, smtp, owner, admin, engine_processes
):
    smtp.delay_per_message(0.1)
    engine_processes.worker()
    campaign = create_started_campaign(owner, 40)
    smtp.wait_for(5, timeout=20)

    service.pause_campaign(fresh_campaign(campaign.id), admin)
    at_pause = len(smtp.messages)
    wait_until(lambda: no_live_claims(campaign.id), 10, 0.05, "the slice to stop")

    # Only the messages in flight at the pause (one per connection) may still arrive.
    assert len(smtp.messages) - at_pause <= app.config["SETTINGS"].smtp_connections
    paused = fresh_campaign(campaign.id)
    assert paused.status == "paused" and paused.sent_count == len(smtp.messages)

    smtp.delay_per_message(0)
    service.resume_campaign(paused, admin)
    current = wait_finished(campaign.id)
    assert_nobody_twice(smtp)
    assert len(smtp.recipients()) == 40 and current.sent_count == 40
