"""A scheduled start found more than MAILER_SCHEDULE_MAX_LATE_MINUTES late (everything was down
when its time came) is not sent by surprise: the campaign pauses with `missed_schedule`, and its
owner (or an admin) resumes it from the campaign page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mailadmin.jobs.send import SliceEnd, SliceOutcome, run_send_slice
from mailadmin.models.reasons import Reason
from mailadmin.services import campaigns as service
from tests.factories import create_campaign, fresh_campaign, recipient_statuses
from tests.support.forms import path_for
from tests.support.jobs import run_queued_jobs
from tests.support.web import flashes, logged_in_client, submit


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def scheduled(owner, at: datetime):
    campaign = create_campaign(owner, 3)
    service.start_campaign(campaign, owner, scheduled_at=at, enforce_throttle=False)
    return campaign


def test_a_start_found_more_than_an_hour_late_pauses_with_missed_schedule_and_sends_nothing(app, smtp, owner):
    at = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=1)
    campaign = scheduled(owner, at)

    report = run_send_slice(campaign.id, clock=Clock(at + timedelta(minutes=61)))

    assert report.outcome == SliceOutcome(SliceEnd.SKIPPED, Reason.MISSED_SCHEDULE)
    current = fresh_campaign(campaign.id)
    assert (current.status, current.queue.defer_reason, current.queue.deferred_until) == (
        "paused", "missed_schedule", None)
    assert smtp.messages == [] and recipient_statuses(campaign.id) == {"pending": 3}


def test_a_start_found_less_late_than_the_limit_is_sent(app, smtp, owner):
    at = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=1)
    campaign = scheduled(owner, at)

    report = run_send_slice(campaign.id, clock=Clock(at + timedelta(minutes=59)))

    assert report.outcome == SliceOutcome(SliceEnd.FINISHED) and len(smtp.messages) == 3


def test_the_owner_resumes_a_missed_schedule_from_the_campaign_page(app, smtp, owner):
    at = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=1)
    campaign = scheduled(owner, at)
    run_send_slice(campaign.id, clock=Clock(at + timedelta(hours=3)))
    client = logged_in_client(app, owner.email)
    page_url = path_for("campaigns.show", campaign_id=campaign.id)
    assert "Resume: send it now" in client.get(page_url).get_data(as_text=True)

    response = submit(client, path_for("campaigns.resume_missed_schedule", campaign_id=campaign.id),
                      page_url=page_url, follow_redirects=True)

    assert f"Campaign “{campaign.name}” (#{campaign.id}) resumed." in flashes(response.get_data(as_text=True))[0][1]
    assert fresh_campaign(campaign.id).status == "queued"
    run_queued_jobs(app.config["SETTINGS"].redis_url)
    assert fresh_campaign(campaign.id).status == "finished" and len(smtp.messages) == 3


def test_another_manager_cannot_resume_it(app, owner, make_user):
    make_user("other@example.com", role="manager")
    at = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=1)
    campaign = scheduled(owner, at)
    run_send_slice(campaign.id, clock=Clock(at + timedelta(hours=3)))
    client = logged_in_client(app, "other@example.com")

    response = submit(client, path_for("campaigns.resume_missed_schedule", campaign_id=campaign.id), page_url="/")

    assert response.status_code == 404
    assert fresh_campaign(campaign.id).status == "paused"
