"""A scheduled campaign started now or given another start time: by its owner or an admin, from the
campaign page and the command line, audited, with its rq-scheduler continuation cancelled or moved so
that the campaign never starts twice. Real RQ jobs, Redis, SMTP and database."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from mailadmin.extensions import SEND_QUEUE, db, get_redis
from mailadmin.jobs.send import SliceEnd, run_send_slice
from mailadmin.models import AuditEvent
from mailadmin.models.moments import format_moment
from mailadmin.models.reasons import Reason
from mailadmin.models.types import utcnow
from mailadmin.queue.dispatch import continuation_job_id, scheduled_continuation_at
from mailadmin.services import campaigns as service
from mailadmin.services import sending_switch
from tests.factories import ADMIN_EMAIL, create_campaign, fresh_campaign, recipient_statuses
from tests.support.jobs import run_queued_jobs
from tests.support.waiting import wait_until
from tests.support.web import flashes, submit


class Clock:
    """A fixed `now` for one send slice."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def in_hours(hours: float) -> datetime:
    return (utcnow() + timedelta(hours=hours)).replace(second=0, microsecond=0)


@pytest.fixture
def scheduled(app, manager):
    """scheduled(at, recipients=3) -> the manager's campaign, started to begin at `at` (nothing has run)."""

    def factory(at: datetime | None = None, recipients: int = 3):
        campaign = create_campaign(manager, recipients, name="Monday news")
        service.start_campaign(campaign, manager, scheduled_at=at or in_hours(24), enforce_throttle=False)
        return fresh_campaign(campaign.id)

    return factory


def audit_rows(campaign_id: int, action: str) -> list[tuple]:
    db.session.commit()
    return [tuple(row) for row in db.session.execute(
        select(AuditEvent.actor_id, AuditEvent.from_status, AuditEvent.to_status, AuditEvent.details)
        .where(AuditEvent.campaign_id == campaign_id, AuditEvent.action == action).order_by(AuditEvent.id)
    ).all()]


def continuation_exists(campaign_id: int) -> bool:
    return bool(get_redis().exists(f"rq:job:{continuation_job_id(campaign_id)}"))


# --- start now -----------------------------------------------------------------------------------


def test_the_owner_starts_a_scheduled_campaign_now_and_its_old_start_time_does_not_send_it_again(
    app, smtp, manager, manager_client, scheduled
):
    at = in_hours(24)
    campaign = scheduled(at)
    page = f"/campaigns/{campaign.id}"
    html = manager_client.get(page).get_data(as_text=True)
    assert 'data-action="start-now"' in html and 'data-action="reschedule"' in html
    assert scheduled_continuation_at(campaign.id) == at

    response = submit(manager_client, f"{page}/start-now", page_url=page, follow_redirects=True)

    assert ("success", f"Campaign “Monday news” (#{campaign.id}) started now instead of at its scheduled time. "
            "It is queued and sending continues.") in flashes(response.get_data(as_text=True))
    assert fresh_campaign(campaign.id).status == "queued"
    assert scheduled_continuation_at(campaign.id) is None and not continuation_exists(campaign.id)
    run_queued_jobs(app.config["SETTINGS"].redis_url)
    assert fresh_campaign(campaign.id).status == "finished" and len(smtp.messages) == 3
    assert audit_rows(campaign.id, "campaign_started_now") == [
        (manager.id, "deferred", "queued", {"scheduled_at": at.isoformat()})
    ]

    # The old start time comes (say rq-scheduler had already taken the continuation): nothing more is sent.
    report = run_send_slice(campaign.id, clock=Clock(at + timedelta(seconds=5)))
    assert report.outcome.end is SliceEnd.SKIPPED
    assert len(smtp.messages) == 3 and recipient_statuses(campaign.id) == {"sent": 3}


def test_an_admin_starts_a_managers_scheduled_campaign_now(app, smtp, manager, admin, admin_client, scheduled):
    campaign = scheduled()
    page = f"/campaigns/{campaign.id}"

    submit(admin_client, f"{page}/start-now", page_url=page, follow_redirects=True)

    assert fresh_campaign(campaign.id).status == "queued"
    assert [row[0] for row in audit_rows(campaign.id, "campaign_started_now")] == [admin.id]


def test_starting_now_a_campaign_that_is_already_sending_is_refused_with_the_reason(
    app, manager, manager_client, scheduled
):
    campaign = scheduled()
    submit(manager_client, f"/campaigns/{campaign.id}/start-now", page_url=f"/campaigns/{campaign.id}")

    response = submit(manager_client, f"/campaigns/{campaign.id}/start-now", page_url=f"/campaigns/{campaign.id}",
                      follow_redirects=True)

    assert ("error", service.MSG_NOT_SCHEDULED) in flashes(response.get_data(as_text=True))
    assert len(audit_rows(campaign.id, "campaign_started_now")) == 1


