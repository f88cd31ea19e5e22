"""A pause says who paused the campaign and when ("Paused by admin@example.com, 19:05", in the viewer's
zone) wherever its reason shows: the campaign list, the campaign page and its live JSON, the admins'
sending page, the operations page and `flask campaigns show`."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from mailadmin.extensions import db
from mailadmin.models.moments import format_moment
from mailadmin.services import campaigns as service
from tests.factories import ADMIN_EMAIL, MANAGER_EMAIL, create_started_campaign, fresh_campaign
from tests.support.web import submit

TOKYO = ZoneInfo("Asia/Tokyo")


def words(html: str) -> str:
    """A page's text as a person reads it: tags dropped, spaces folded."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", html))


def pause_from_the_page(client, campaign) -> datetime:
    """Press Pause on the campaign page; the moment the pause was noted."""
    page = f"/campaigns/{campaign.id}"
    submit(client, f"{page}/pause", {"next": page}, page_url=page)
    queue = fresh_campaign(campaign.id).queue
    assert queue.defer_reason == "admin_pause"
    return queue.paused_at


def test_an_admin_pauses_a_managers_campaign_and_the_manager_sees_who_and_when_everywhere(
    app, manager, admin, admin_client, manager_client
):
    campaign = create_started_campaign(manager, 3, name="Spring news")
    paused_at = pause_from_the_page(admin_client, campaign)
    manager_client.set_cookie("mailadmin_tz", "Asia/Tokyo")
    expected = f"Paused by {ADMIN_EMAIL}, {format_moment(paused_at, TOKYO, 'auto')}"

    page = manager_client.get(f"/campaigns/{campaign.id}").get_data(as_text=True)
    listing = manager_client.get("/").get_data(as_text=True)
    live = manager_client.get(f"/campaigns/{campaign.id}/progress.json").get_json()

    assert f"{expected} — waits until its owner or an admin resumes it" in words(page)
    assert expected in words(listing)
    assert live["reason_text"] == f"{expected} — waits until its owner or an admin resumes it"
    assert expected in words(live["html"]["reason"])
    assert (live["paused_by"], datetime.fromisoformat(live["paused_at"])) == (ADMIN_EMAIL, paused_at)
    # The time is the one `<time>` every page uses: the moment in its datetime, UTC on hover.
    assert f'<time datetime="{paused_at.isoformat()}" title="{format_moment(paused_at)}" data-local="auto">' in page


def test_the_owner_pausing_their_own_campaign_is_named_with_their_own_address(app, manager, manager_client):
    campaign = create_started_campaign(manager, 2)

    paused_at = pause_from_the_page(manager_client, campaign)

    page = words(manager_client.get(f"/campaigns/{campaign.id}").get_data(as_text=True))
    assert f"Paused by {MANAGER_EMAIL}, {format_moment(paused_at, UTC, 'auto')}" in page


def test_the_admins_pages_name_who_paused_it(app, manager, admin, admin_client, runner):
    campaign = create_started_campaign(manager, 2, name="Spring news")
    paused_at = pause_from_the_page(admin_client, campaign)

    sending = words(admin_client.get("/admin/sending").get_data(as_text=True))
    operations = admin_client.get("/admin/operations").get_data(as_text=True)
    row = re.search(rf'<tr data-campaign-id="{campaign.id}">.*?</tr>', operations, re.S).group(0)
    shown = runner.invoke(args=["campaigns", "show", str(campaign.id)]).output

    assert f"Paused by {ADMIN_EMAIL}, {format_moment(paused_at, UTC, 'auto')}" in sending
    assert "admin_pause" in row and f"Paused by {ADMIN_EMAIL}, {format_moment(paused_at, UTC, 'seconds')}" in words(row)
    assert f"paused            by {ADMIN_EMAIL} at {paused_at:%Y-%m-%d %H:%M:%S} UTC" in shown


def test_a_pause_from_the_command_line_without_an_actor_says_a_person_and_when(app, manager, runner):
    campaign = create_started_campaign(manager, 2)

    assert runner.invoke(args=["campaigns", "pause", str(campaign.id)]).exit_code == 0

    paused_at = fresh_campaign(campaign.id).queue.paused_at
    assert paused_at is not None
    from mailadmin.campaigns.display import reason_text

    assert reason_text(fresh_campaign(campaign.id)) == (
        f"Paused by a person, {format_moment(paused_at, UTC, 'auto')} — waits until its owner or an admin resumes it")


def test_resuming_clears_the_note_and_a_later_breaker_pause_names_no_person(app, manager, admin, admin_client):
    from mailadmin.campaigns.display import reason_text
    from mailadmin.services.delivery import trip_circuit_breaker

    campaign = create_started_campaign(manager, 2)
    pause_from_the_page(admin_client, campaign)
    service.resume_campaign(fresh_campaign(campaign.id), admin)
    queue = fresh_campaign(campaign.id).queue
    assert (queue.paused_by_id, queue.paused_at, queue.pause_detail) == (None, None, None)

    trip_circuit_breaker(campaign.id, 10)

    current = fresh_campaign(campaign.id)
    assert current.queue.paused_at is not None and current.queue.paused_by_id is None
    assert reason_text(current) == "Paused by the circuit breaker after repeated SMTP errors — only an admin can resume it"


def test_a_pause_detail_reads_in_brackets_after_its_reason(app, manager, admin):
    from mailadmin.campaigns.display import reason_text

    campaign = create_started_campaign(manager, 2)
    service.pause_campaign(campaign, admin)
    current = fresh_campaign(campaign.id)
    current.queue.defer_reason, current.queue.pause_detail = "bounce_rate", "complaint rate 0.4 % over 0.3 %"
    db.session.commit()

    assert reason_text(fresh_campaign(campaign.id)) == (
        "Paused: too many hard bounces or spam complaints (complaint rate 0.4 % over 0.3 %) — only an admin can resume it")
