"""`flask --app wsgi doctor` and the diagnosis behind it, against real processes, Redis and the database."""

from __future__ import annotations

from datetime import timedelta

import pytest
from rq import Queue
from sqlalchemy import update

from mailadmin import ops as diagnosis
from mailadmin.cli.doctor import EXIT_CRITICAL, EXIT_OK, EXIT_WARNING
from mailadmin.devtools.redis_server import EmbeddedRedis, free_port
from mailadmin.extensions import SEND_QUEUE, db, get_redis
from mailadmin.limits.send_pace import reserve_send_tokens
from mailadmin.models import Campaign, CampaignQueue, Recipient
from mailadmin.models.types import utcnow
from mailadmin.ops import CRITICAL, OK, WARNING, run_diagnosis
from mailadmin.services.campaigns import start_campaign
from tests.factories import create_campaign, fresh_campaign
from tests.support.doctor import doctor, status_of
from tests.support.jobs import run_queued_jobs


def test_doctor_with_redis_stopped_is_critical_and_names_redis(app_env, make_user):
    with EmbeddedRedis() as private_redis:
        from mailadmin import create_app

        app = create_app({**app_env, "REDIS_URL": private_redis.url, "TESTING": True, "SETUP_LOGGING": False})
        with app.app_context():
            private_redis.stop()
            runner = app.test_cli_runner()
            code, output = doctor(runner)
            db.session.remove()

    assert code == EXIT_CRITICAL, output
    assert status_of(output, "redis") == CRITICAL
    assert "unreachable" in output and "playbook/ONCALL.md#redis-unreachable" in output
    assert status_of(output, "database") == OK
    for key in ("queues", "workers", "scheduler", "rate_limit"):
        assert status_of(output, key) == WARNING, output  # "not checked": Redis is the critical one
    assert "Verdict: CRITICAL" in output


def test_doctor_with_the_database_unreachable_is_critical_and_still_checks_redis(app_env):
    from mailadmin import create_app

    url = f"postgresql://nobody@127.0.0.1:{free_port()}/nothing"
    app = create_app({**app_env, "DATABASE_URL": url, "TESTING": True, "SETUP_LOGGING": False})
    with app.app_context():
        code, output = doctor(app.test_cli_runner())

    assert code == EXIT_CRITICAL, output
    assert status_of(output, "database") == CRITICAL and "unreachable or broken: OperationalError" in output
    assert "nobody@" not in output  # never the connection string
    assert status_of(output, "redis") == OK
    assert status_of(output, "queues") == OK
    for key in ("sending_switch", "campaigns", "unknown", "breaker"):
        assert status_of(output, key) == WARNING and "not checked: database unreachable" in output


@pytest.fixture
def breaker_after_one_error(app_env):
    app_env["MAILER_CIRCUIT_BREAKER_THRESHOLD"] = "1"


def test_doctor_reports_a_breaker_tripped_campaign(breaker_after_one_error, app, app_env, runner, smtp, owner):
    campaign = create_campaign(owner, 3, name="Breaker")
    smtp.reply_with(451, "4.3.0 mailbox busy", times=5)
    start_campaign(campaign, owner, enforce_throttle=False)
    run_queued_jobs(app_env["REDIS_URL"])
    assert fresh_campaign(campaign.id).queue.defer_reason == "circuit_breaker"

    code, output = doctor(runner, "--check", "breaker", "--check", "campaigns")

    assert status_of(output, "breaker") == WARNING
    assert f"1 trip in 24 h (campaigns #{campaign.id})" in output
    assert status_of(output, "campaigns") == WARNING
    assert "paused by the circuit breaker, an admin must resume" in output
    assert "playbook/ONCALL.md#circuit_breaker-paused-after-repeated-smtp-errors" in output
    assert code == EXIT_OK  # a breaker pause is safe: it waits for a human, nothing is down
    assert doctor(runner, "--check", "breaker", "--strict")[0] == EXIT_WARNING


# --- the verdict rules, one by one ---------------------------------------------------------------


