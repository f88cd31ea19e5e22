"""The send engine's logic, in-process: real DB, real Redis, real SMTP (CaptureSMTP), RQ's SimpleWorker.

Time-based behaviour (deferrals, continuations, the rolling hour) is driven by injecting the clock
into the slice (`run_send_slice(..., clock=...)`), never by waiting.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from rq import Queue
from sqlalchemy import select, update

from mailadmin.extensions import SEND_QUEUE, db, get_redis
from mailadmin.jobs.continuations import ContinuationScheduler
from mailadmin.jobs.recovery import recover_stalled_campaigns
from mailadmin.jobs.send import SliceEnd, SliceOutcome, SliceReport, run_send_slice
from mailadmin.models import AuditEvent, Recipient
from mailadmin.models.campaign import CANCELLED, PAUSED, QUEUED, R_SENDING
from mailadmin.models.reasons import Reason
from mailadmin.queue.dispatch import (
    continuation_job_id,
    continuation_time,
    schedule_continuation,
    scheduled_continuation_at,
)
from mailadmin.services import campaigns as service
from mailadmin.services import delivery, sending_switch
from mailadmin.services.delivery import claim_recipients
from mailadmin.services.suppressions import is_suppressed, suppress, suppressed_among
from mailadmin.services.transitions import Transition
from tests.factories import (
    create_campaign,
    create_started_campaign,
    fresh_campaign,
    recipient_address,
    recipient_statuses,
)
from tests.support.env import with_env
from tests.support.jobs import queued_job_count, run_queued_jobs


class FakeClock:
    """A settable clock for the slice: `clock()` returns `clock.now`."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def events(records: list[dict], message: str) -> list[dict]:
    return [record["extra"] for record in records if record["message"] == message]


def now_whole_second() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


# --- start -------------------------------------------------------------------------------


def test_start_queues_the_campaign_and_one_job_without_touching_recipients(app, app_env, owner):
    campaign = create_campaign(owner, 30)

    service.start_campaign(campaign, owner, enforce_throttle=False)

    campaign = fresh_campaign(campaign.id)
    assert campaign.status == "queued"
    assert campaign.recipients_total == 30 and campaign.started_at is not None
    assert recipient_statuses(campaign.id) == {"pending": 30}
    job_ids = Queue(SEND_QUEUE, connection=get_redis()).job_ids
    assert job_ids == [campaign.queue.current_job_id]
    audit = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "campaign_started")).one()
    assert (audit.actor_id, audit.campaign_id, audit.to_status) == (owner.id, campaign.id, "queued")

    with pytest.raises(service.CampaignError) as error:
        service.start_campaign(campaign, owner, enforce_throttle=False)
    assert error.value.message == service.MSG_NOT_DRAFT


@with_env(MAILER_MAX_CAMPAIGN_RECIPIENTS="5")
def test_start_refuses_a_campaign_over_the_size_cap(engine_env, app, owner):
    campaign = create_campaign(owner, 6)

    with pytest.raises(service.CampaignError) as error:
        service.start_campaign(campaign, owner, enforce_throttle=False)

    assert error.value.message == "Campaign is too large (6 recipients). Maximum: 5. Split it into several campaigns."
    assert fresh_campaign(campaign.id).status == "draft"


@with_env(MAILER_THROTTLE_CAMPAIGN_START_PER_HOUR="2")
def test_start_refuses_an_empty_campaign_and_the_start_over_the_hourly_limit(engine_env, app, owner):
    with pytest.raises(service.CampaignError) as error:
        service.start_campaign(create_campaign(owner, 0), owner)
    assert error.value.message == service.MSG_NO_RECIPIENTS

    service.start_campaign(create_campaign(owner, 1), owner)
    service.start_campaign(create_campaign(owner, 1), owner)
    third = create_campaign(owner, 1)
    with pytest.raises(service.CampaignError) as error:
        service.start_campaign(third, owner)
    assert error.value.message == "Campaign start limit reached (2 starts per hour)."
    assert fresh_campaign(third.id).status == "draft"