def test_started_now_while_sending_is_switched_off_it_waits_for_the_switch(app, admin, manager, manager_client,
                                                                           scheduled):
    campaign = scheduled()
    sending_switch.set_sending_paused(True, admin)

    submit(manager_client, f"/campaigns/{campaign.id}/start-now", page_url=f"/campaigns/{campaign.id}")

    current = fresh_campaign(campaign.id)
    assert (current.status, current.queue.defer_reason, current.queue.deferred_until) == ("deferred", "global_pause", None)
    assert scheduled_continuation_at(campaign.id) is None


# --- another start time --------------------------------------------------------------------------


def test_the_owner_moves_the_start_typed_in_their_zone_and_the_scheduled_job_moves_with_it(
    app, smtp, manager, manager_client, scheduled
):
    old = in_hours(24)
    campaign = scheduled(old)
    tokyo = ZoneInfo("Asia/Tokyo")
    new_local = (datetime.now(tokyo) + timedelta(days=3)).replace(hour=9, minute=30, second=0, microsecond=0)
    new = new_local.astimezone(UTC)
    page = f"/campaigns/{campaign.id}"

    response = submit(manager_client, f"{page}/reschedule",
                      {"start_at": new_local.strftime("%Y-%m-%dT%H:%M"), "tz": "Asia/Tokyo"},
                      page_url=page, follow_redirects=True)

    category, text = flashes(response.get_data(as_text=True))[0]
    assert (category, re.sub(r"<[^>]+>", "", text)) == (  # said in the zone it was typed in
        "success", f"Campaign “Monday news” (#{campaign.id}) now starts at {format_moment(new, tokyo)}.")
    current = fresh_campaign(campaign.id)
    assert (current.status, current.queue.defer_reason) == ("deferred", "scheduled")
    assert current.queue.deferred_until == new and current.scheduled_at == new
    assert scheduled_continuation_at(campaign.id) == new
    assert audit_rows(campaign.id, "campaign_rescheduled") == [
        (manager.id, "deferred", "deferred", {"scheduled_at": new.isoformat(), "previous_scheduled_at": old.isoformat()})
    ]
    # The old time is no start any more; the new one is.
    assert run_send_slice(campaign.id, clock=Clock(old + timedelta(seconds=5))).outcome.end is SliceEnd.SKIPPED
    assert smtp.messages == [] and fresh_campaign(campaign.id).status == "deferred"
    assert run_send_slice(campaign.id, clock=Clock(new + timedelta(seconds=5))).outcome.end is SliceEnd.FINISHED
    assert len(smtp.messages) == 3


def test_moving_the_start_earlier_sends_it_at_the_earlier_time_through_rq_scheduler(app, smtp, manager, scheduled):
    from mailadmin.jobs.continuations import ContinuationScheduler

    campaign = scheduled(in_hours(24))
    soon = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    service.reschedule_campaign(campaign, manager, soon)
    assert scheduled_continuation_at(campaign.id) == soon

    scheduler = ContinuationScheduler(queue_name=SEND_QUEUE, connection=get_redis(), recovery_interval=None)

    def dispatched() -> bool:
        scheduler.enqueue_jobs()  # one tick of the scheduler process: what is due goes to the send queue
        return scheduled_continuation_at(campaign.id) is None

    wait_until(dispatched, 15, interval=0.2, message="the moved continuation to be dispatched")
    run_queued_jobs(app.config["SETTINGS"].redis_url)

    assert fresh_campaign(campaign.id).status == "finished" and len(smtp.messages) == 3


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("2001-01-01T10:00", "The new start time has already passed. Pick a time in the future "
                             "(times are in your time zone, UTC)."),
        ("next tuesday", "That is not a time. Type the new start as a date and a time, e.g. 2027-03-01 09:30."),
        ("", "Type the new start time (date and time)."),
    ],
)
def test_a_new_start_time_in_the_past_or_not_a_time_gets_a_clear_message_and_changes_nothing(
    app, manager, manager_client, scheduled, typed, message
):
    at = in_hours(24)
    campaign = scheduled(at)
    page = f"/campaigns/{campaign.id}"

    response = submit(manager_client, f"{page}/reschedule", {"start_at": typed}, page_url=page, follow_redirects=True)

    assert response.status_code == 200
    assert ("error", message) in flashes(response.get_data(as_text=True))
    current = fresh_campaign(campaign.id)
    assert current.queue.deferred_until == at and scheduled_continuation_at(campaign.id) == at
    assert audit_rows(campaign.id, "campaign_rescheduled") == []


def test_a_campaign_that_missed_its_start_can_be_given_a_new_one(app, smtp, manager, manager_client, scheduled):
    at = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=1)
    campaign = scheduled(at)
    run_send_slice(campaign.id, clock=Clock(at + timedelta(hours=3)))  # found 3 h late: paused, missed_schedule
    assert fresh_campaign(campaign.id).queue.defer_reason == Reason.MISSED_SCHEDULE
    new = in_hours(5)
    page = f"/campaigns/{campaign.id}"
    assert 'data-action="reschedule"' in manager_client.get(page).get_data(as_text=True)

    submit(manager_client, f"{page}/reschedule", {"start_at": new.strftime("%Y-%m-%dT%H:%M"), "tz": "UTC"},
           page_url=page)

    current = fresh_campaign(campaign.id)
    assert (current.status, current.queue.defer_reason, current.queue.deferred_until) == ("deferred", "scheduled", new)
    assert scheduled_continuation_at(campaign.id) == new
    assert [row[1:3] for row in audit_rows(campaign.id, "campaign_rescheduled")] == [("paused", "deferred")]