def test_a_deferred_campaign_long_past_its_time_is_overdue(app, owner):
    campaign = create_campaign(owner, 2)
    start_campaign(campaign, owner, scheduled_at=utcnow() + timedelta(minutes=5), enforce_throttle=False)
    db.session.execute(
        update(CampaignQueue).where(CampaignQueue.campaign_id == campaign.id)
        .values(deferred_until=utcnow() - timedelta(minutes=10))
    )
    db.session.commit()

    check = run_diagnosis(only=["stuck"]).check("stuck")

    assert check.status == CRITICAL
    assert f"#{campaign.id} by 10 min" in check.verdict and "continuation is still in the scheduler" in check.verdict
    assert check.playbook.anchor == diagnosis.A_SYMPTOM_SCHEDULER_DEAD


def test_a_sending_campaign_whose_job_vanished_is_stuck(app, owner):
    campaign = create_campaign(owner, 2)
    start_campaign(campaign, owner, enforce_throttle=False)
    assert run_diagnosis(only=["stuck"]).check("stuck").status == OK  # its job waits in the queue

    Queue(SEND_QUEUE, connection=get_redis()).empty()  # Redis restarted without persistence

    def stale_for(minutes: int):
        db.session.execute(
            update(CampaignQueue).where(CampaignQueue.campaign_id == campaign.id)
            .values(heartbeat_at=utcnow() - timedelta(minutes=minutes))
        )
        db.session.commit()
        return run_diagnosis(only=["stuck"]).check("stuck")

    # Stale (> MAILER_STALE_CLAIM_SECONDS): the recovery sweep is due to re-enqueue it — a warning.
    check = stale_for(3)
    assert check.status == WARNING
    assert f"#{campaign.id}: no progress for 3 min" in check.verdict and "recovery sweep" in check.verdict
    # Long after that, nothing is recovering it.
    check = stale_for(10)
    assert check.status == CRITICAL
    assert f"#{campaign.id}: no progress for 10 min" in check.verdict
    assert check.playbook.anchor == diagnosis.A_SYMPTOM_STUCK


def test_no_scheduler_is_critical_once_a_continuation_waits_for_it(app, owner):
    assert run_diagnosis(only=["scheduler"]).check("scheduler").status == WARNING  # nothing waits yet

    campaign = create_campaign(owner, 1)
    start_campaign(campaign, owner, scheduled_at=utcnow() + timedelta(hours=1), enforce_throttle=False)

    check = run_diagnosis(only=["scheduler"]).check("scheduler")
    assert check.status == CRITICAL
    assert "no rq-scheduler running" in check.verdict
    assert [j.job_id for j in check.details["scheduled"]] == [f"campaign-{campaign.id}-continuation"]


def test_a_used_up_quota_is_a_warning_with_the_next_free_token(app):
    maximum = app.config["SETTINGS"].smtp_max_per_hour
    assert reserve_send_tokens(get_redis(), maximum, maximum).granted == maximum

    check = run_diagnosis(only=["rate_limit"]).check("rate_limit")

    assert check.status == WARNING
    assert f"quota used up ({maximum}/{maximum} in the rolling hour)" in check.verdict
    assert check.details["next_free_at"] > utcnow() + timedelta(minutes=59)


def test_recipients_in_unknown_are_a_warning(app, owner):
    campaign = create_campaign(owner, 3)
    start_campaign(campaign, owner, enforce_throttle=False)
    db.session.execute(update(Recipient).where(Recipient.campaign_id == campaign.id).values(status="unknown"))
    db.session.execute(update(Campaign).where(Campaign.id == campaign.id).values(unknown_count=3))
    db.session.commit()

    check = run_diagnosis(only=["unknown"]).check("unknown")

    assert check.status == WARNING
    assert f"3 recipients in unknown (#{campaign.id}: 3)" in check.verdict


def test_the_global_switch_off_is_a_warning_naming_the_waiting_campaigns(app, owner):
    from mailadmin.services.sending_switch import set_sending_paused

    campaign = create_campaign(owner, 1)
    start_campaign(campaign, owner, enforce_throttle=False)
    set_sending_paused(True, owner)

    check = run_diagnosis(only=["sending_switch"]).check("sending_switch")

    assert check.status == WARNING
    assert "ALL SENDING IS OFF" in check.verdict and "1 campaign waiting with global_pause" in check.verdict