def test_a_scheduled_start_waits_deferred_with_its_continuation_at_that_time(app, owner):
    campaign = create_campaign(owner, 3)
    at = datetime.now(UTC) + timedelta(hours=2, microseconds=300)

    service.start_campaign(campaign, owner, scheduled_at=at, enforce_throttle=False)

    campaign = fresh_campaign(campaign.id)
    assert (campaign.status, campaign.queue.defer_reason, campaign.queue.deferred_until) == ("deferred", "scheduled", at)
    # The continuation's job id is derived, never stored (migration 0003 dropped scheduled_job_id).
    assert get_redis().zscore("rq:scheduler:scheduled_jobs", continuation_job_id(campaign.id)) is not None
    assert scheduled_continuation_at(campaign.id) == continuation_time(at)
    assert queued_job_count(app.config["SETTINGS"].redis_url) == 0


# --- the loop ----------------------------------------------------------------------------


def test_every_recipient_gets_exactly_one_message_and_the_counters_match(app, app_env, smtp, owner, log_records):
    campaign = create_started_campaign(owner, 45, body_html="<p>Hello {{ name }}</p>")

    run_queued_jobs(app_env["REDIS_URL"])

    campaign = fresh_campaign(campaign.id)
    assert campaign.status == "finished" and not campaign.finished_with_errors
    assert (campaign.sent_count, campaign.failed_count, campaign.unknown_count) == (45, 0, 0)
    assert recipient_statuses(campaign.id) == {"sent": 45}
    received = smtp.recipients()
    assert len(received) == 45 and set(received.values()) == {1}
    message = smtp.messages[0].parsed()
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["List-Unsubscribe"].startswith("<http://mailadmin.test/u/")
    assert message.get_body(("html",)) is not None and message.get_body(("plain",)) is not None

    sent = events(log_records, "Email sent successfully")
    assert len(sent) == 45
    assert {"campaign_id", "queue_id", "recipient_id", "email_domain", "email_hash", "smtp_message_id",
            "provider", "took_ms", "rate_limit_count"} <= set(sent[0])
    assert "email" not in sent[0] and sent[0]["email_masked"].endswith("***@example.test")
    finished = events(log_records, "Campaign finished")
    assert len(finished) == 1
    assert finished[0]["totals"] == {"sent": 45, "failed": 0, "total": 45}
    assert finished[0]["campaign_status"] == "finished" and finished[0]["finished_with_errors"] is False
    assert finished[0]["duration_seconds"] >= 0