# --- who may -------------------------------------------------------------------------------------


def test_another_manager_cannot_start_or_move_a_campaign_they_do_not_own(
    app, manager, other_manager, other_client, scheduled
):
    at = in_hours(24)
    campaign = scheduled(at)

    assert other_client.get(f"/campaigns/{campaign.id}").status_code == 404
    started = submit(other_client, f"/campaigns/{campaign.id}/start-now", page_url="/")
    moved = submit(other_client, f"/campaigns/{campaign.id}/reschedule",
                   {"start_at": in_hours(48).strftime("%Y-%m-%dT%H:%M")}, page_url="/")

    assert (started.status_code, moved.status_code) == (404, 404)
    current = fresh_campaign(campaign.id)
    assert (current.status, current.queue.deferred_until) == ("deferred", at)
    assert scheduled_continuation_at(campaign.id) == at


def test_the_forms_are_csrf_protected(app, manager, manager_client, scheduled):
    campaign = scheduled()

    started = manager_client.post(f"/campaigns/{campaign.id}/start-now")
    moved = manager_client.post(f"/campaigns/{campaign.id}/reschedule", data={"start_at": "2099-01-01T10:00"})

    assert (started.status_code, moved.status_code) == (400, 400)
    assert fresh_campaign(campaign.id).status == "deferred"


def test_no_start_controls_for_a_campaign_that_is_not_scheduled(app, manager, manager_client):
    campaign = create_campaign(manager, 2)
    service.start_campaign(campaign, manager, enforce_throttle=False)

    html = manager_client.get(f"/campaigns/{campaign.id}").get_data(as_text=True)

    assert 'data-action="start-now"' not in html and 'data-action="reschedule"' not in html


# --- the command line ----------------------------------------------------------------------------


def test_the_cli_starts_a_scheduled_campaign_now_with_an_audited_actor(app, runner, smtp, admin, scheduled):
    campaign = scheduled()

    result = runner.invoke(args=["campaigns", "start-now", str(campaign.id), "--actor", ADMIN_EMAIL])

    assert result.exit_code == 0, result.output
    assert f"campaign {campaign.id} is queued" in result.output
    assert scheduled_continuation_at(campaign.id) is None
    assert [row[:3] for row in audit_rows(campaign.id, "campaign_started_now")] == [(admin.id, "deferred", "queued")]
    run_queued_jobs(app.config["SETTINGS"].redis_url)
    assert len(smtp.messages) == 3
    again = runner.invoke(args=["campaigns", "start-now", str(campaign.id)])
    assert again.exit_code != 0 and str(service.MSG_NOT_SCHEDULED) in again.output


def test_the_cli_moves_a_scheduled_start_with_an_audited_actor(app, runner, admin, scheduled):
    old = in_hours(24)
    campaign = scheduled(old)
    new = in_hours(30)

    result = runner.invoke(args=["campaigns", "reschedule", str(campaign.id), "--at",
                                 new.astimezone(ZoneInfo("Europe/Paris")).isoformat(), "--actor", ADMIN_EMAIL])

    assert result.exit_code == 0, result.output
    assert f"campaign {campaign.id} is deferred (scheduled)" in result.output
    assert fresh_campaign(campaign.id).queue.deferred_until == new and scheduled_continuation_at(campaign.id) == new
    assert audit_rows(campaign.id, "campaign_rescheduled") == [
        (admin.id, "deferred", "deferred", {"scheduled_at": new.isoformat(), "previous_scheduled_at": old.isoformat()})
    ]
    shown = runner.invoke(args=["campaigns", "show", str(campaign.id)]).output
    assert f"continuation      {continuation_job_id(campaign.id)} at {new:%Y-%m-%d %H:%M:%S} UTC" in shown


@pytest.mark.parametrize(
    ("at", "message"),
    [
        ("tomorrow", "'tomorrow' is not a time: write it as 2027-03-01T09:30+01:00 (or ...Z for UTC)"),
        ("2027-03-01T09:30", "'2027-03-01T09:30' has no time zone: add it"),
        ("2001-03-01T09:30Z", "The new start time has already passed. Pick a time in the future."),
    ],
)
def test_the_cli_refuses_a_start_time_that_is_not_a_time_or_has_passed(app, runner, admin, scheduled, at, message):
    old = in_hours(24)
    campaign = scheduled(old)

    result = runner.invoke(args=["campaigns", "reschedule", str(campaign.id), "--at", at])

    assert result.exit_code != 0 and message in result.output
    assert fresh_campaign(campaign.id).queue.deferred_until == old and audit_rows(campaign.id, "campaign_rescheduled") == []
