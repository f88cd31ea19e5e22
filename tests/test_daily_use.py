"""Daily use through the real app: owners steer their own campaigns, drafts can be corrected, the
campaign page's live update carries everything that changes, and the words and times are right."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from mailadmin.extensions import db
from mailadmin.models import AuditEvent, Campaign, CampaignQueue, Recipient
from mailadmin.models.moments import format_moment
from mailadmin.models.types import utcnow
from mailadmin.services.campaigns import cancel_campaign, start_campaign
from mailadmin.services.recipients import import_recipients
from mailadmin.services.sending_switch import set_sending_paused
from tests.factories import make_draft, numbered_addresses, reload
from tests.support.web import flashes, submit


def text_of(response) -> str:
    return response.get_data(as_text=True)


def started(owner, recipients: int = 3, **kwargs) -> Campaign:
    campaign = make_draft(owner, recipients=numbered_addresses(recipients), **kwargs)
    return start_campaign(campaign, owner, enforce_throttle=False)


def paused_by(reason: str, campaign: Campaign) -> Campaign:
    campaign.status = "paused"
    campaign.queue.defer_reason = reason
    db.session.commit()
    return campaign


def audit_actions(campaign: Campaign) -> list[tuple[str, int | None]]:
    rows = db.session.execute(
        select(AuditEvent.action, AuditEvent.actor_id).where(AuditEvent.campaign_id == campaign.id).order_by(AuditEvent.id)
    )
    return [tuple(row) for row in rows]


# --- owners steer their own campaigns --------------------------------------------------------


def test_an_owner_pauses_resumes_and_cancels_their_campaign_and_each_is_audited_with_them(app, manager, manager_client):
    campaign = started(manager)
    page = f"/campaigns/{campaign.id}"
    assert 'data-action="pause"' in text_of(manager_client.get(page))
    response = submit(manager_client, f"{page}/pause", {"next": page}, page_url=page, follow_redirects=True)
    assert ("success", f"Campaign “Spring news” (#{campaign.id}) paused. Sending stops before its next message.") in (
        flashes(text_of(response))
    )
    assert reload(campaign).status == "paused"
    paused_at = reload(campaign).queue.paused_at
    assert (f"Paused by {manager.email}, {format_moment(paused_at, UTC, 'auto')} — waits until its owner or an admin "
            "resumes it") in re.sub(r"<[^>]+>", "", text_of(response))
    response = submit(manager_client, f"{page}/resume", {"next": page}, page_url=page, follow_redirects=True)
    assert reload(campaign).status == "queued"
    assert flashes(text_of(response))[0][1].startswith(f"Campaign “Spring news” (#{campaign.id}) resumed.")
    response = submit(manager_client, f"{page}/cancel", {"confirm": "yes"}, page_url=page, follow_redirects=True)
    assert reload(campaign).status == "cancelled"
    assert audit_actions(campaign) == [
        ("campaign_started", manager.id),
        ("campaign_paused", manager.id),
        ("campaign_resumed", manager.id),
        ("campaign_cancelled", manager.id),
    ]


@pytest.mark.parametrize("reason", ["circuit_breaker", "admin_pause"])
def test_resuming_after_a_breaker_trip_or_while_sending_is_off_is_for_admins(
    app, manager, admin, manager_client, admin_client, reason
):
    campaign = paused_by(reason, started(manager))
    page = f"/campaigns/{campaign.id}"
    if reason == "admin_pause":
        set_sending_paused(True, admin)
    html = text_of(manager_client.get(page))
    assert re.search(r'<button type="submit" data-action="resume" disabled aria-describedby="resume-refusal-\d+">', html)
    expected = (
        "only an admin can resume it" if reason == "circuit_breaker" else "only an admin can resume a campaign now"
    )
    assert expected in html
    response = submit(manager_client, f"{page}/resume", page_url=page, follow_redirects=True)
    assert flashes(text_of(response))[0][0] == "error" and expected in flashes(text_of(response))[0][1]
    assert reload(campaign).status == "paused"
    submit(admin_client, f"{page}/resume", page_url=page)
    assert reload(campaign).status in ("queued", "deferred")


def test_a_manager_cannot_steer_another_managers_campaign(app, manager, other_manager, other_client):
    campaign = started(manager)
    token_page = text_of(other_client.get("/campaigns/new"))
    token = re.search(r'name="csrf_token" [^>]*value="([^"]+)"', token_page) or re.search(
        r'value="([^"]+)"[^>]*name="csrf_token"', token_page
    )
    for action in ("pause", "resume", "cancel"):
        response = other_client.post(f"/campaigns/{campaign.id}/{action}", data={"csrf_token": token.group(1)})
        assert response.status_code == 404
    assert reload(campaign).status == "queued"


def test_the_resume_flash_says_when_the_quota_is_used_up(app, app_env, manager, manager_client):
    from mailadmin.extensions import get_redis
    from mailadmin.limits.send_pace import reserve_send_tokens

    maximum = app.config["SETTINGS"].smtp_max_per_hour
    reserve_send_tokens(get_redis(), maximum, maximum)
    campaign = paused_by("admin_pause", started(manager))
    page = f"/campaigns/{campaign.id}"
    response = submit(manager_client, f"{page}/resume", page_url=page, follow_redirects=True)
    message = flashes(text_of(response))[0][1]
    assert "the hourly quota is used up: sending continues at" in message
    assert "It is queued and sending continues." not in message


# --- one reason at a time, and the right counts ------------------------------------------------


def test_with_sending_switched_off_a_waiting_campaign_shows_one_reason_and_the_audit_counts_it(
    app, manager, admin, manager_client
):
    campaign = started(manager)
    campaign.status = "deferred"
    campaign.queue.defer_reason = "rate_limit"
    campaign.queue.deferred_until = utcnow() + timedelta(minutes=30)
    db.session.commit()
    set_sending_paused(True, admin)
    html = text_of(manager_client.get(f"/campaigns/{campaign.id}"))
    reason = re.search(r'<p class="reason" id="campaign-reason"[^>]*>(.*?)</p>', html, re.S).group(1).strip()
    assert reason == "All sending is switched off — waits until an admin switches sending back on"
    assert "resumes at" not in html
    details = db.session.scalar(select(AuditEvent.details).where(AuditEvent.action == "sending_switched_off"))
    assert details == {"campaigns_waiting": 1}


def test_a_cancelled_campaign_says_not_sent_and_cancelled_not_waiting_and_finished(app, manager, manager_client):
    campaign = started(manager, recipients=5)
    cancel_campaign(campaign, manager)
    html = text_of(manager_client.get(f"/campaigns/{campaign.id}"))
    assert "Waiting" not in html
    assert 'data-bind="count_labels.pending">Not sent (cancelled)</span>' in html
    assert "<dt>Cancelled</dt>" in html and "<dt>Finished</dt>" not in html


def test_a_draft_shows_no_progress_tiles_chart_or_export(app, manager, manager_client):
    campaign = make_draft(manager, recipients=numbered_addresses(2))
    html = text_of(manager_client.get(f"/campaigns/{campaign.id}"))
    assert "Export results (CSV)" not in html and "<svg" not in html and "count-number" not in html
    assert "Draft with <strong>2 recipients</strong>" in html


# --- the live update -------------------------------------------------------------------------


def test_progress_json_carries_the_rows_shown_with_their_status_and_positions(app, manager, manager_client):
    campaign = started(manager, recipients=4)
    first = db.session.scalars(select(Recipient).where(Recipient.campaign_id == campaign.id).order_by(Recipient.id)).first()
    first.status, first.sent_at = "sent", utcnow()
    db.session.commit()
    data = manager_client.get(f"/campaigns/{campaign.id}/progress.json?status=sent").get_json()
    rows = data["html"]["recipients"]
    assert rows.count("<tr data-recipient-position") == 1 and 'data-recipient-position="1"' in rows
    assert '<span class="rstatus sent">Sent</span>' in rows
    assert 'href="/campaigns/' in data["html"]["controls"] or 'action="/campaigns/' in data["html"]["controls"]
    assert data["status_options"]["sent"] == "Sent (1)" and data["count_labels"]["pending"] == "Waiting"
    assert set(data["html"]) == {"reason", "controls", "dates", "errors", "recipients"}


def test_positions_count_within_the_campaign_not_global_ids(app, manager, manager_client):
    make_draft(manager, name="Earlier", recipients=numbered_addresses(7, domain="earlier.test"))
    campaign = make_draft(manager, recipients=numbered_addresses(5))
    html = text_of(manager_client.get(f"/campaigns/{campaign.id}?q=user3"))
    assert re.findall(r'data-recipient-position="(\d+)"', html) == ["4"]
    html = text_of(manager_client.get(f"/campaigns/{campaign.id}"))
    assert re.findall(r'data-recipient-position="(\d+)"', html) == ["1", "2", "3", "4", "5"]


# --- drafts can be corrected -----------------------------------------------------------------


def test_remove_one_recipient_remove_all_and_undo_the_last_import(app, manager, manager_client):
    campaign = make_draft(manager, recipients=numbered_addresses(3))
    import_recipients(campaign, numbered_addresses(2, start=10))
    page = f"/campaigns/{campaign.id}"
    assert "Undo the last import (2 recipients)" in text_of(manager_client.get(page))
    victim = db.session.scalar(select(Recipient.id).where(Recipient.email == "user1@example.com"))
    response = submit(manager_client, f"{page}/recipients/{victim}/remove", page_url=page, follow_redirects=True)
    assert ("success", "Recipient removed. 4 recipients left.") in flashes(text_of(response))
    positions = db.session.scalars(
        select(Recipient.position).where(Recipient.campaign_id == campaign.id).order_by(Recipient.id)
    ).all()
    assert positions == [1, 2, 3, 4]  # no gap where the removed one was
    response = submit(manager_client, f"{page}/recipients/undo-import", page_url=page, follow_redirects=True)
    assert ("success", "Last import undone: 2 recipients removed.") in flashes(text_of(response))
    assert reload(campaign).recipients_total == 2
    assert sorted(db.session.scalars(select(Recipient.email).where(Recipient.campaign_id == campaign.id))) == [
        "user0@example.com", "user2@example.com"
    ]
    response = submit(manager_client, f"{page}/recipients/remove-all", page_url=page, follow_redirects=True)
    assert ("success", "2 recipients removed. The draft has no recipients now.") in flashes(text_of(response))
    assert reload(campaign).recipients_total == 0 and reload(campaign).skipped_count == 0


def test_a_started_campaign_cannot_lose_recipients_or_be_deleted(app, manager, manager_client):
    campaign = started(manager)
    page = f"/campaigns/{campaign.id}"
    for path in ("/recipients/undo-import", "/recipients/remove-all", "/delete"):
        response = submit(manager_client, page + path, page_url=page, follow_redirects=True)
        assert flashes(text_of(response))[0][0] == "warning"
    assert reload(campaign).recipients_total == 3 and reload(campaign).status == "queued"


def test_duplicate_with_or_without_recipients_and_delete_a_draft(app, manager, manager_client):
    source = started(manager, recipients=3)
    page = f"/campaigns/{source.id}"
    response = submit(manager_client, f"{page}/duplicate", {"recipients": "no"}, page_url=page, follow_redirects=True)
    content_only = db.session.scalar(select(Campaign).where(Campaign.id != source.id).order_by(Campaign.id.desc()))
    assert content_only.name == "Spring news (copy)" and content_only.status == "draft"
    assert content_only.recipients_total == 0 and content_only.subject == source.subject
    response = submit(manager_client, f"{page}/duplicate", {"recipients": "yes"}, page_url=page, follow_redirects=True)
    assert ("success", "Draft “Spring news (copy)” created with 3 recipients.") in flashes(text_of(response))
    with_recipients = db.session.scalar(select(Campaign).order_by(Campaign.id.desc()))
    statuses = db.session.scalars(select(Recipient.status).where(Recipient.campaign_id == with_recipients.id))
    assert sorted(statuses) == ["pending"] * 3 and with_recipients.recipients_total == 3
    response = submit(
        manager_client, f"/campaigns/{with_recipients.id}/delete", page_url=f"/campaigns/{with_recipients.id}",
        follow_redirects=True,
    )
    assert ("success", "Draft “Spring news (copy)” deleted.") in flashes(text_of(response))
    assert db.session.scalar(select(db.func.count()).where(Campaign.id == with_recipients.id)) == 0
    assert db.session.scalar(select(db.func.count()).where(Recipient.campaign_id == with_recipients.id)) == 0


def test_preview_finds_a_recipient_by_address_or_name(app, manager, manager_client):
    campaign = make_draft(manager, recipients="ada@example.com,Ada Lovelace\nalan@example.org,Alan Turing\n")
    html = text_of(manager_client.get(f"/campaigns/{campaign.id}/preview?q=turing"))
    assert '<dd id="preview-subject">Hello Alan Turing</dd>' in html
    html = text_of(manager_client.get(f"/campaigns/{campaign.id}/preview?q=example"))
    assert "2 matches" in html
    html = text_of(manager_client.get(f"/campaigns/{campaign.id}/preview?q=nobody"))
    assert "No recipient of this campaign matches “nobody”" in html.replace("&#34;", '"')


# --- test email ------------------------------------------------------------------------------


def test_the_test_email_keeps_the_typed_address_and_says_what_is_left(app, app_env, manager, manager_client, smtp):
    campaign = make_draft(manager, recipients=numbered_addresses(1))
    url = f"/campaigns/{campaign.id}/test-email"
    response = submit(manager_client, url, {"to_address": "colleague@example.org"}, follow_redirects=True)
    html = text_of(response)
    assert ("success", "Test email sent to colleague@example.org.") in flashes(html)
    assert 'value="colleague@example.org"' in html
    assert re.search(r"4 of 5 test emails left this hour; another frees at <time datetime=", html)
    for _ in range(4):
        submit(manager_client, url, {"to_address": "colleague@example.org"})
    html = text_of(submit(manager_client, url, {"to_address": "colleague@example.org"}))
    assert "Test email limit reached (5 test emails per hour)." in html
    assert re.search(r"No test email left this hour: the next one is allowed at <time datetime=", html)


# --- times -----------------------------------------------------------------------------------


def test_a_scheduled_start_typed_in_the_viewers_zone_is_stored_in_utc(app, manager, manager_client):
    campaign = make_draft(manager, recipients=numbered_addresses(1))
    local = (datetime.now(UTC) + timedelta(days=3)).astimezone().replace(tzinfo=None)
    local = local.replace(hour=9, minute=30, second=0, microsecond=0)
    url = f"/campaigns/{campaign.id}/start"
    submit(manager_client, url, {"scheduled_at": local.strftime("%Y-%m-%dT%H:%M"), "tz": "America/New_York"})
    from zoneinfo import ZoneInfo

    expected = local.replace(tzinfo=ZoneInfo("America/New_York")).astimezone(UTC)
    queue = db.session.scalar(select(CampaignQueue).where(CampaignQueue.campaign_id == campaign.id))
    assert reload(campaign).scheduled_at == expected and queue.deferred_until == expected


def test_the_sends_per_hour_chart_is_labelled_in_the_viewers_zone(app, manager, manager_client):
    campaign = started(manager, recipients=2)
    sent_at = datetime(2031, 5, 3, 23, 10, tzinfo=UTC)
    for recipient in db.session.scalars(select(Recipient).where(Recipient.campaign_id == campaign.id)):
        recipient.status, recipient.sent_at = "sent", sent_at
    db.session.commit()
    manager_client.set_cookie("mailadmin_tz", "Asia/Tokyo")
    svg = text_of(manager_client.get(f"/campaigns/{campaign.id}/sends-per-hour.svg"))
    assert "Emails sent per hour (Asia/Tokyo)" in svg
    assert "4 May 2031, 08:00 UTC+9: 2 sent" in svg  # 23:00 UTC is 08:00 the next day in Tokyo
    assert "busiest hour 4 May 2031, 08:00 UTC+9 with 2." in svg