def test_a_claim_takes_exactly_one_batch_and_racing_claims_never_share_a_recipient(app, owner):
    campaign_id = create_started_campaign(owner, 203).id
    now = datetime.now(UTC)
    assert [len(claim_recipients(campaign_id, name, 10, now)) for name in ("a", "b")] == [10, 10]

    claimed: dict[str, list[int]] = {}
    errors: list[BaseException] = []

    def claim_until_empty(name: str) -> None:
        with app.app_context():
            mine = claimed.setdefault(name, [])
            try:
                start_together.wait(10)  # the four first claims race each other...
                mine.extend(claim.id for claim in claim_recipients(campaign_id, name, 7, now))
                start_together.wait(10)  # ...and nobody drains the rest before all four have one
                while batch := claim_recipients(campaign_id, name, 7, now):
                    mine.extend(claim.id for claim in batch)
            except BaseException as exc:  # reported below: a thread's exception would be lost
                errors.append(exc)
            finally:
                db.session.remove()

    start_together = threading.Barrier(4)
    threads = [threading.Thread(target=claim_until_empty, args=(f"racer-{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert errors == []
    ids = [rid for batch in claimed.values() for rid in batch]
    assert len(ids) == len(set(ids)) == 183
    assert all(len(mine) >= 7 for mine in claimed.values())  # each first claim got a whole batch
    assert recipient_statuses(campaign_id) == {"sending": 203}


@with_env(MAILER_SMTP_MAX_PER_HOUR="20")
def test_quota_defers_until_a_token_frees_and_no_rolling_hour_holds_more_than_the_limit(engine_env, app, smtp, owner):
    clock = FakeClock(now_whole_second())
    t0 = clock.now
    first = create_started_campaign(owner, [f"a{i}@example.test" for i in range(7)])
    second = create_started_campaign(owner, [f"b{i}@example.test" for i in range(50)])

    assert run_send_slice(first.id, clock=clock).outcome == SliceOutcome(SliceEnd.FINISHED)  # 7 tokens at t0
    clock.now = t0 + timedelta(minutes=20)
    report = run_send_slice(second.id, clock=clock)  # 13 more: the quota is used up
    assert (report.sent, report.outcome) == (13, SliceOutcome(SliceEnd.DEFERRED, Reason.RATE_LIMIT))
    queue = fresh_campaign(second.id).queue
    assert (queue.defer_reason, queue.deferred_until) == ("rate_limit", t0 + timedelta(hours=1))
    assert scheduled_continuation_at(second.id) == t0 + timedelta(hours=1)

    clock.now = t0 + timedelta(minutes=40)  # a stray early run does nothing
    assert run_send_slice(second.id, clock=clock).outcome == SliceOutcome(SliceEnd.SKIPPED, "not_due")

    expected_deferrals = [timedelta(minutes=80), timedelta(minutes=120), timedelta(minutes=140)]
    for wake_up in [timedelta(hours=1), *expected_deferrals[:-1]]:
        clock.now = t0 + wake_up
        report = run_send_slice(second.id, clock=clock)
        assert report.outcome == SliceOutcome(SliceEnd.DEFERRED, Reason.RATE_LIMIT)
        assert fresh_campaign(second.id).queue.deferred_until == t0 + expected_deferrals.pop(0)
    clock.now = t0 + timedelta(minutes=140)
    assert run_send_slice(second.id, clock=clock).outcome == SliceOutcome(SliceEnd.FINISHED)

    db.session.commit()
    sent_at = sorted(db.session.scalars(select(Recipient.sent_at)).all())
    assert len(sent_at) == 57 and len(smtp.messages) == 57
    for start in sent_at:
        in_window = [moment for moment in sent_at if start <= moment < start + timedelta(hours=1)]
        assert len(in_window) <= 20, f"{len(in_window)} sends in the hour from {start}"


def test_451_for_every_message_defers_each_time_and_trips_the_breaker_at_exactly_ten(
    app, smtp, owner, admin, log_records
):
    smtp.reply_with(451, stage="rcpt")
    clock = FakeClock(now_whole_second())
    campaign = create_started_campaign(owner, 4)

    for attempt in range(1, 10):
        report = run_send_slice(campaign.id, clock=clock)
        assert report.outcome == SliceOutcome(SliceEnd.DEFERRED, Reason.TRANSIENT_ERROR)
        current = fresh_campaign(campaign.id)
        assert current.status == "deferred"
        assert current.queue.defer_reason == "transient_error"
        assert current.queue.consecutive_transient_errors == attempt
        assert current.queue.deferred_until == clock.now + timedelta(minutes=5)
        assert scheduled_continuation_at(campaign.id) == clock.now + timedelta(minutes=5)
        clock.now = current.queue.deferred_until

    report = run_send_slice(campaign.id, clock=clock)

    assert report.outcome == SliceOutcome(SliceEnd.PAUSED, Reason.CIRCUIT_BREAKER)
    current = fresh_campaign(campaign.id)
    assert (current.status, current.queue.defer_reason) == ("paused", "circuit_breaker")
    assert current.queue.consecutive_transient_errors == 10
    assert current.queue.breaker_tripped_at == clock.now
    assert scheduled_continuation_at(campaign.id) is None
    assert recipient_statuses(campaign.id) == {"pending": 4}
    assert db.session.scalar(select(Recipient.attempts).where(Recipient.email == recipient_address(0))) == 10
    assert smtp.messages == []
    trip = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "circuit_breaker_tripped")).one()
    assert trip.actor_id is None and trip.campaign_id == campaign.id and trip.to_status == "paused"
    deferred = events(log_records, "Campaign deferred")
    assert [record["consecutive_errors"] for record in deferred] == list(range(1, 10))
    assert {record["defer_reason"] for record in deferred} == {"transient_error"}
    assert {"campaign_id", "queue_id", "deferred_until"} <= set(deferred[0])
    tripped = events(log_records, "Circuit breaker tripped")
    assert [(r["consecutive_errors"], r["threshold"]) for r in tripped] == [(10, 10)]
    failures = events(log_records, "Failed to send email")
    assert len(failures) == 10 and {r["error_class"] for r in failures} == {"transient"}
    assert failures[0]["smtp_code"] == 451 and failures[0]["email_masked"] == "us***@example.test"

    smtp.clear_faults()
    service.resume_campaign(current, admin)  # resume resets the counter and sends
    assert fresh_campaign(campaign.id).queue.consecutive_transient_errors == 0
    run_queued_jobs(app.config["SETTINGS"].redis_url)
    assert fresh_campaign(campaign.id).status == "finished" and len(smtp.messages) == 4


def test_a_success_between_transient_errors_resets_the_count(app, smtp, owner):
    smtp.reply_with(451, stage="mail", times=3)
    smtp.reply_for_address(recipient_address(19), 451)
    clock = FakeClock(now_whole_second())
    campaign = create_started_campaign(owner, 20)
    for attempt in (1, 2, 3):
        assert run_send_slice(campaign.id, clock=clock).outcome == SliceOutcome(SliceEnd.DEFERRED, Reason.TRANSIENT_ERROR)
        assert fresh_campaign(campaign.id).queue.consecutive_transient_errors == attempt
        clock.now += timedelta(minutes=5)

    report = run_send_slice(campaign.id, clock=clock)

    assert report.outcome == SliceOutcome(SliceEnd.DEFERRED, Reason.TRANSIENT_ERROR)
    assert fresh_campaign(campaign.id).queue.consecutive_transient_errors == 1  # not 4: the successes reset it
    # The 451 stops every connection before its next message: what another connection had not begun
    # when the 451 came goes back to pending with the refused one (how many depends on timing).
    statuses = recipient_statuses(campaign.id)
    assert statuses["sent"] == report.sent >= 16 and statuses["sent"] + statuses["pending"] == 20


def test_550_marks_the_recipient_failed_without_counting_and_suppresses_a_hard_bounce(app, app_env, smtp, owner,
                                                                                       log_records):
    smtp.reply_for_address(recipient_address(1), 550)  # "5.1.1 Mailbox unavailable"
    smtp.reply_for_address(recipient_address(2), 554, "5.7.1 Message refused as spam", stage="data")
    campaign = create_started_campaign(owner, 5)

    run_queued_jobs(app_env["REDIS_URL"])

    current = fresh_campaign(campaign.id)
    assert current.status == "finished" and current.finished_with_errors
    assert (current.sent_count, current.failed_count) == (3, 2)
    assert current.queue.consecutive_transient_errors == 0
    failed = {r.email: r for r in db.session.scalars(select(Recipient).where(Recipient.status == "failed"))}
    assert failed[recipient_address(1)].smtp_code == 550 and failed[recipient_address(2)].smtp_code == 554
    assert is_suppressed(recipient_address(1)) and not is_suppressed(recipient_address(2))
    failures = events(log_records, "Failed to send email")
    assert {(r["smtp_code"], r["error_class"]) for r in failures} == {(550, "permanent"), (554, "permanent")}
    assert all("email" not in r and r["email_masked"].startswith("us***@") for r in failures)
    assert events(log_records, "Campaign deferred") == []



def test_a_message_whose_smtp_verdict_was_lost_is_unknown_and_not_sent_again(app, app_env, smtp, owner):
    smtp.drop_connection_next("data")  # the whole message went out, the reply never came
    clock = FakeClock(now_whole_second())
    campaign = create_started_campaign(owner, 3)

    report = run_send_slice(campaign.id, clock=clock)

    assert report.outcome == SliceOutcome(SliceEnd.DEFERRED, Reason.TRANSIENT_ERROR)
    assert recipient_statuses(campaign.id) == {"unknown": 1, "pending": 2}
    clock.now += timedelta(minutes=5)
    assert run_send_slice(campaign.id, clock=clock).outcome == SliceOutcome(SliceEnd.FINISHED)
    current = fresh_campaign(campaign.id)
    assert (current.sent_count, current.unknown_count) == (2, 1)
    assert smtp.count_for(recipient_address(0)) <= 1 and smtp.count_for(recipient_address(1)) == 1


def test_suppressed_addresses_are_skipped_at_send_time(app, app_env, smtp, owner):
    campaign = create_started_campaign(owner, 4)
    suppress(recipient_address(2), "unsubscribed")

    run_queued_jobs(app_env["REDIS_URL"])

    current = fresh_campaign(campaign.id)
    assert (current.status, current.sent_count, current.skipped_count) == ("finished", 3, 1)
    assert smtp.count_for(recipient_address(2)) == 0


# --- pause, resume, cancel, global switch --------------------------------------------------


@with_env(MAILER_SMTP_MAX_PER_HOUR="3")
def test_the_scheduled_continuation_of_a_paused_campaign_does_nothing(engine_env, app, smtp, owner, admin):
    redis_url = app.config["SETTINGS"].redis_url
    campaign = create_started_campaign(owner, 10)
    run_queued_jobs(redis_url)
    assert fresh_campaign(campaign.id).queue.defer_reason == "rate_limit"
    assert scheduled_continuation_at(campaign.id) is not None

    service.pause_campaign(fresh_campaign(campaign.id), admin)
    assert scheduled_continuation_at(campaign.id) is None  # pause cancels it...
    schedule_continuation(campaign.id, datetime.now(UTC) - timedelta(seconds=5))  # ...but say one fires anyway
    ContinuationScheduler(queue_name=SEND_QUEUE, connection=get_redis(), recovery_interval=None).enqueue_jobs()
    assert scheduled_continuation_at(campaign.id) is None and queued_job_count(redis_url) == 1

    run_queued_jobs(redis_url)

    current = fresh_campaign(campaign.id)
    assert (current.status, current.queue.defer_reason) == ("paused", "admin_pause")
    assert len(smtp.messages) == 3 and recipient_statuses(campaign.id) == {"sent": 3, "pending": 7}
    assert queued_job_count(redis_url) == 0 and scheduled_continuation_at(campaign.id) is None


def test_pause_resume_and_cancel_are_idempotent_and_audited(app, app_env, smtp, owner, admin, log_records):
    campaign = create_started_campaign(owner, 5)

    # Each says what happened: the second of each pair changed nothing.
    assert service.pause_campaign(campaign, admin) == Transition(True, QUEUED, PAUSED)
    assert service.pause_campaign(fresh_campaign(campaign.id), admin) == Transition(False, PAUSED, PAUSED)
    run_queued_jobs(app_env["REDIS_URL"])  # the start job finds the campaign paused
    assert smtp.messages == []
    assert service.resume_campaign(fresh_campaign(campaign.id), admin) == Transition(
        True, PAUSED, QUEUED, Reason.ADMIN_PAUSE, 0)
    assert service.resume_campaign(fresh_campaign(campaign.id), admin) == Transition(False, QUEUED, QUEUED)
    assert fresh_campaign(campaign.id).status == "queued"
    assert service.cancel_campaign(fresh_campaign(campaign.id), admin) == Transition(True, QUEUED, CANCELLED)
    assert service.cancel_campaign(fresh_campaign(campaign.id), admin) == Transition(False, CANCELLED, CANCELLED)
    run_queued_jobs(app_env["REDIS_URL"])

    current = fresh_campaign(campaign.id)
    assert current.status == "cancelled" and smtp.messages == []
    actions = db.session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()
    assert actions[-3:] == ["campaign_paused", "campaign_resumed", "campaign_cancelled"]
    with pytest.raises(service.CampaignError):
        service.resume_campaign(current, admin)
    for message in ("Campaign paused", "Campaign resumed", "Campaign cancelled"):
        (record,) = events(log_records, message)
        assert (record["actor"], record["campaign_id"]) == (admin.id, campaign.id)


def test_global_switch_defers_with_global_pause_and_switching_on_requeues(app, app_env, smtp, owner, admin):
    first = create_started_campaign(owner, 3)
    assert sending_switch.set_sending_paused(True, admin) is True
    assert sending_switch.set_sending_paused(True, admin) is False  # already off: nothing changed
    second = create_started_campaign(owner, 2)  # started while sending is off: waits too

    run_queued_jobs(app_env["REDIS_URL"])

    for campaign in (first, second):
        current = fresh_campaign(campaign.id)
        assert (current.status, current.queue.defer_reason, current.queue.deferred_until) == (
            "deferred", "global_pause", None)
    assert smtp.messages == [] and service.sending_paused()

    sending_switch.set_sending_paused(False, admin)
    run_queued_jobs(app_env["REDIS_URL"])

    assert {fresh_campaign(c.id).status for c in (first, second)} == {"finished"}
    assert len(smtp.messages) == 5
    actions = db.session.scalars(select(AuditEvent.action).where(AuditEvent.action.like("sending_%"))).all()
    assert actions == ["sending_switched_off", "sending_switched_on"]


def test_a_due_continuation_runs_as_a_fresh_job_and_a_rescheduled_one_is_never_lost(app, owner):
    campaign = create_started_campaign(owner, 2)
    redis_url = app.config["SETTINGS"].redis_url
    Queue(SEND_QUEUE, connection=get_redis()).empty()
    scheduler = ContinuationScheduler(queue_name=SEND_QUEUE, connection=get_redis(), recovery_interval=None)

    schedule_continuation(campaign.id, datetime.now(UTC) - timedelta(seconds=1))
    scheduler.enqueue_jobs()
    job_ids = Queue(SEND_QUEUE, connection=get_redis()).job_ids
    assert len(job_ids) == 1 and job_ids[0] != continuation_job_id(campaign.id)
    assert scheduled_continuation_at(campaign.id) is None

    schedule_continuation(campaign.id, datetime.now(UTC) - timedelta(seconds=1))
    (stale,) = list(scheduler.get_jobs_to_queue())  # the scheduler read this version...
    later = datetime.now(UTC) + timedelta(minutes=5)
    schedule_continuation(campaign.id, later)  # ...and a worker re-deferred the campaign meanwhile
    scheduler.enqueue_job(stale)

    assert scheduled_continuation_at(campaign.id) == continuation_time(later)
    assert queued_job_count(redis_url) == 1


@with_env(MAILER_SMTP_MAX_PER_HOUR="2")
def test_a_continuation_that_fires_while_sending_is_off_waits_for_the_switch(engine_env, app, smtp, owner, admin):
    clock = FakeClock(now_whole_second())
    campaign = create_started_campaign(owner, 4)
    assert run_send_slice(campaign.id, clock=clock).outcome == SliceOutcome(SliceEnd.DEFERRED, Reason.RATE_LIMIT)
    sending_switch.set_sending_paused(True, admin)

    clock.now = fresh_campaign(campaign.id).queue.deferred_until
    assert run_send_slice(campaign.id, clock=clock).outcome == SliceOutcome(SliceEnd.SKIPPED, Reason.GLOBAL_PAUSE)

    current = fresh_campaign(campaign.id)
    assert (current.status, current.queue.defer_reason, current.queue.deferred_until) == (
        "deferred", "global_pause", None)
    sending_switch.set_sending_paused(False, admin)
    assert fresh_campaign(campaign.id).status == "queued" and len(smtp.messages) == 2


# --- recovery ----------------------------------------------------------------------------


def test_stale_claims_become_unknown_and_are_sent_again_only_when_an_admin_requeues_them(
    app, app_env, smtp, owner, admin
):
    campaign = create_started_campaign(owner, 12)
    Queue(SEND_QUEUE, connection=get_redis()).empty()  # the job died with its worker
    long_ago = datetime.now(UTC) - timedelta(hours=1)
    dead = select(Recipient.id).where(Recipient.campaign_id == campaign.id).order_by(Recipient.id).limit(5)
    db.session.execute(
        update(Recipient)
        .where(Recipient.id.in_(dead))
        .values(status=R_SENDING, claimed_by="dead-job", claimed_at=long_ago)
    )
    db.session.execute(update(type(campaign)).where(type(campaign).id == campaign.id).values(status="sending"))
    fresh_campaign(campaign.id).queue.heartbeat_at = long_ago
    db.session.commit()

    report = recover_stalled_campaigns()

    assert report.unknown == {campaign.id: 5} and report.enqueued == [campaign.id]
    run_queued_jobs(app_env["REDIS_URL"])
    current = fresh_campaign(campaign.id)
    assert (current.status, current.sent_count, current.unknown_count) == ("finished", 7, 5)
    assert len(smtp.messages) == 7
    assert all(smtp.count_for(recipient_address(i)) == 0 for i in range(5))

    assert service.requeue_unknown_recipients(current, admin) == 5
    run_queued_jobs(app_env["REDIS_URL"])

    current = fresh_campaign(campaign.id)
    assert (current.status, current.sent_count, current.unknown_count) == ("finished", 12, 0)
    assert set(smtp.recipients().values()) == {1} and len(smtp.recipients()) == 12
    assert db.session.scalar(select(AuditEvent.to_status).where(AuditEvent.action == "unknown_recipients_requeued")) \
        == "queued"


def test_recovery_reenqueues_a_deferred_campaign_whose_continuation_was_lost(app, app_env, smtp, owner):
    campaign = create_started_campaign(owner, 3)
    delivery.defer_campaign(campaign.id, Reason.TRANSIENT_ERROR, datetime.now(UTC) - timedelta(minutes=5))
    get_redis().flushdb()  # Redis restarted without persistence: queue and schedule are gone

    report = recover_stalled_campaigns()

    assert report.enqueued == [campaign.id]
    run_queued_jobs(app_env["REDIS_URL"])
    assert fresh_campaign(campaign.id).status == "finished" and len(smtp.messages) == 3


# --- suppressions and unsubscribe --------------------------------------------------------


def test_suppress_is_idempotent_and_case_insensitive(app):
    assert suppress("Someone@Example.test", "unsubscribed") is True
    assert suppress("someone@example.test", "hard_bounce") is False
    assert is_suppressed("SOMEONE@example.test")
    assert suppressed_among(["someone@EXAMPLE.test", "other@example.test"]) == {"someone@example.test"}


def test_one_click_unsubscribe_post_suppresses_and_the_link_page_only_confirms(app, app_env, client, smtp, owner):
    create_started_campaign(owner, 2)
    run_queued_jobs(app_env["REDIS_URL"])
    message = next(m for m in smtp.messages if m.rcpt_tos == (recipient_address(0),)).parsed()
    path = message["List-Unsubscribe"].strip("<>").removeprefix("http://mailadmin.test")

    page = client.get(path)
    assert page.status_code == 200 and b"us***@example.test" in page.data
    assert not is_suppressed(recipient_address(0))  # a GET (link scanner) changes nothing

    done = client.post(path, data="List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded")
    assert done.status_code == 200 and b"unsubscribed" in done.data
    assert is_suppressed(recipient_address(0)) and not is_suppressed(recipient_address(1))
    assert client.post(path).status_code == 200  # twice is fine
    assert client.get("/u/not-a-valid-token").status_code == 404
    assert client.post(path[:-3] + "abc").status_code == 404


@with_env(MAILER_CIRCUIT_BREAKER_THRESHOLD="3", MAILER_SEND_PARALLEL_SLICES="3", MAILER_SEND_BATCH_SIZE="10")
def test_three_parallel_slices_failing_together_count_one_per_retry_cycle_and_trip_at_exactly_three(
    engine_env, app, smtp, owner
):
    smtp.reply_with(451, stage="data")
    smtp.delay_per_message(1.0)  # the three slices are all at the SMTP server when the 451s come back
    clock = FakeClock(now_whole_second())
    campaign = create_started_campaign(owner, 30)

    def slice_in_its_own_context() -> SliceReport:
        with app.app_context():
            return run_send_slice(campaign.id, clock=clock, siblings=2)

    for cycle in (1, 2, 3):
        with ThreadPoolExecutor(3) as pool:
            reports = list(pool.map(lambda _: slice_in_its_own_context(), range(3)))
        current = fresh_campaign(campaign.id)
        assert current.queue.consecutive_transient_errors == cycle
        assert sum(report.siblings for report in reports) == (2 if cycle == 1 else 0)  # fan-out at start only
        if cycle == 1:
            assert sum(report.transient for report in reports) >= 2, "the slices did not fail together"
        if cycle < 3:
            assert current.status == "deferred"
            clock.now = current.queue.deferred_until

    assert (current.status, current.queue.defer_reason) == ("paused", "circuit_breaker")


# --- how many slices a campaign starts with --------------------------------------------------


def test_parallel_slices_default_to_one_per_worker_listening_on_the_send_queue(app):
    from rq import Queue, Worker

    from mailadmin.extensions import SEND_QUEUE, get_redis
    from mailadmin.jobs.send import parallel_slices

    connection = get_redis()
    workers = [Worker([Queue(SEND_QUEUE, connection=connection)], connection=connection, name=f"count-{i}")
               for i in range(3)]
    assert parallel_slices() == 1  # nobody listening yet: one slice
    for worker in workers:
        worker.register_birth()
    try:
        assert parallel_slices() == 3
    finally:
        for worker in workers:
            worker.register_death()


@with_env(MAILER_SEND_PARALLEL_SLICES="2")
def test_an_explicit_number_of_parallel_slices_wins(engine_env, app):
    from mailadmin.jobs.send import parallel_slices

    assert parallel_slices() == 2
