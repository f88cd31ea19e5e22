"""`/metrics`: the token, the counters the send path writes to Redis inside its settle calls, the
webhooks' and bounces' counters, the gauges, and a scrape promtool accepts."""

from __future__ import annotations

import base64
import time

import pytest
import redis as redis_client

from mailadmin.counters import SENT, TALLY, count_event_delivery, flush
from mailadmin.extensions import SEND_QUEUE, get_redis
from mailadmin.limits.send_pace import reserve_send_tokens, settle_send_tokens
from mailadmin.ops.rq_state import RQ_QUEUE_KEY_PREFIX, SCHEDULED_JOBS_KEY, SCHEDULER_INSTANCE_KEY_PREFIX
from mailadmin.services import sending_switch
from tests.factories import create_campaign, create_started_campaign, fresh_campaign, sent_campaign
from tests.support.bounces import postmark_bounce
from tests.support.env import with_env
from tests.support.jobs import run_queued_jobs
from tests.support.prometheus import METRICS_TOKEN, promtool, value

AUTH = {"Authorization": f"Bearer {METRICS_TOKEN}"}
POSTMARK_SECRET = "postmark-" + "p" * 24
metrics_on = with_env(MAILER_METRICS_TOKEN=METRICS_TOKEN)


@pytest.fixture(autouse=True)
def _empty_tally():
    TALLY.drain()
    yield
    TALLY.drain()


def scrape(client) -> str:
    response = client.get("/metrics", headers=AUTH)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_data(as_text=True)


def test_without_a_token_the_endpoint_does_not_exist_and_nothing_is_counted(client):
    response = client.get("/metrics", headers=AUTH)

    assert response.status_code == 404
    assert response.mimetype == "application/problem+json" and response.json["status"] == 404
    count_event_delivery("delivered")
    assert flush(get_redis())
    assert get_redis().keys("mailadmin:metrics:*") == [] and not TALLY


@metrics_on
def test_a_missing_or_wrong_token_is_refused_with_problem_details(engine_env, client):
    for headers in ({}, {"Authorization": "Bearer wrong-token-wrong-token"}, {"Authorization": f"Basic {METRICS_TOKEN}"}):
        response = client.get("/metrics", headers=headers)
        assert response.status_code == 401
        assert response.mimetype == "application/problem+json" and response.json["status"] == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")

    response = client.get("/metrics", headers=AUTH)
    assert response.status_code == 200 and response.mimetype == "text/plain"
    assert "version=" in response.headers["Content-Type"]


@metrics_on
def test_a_sent_campaign_is_counted_by_the_settle_calls_and_the_jobs_end(engine_env, app, smtp, owner):
    campaign = create_started_campaign(owner, 45)

    run_queued_jobs(engine_env["REDIS_URL"])

    assert fresh_campaign(campaign.id).sent_count == 45
    # No flush yet: the token batches' settle scripts carried the counts of what was collected before them...
    carried = int(get_redis().hget(SENT.key, "") or 0)
    assert 0 < carried <= 45
    # ...and the rest is written once at the job's end (SendWorker.perform_job), not per message.
    assert flush(get_redis())
    text = scrape(app.test_client())
    assert value(text, "mailadmin_messages_sent_total") == 45
    assert value(text, "mailadmin_smtp_send_duration_seconds_count") == 45
    assert value(text, "mailadmin_smtp_send_duration_seconds_bucket", le="+Inf") == 45
    assert value(text, "mailadmin_messages_failed_total", **{"class": "permanent"}) == 0
    assert value(text, "mailadmin_campaigns", status="finished") == 1
    assert value(text, "mailadmin_recipients_pending") == 0
    assert value(text, "mailadmin_quota_used_messages") == 45
    assert value(text, "mailadmin_redis_up") == 1 and value(text, "mailadmin_database_up") == 1


@metrics_on
def test_refusals_transient_errors_deferrals_and_the_breaker_are_counted(engine_env, app, smtp, owner):
    smtp.reply_with(550, "5.1.1 no such user", stage="rcpt")
    create_started_campaign(owner, 3)
    run_queued_jobs(engine_env["REDIS_URL"])
    smtp.reset()
    smtp.reply_with(451, stage="rcpt")
    create_started_campaign(owner, ["carol@example.net", "dave@example.net"])  # not the suppressed ones
    run_queued_jobs(engine_env["REDIS_URL"])
    flush(get_redis())  # what the job's end writes in a worker (the deferral follows the last settle)

    text = scrape(app.test_client())
    assert value(text, "mailadmin_messages_failed_total", **{"class": "permanent"}) == 3
    assert value(text, "mailadmin_messages_failed_total", **{"class": "transient"}) == 1
    assert value(text, "mailadmin_campaign_deferrals_total", reason="transient_error") == 1
    assert value(text, "mailadmin_campaigns", status="deferred") == 1
    assert value(text, "mailadmin_recipients_pending") == 2


@with_env(MAILER_METRICS_TOKEN=METRICS_TOKEN, MAILER_WEBHOOK_POSTMARK_SECRET=POSTMARK_SECRET)
def test_webhooks_and_bounces_are_counted_by_provider_outcome_and_source(engine_env, app, make_user):
    sent_campaign(make_user("owner@example.com"), ["alice@example.com"])
    client = app.test_client()
    good = {"Authorization": "Basic " + base64.b64encode(f"postmark:{POSTMARK_SECRET}".encode()).decode()}

    bounce = postmark_bounce("alice@example.com")
    assert client.post("/webhooks/postmark", json=bounce, headers=good).status_code == 200
    assert client.post("/webhooks/postmark", json=bounce, headers=good).status_code == 200  # a redelivery
    assert client.post("/webhooks/postmark", json=bounce).status_code == 401
    assert client.post("/webhooks/sendgrid", json=[]).status_code == 404

    text = scrape(client)
    webhooks = "mailadmin_webhooks_received_total"
    assert value(text, webhooks, provider="postmark", outcome="applied") == 1
    assert value(text, webhooks, provider="postmark", outcome="already_applied") == 1
    assert value(text, webhooks, provider="postmark", outcome="refused") == 1
    assert value(text, webhooks, provider="sendgrid", outcome="not_configured") == 1
    assert value(text, "mailadmin_bounces_total", source="postmark", type="hard") == 1
    assert value(text, "mailadmin_complaints_total", source="postmark") == 0


@metrics_on
def test_events_out_deliveries_are_counted_by_outcome(engine_env, app):
    count_event_delivery("delivered")
    count_event_delivery("delivered")
    count_event_delivery("given_up")
    with pytest.raises(ValueError):
        count_event_delivery("https://hooks.example.com/x")  # never an unbounded label
    assert flush(get_redis())

    text = scrape(app.test_client())
    assert value(text, "mailadmin_event_deliveries_total", outcome="delivered") == 2
    assert value(text, "mailadmin_event_deliveries_total", outcome="given_up") == 1
    assert value(text, "mailadmin_event_deliveries_total", outcome="failed") == 0


@metrics_on
def test_a_settle_that_fails_keeps_the_counts_for_the_next_write(engine_env, app):
    batch = reserve_send_tokens(get_redis(), 1, 100)
    count_event_delivery("failed")
    closed = redis_client.Redis(host="127.0.0.1", port=1)  # nothing listens there

    settle_send_tokens(closed, batch)
    assert TALLY
    settle_send_tokens(get_redis(), batch)

    assert not TALLY
    assert value(scrape(app.test_client()), "mailadmin_event_deliveries_total", outcome="failed") == 1


@metrics_on
def test_a_redis_restart_starts_the_counters_again_from_zero(engine_env, app, owner):
    count_event_delivery("delivered")
    flush(get_redis())
    get_redis().flushdb()  # what a restart without persistence leaves

    text = scrape(app.test_client())
    assert value(text, "mailadmin_event_deliveries_total", outcome="delivered") == 0
    assert value(text, "mailadmin_messages_sent_total") == 0


@metrics_on
def test_the_scrape_passes_promtool_and_names_no_campaign_or_address(engine_env, app, smtp, owner):
    create_campaign(owner, 3, name="Secret launch")
    create_started_campaign(owner, 5)
    run_queued_jobs(engine_env["REDIS_URL"])
    text = scrape(app.test_client())

    checked = promtool("check", "metrics", stdin=text)

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Secret launch" not in text and "@" not in text and "campaign_id" not in text


@with_env(MAILER_METRICS_TOKEN=METRICS_TOKEN, MAILER_SMTP_MAX_PER_HOUR="3")
def test_the_gauges_show_the_quota_queues_scheduler_overdue_continuations_and_the_switch(engine_env, app, admin):
    redis = get_redis()
    reserve_send_tokens(redis, 3, 3)  # the hour's quota used up
    redis.rpush(RQ_QUEUE_KEY_PREFIX + SEND_QUEUE, "job-1", "job-2")
    redis.hset(SCHEDULER_INSTANCE_KEY_PREFIX + "alive", "birth", time.time())
    redis.hset(SCHEDULER_INSTANCE_KEY_PREFIX + "gone", mapping={"birth": time.time(), "death": time.time()})
    redis.zadd(SCHEDULED_JOBS_KEY, {"campaign-7-continuation": time.time() - 600})
    sending_switch.set_sending_paused(True, admin)

    text = scrape(app.test_client())

    assert value(text, "mailadmin_quota_used_messages") == 3 and value(text, "mailadmin_quota_limit_messages") == 3
    assert 3590 < value(text, "mailadmin_quota_next_token_seconds") <= 3600
    assert value(text, "mailadmin_queue_jobs", queue=SEND_QUEUE) == 2
    assert value(text, "mailadmin_scheduler_alive") == 1
    assert 595 < value(text, "mailadmin_continuation_overdue_seconds") < 700
    assert value(text, "mailadmin_sending_switched_off") == 1
    assert value(text, "mailadmin_workers_live") == 0
    redis.delete(SCHEDULER_INSTANCE_KEY_PREFIX + "alive")
    assert value(scrape(app.test_client()), "mailadmin_scheduler_alive") == 0
