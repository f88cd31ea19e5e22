"""Daily use in a real browser (headless Chromium, by visible labels): the campaign page's table goes live
to "Sent", an owner steers their campaign, times in the browser's own zone, a draft corrected, the start
estimate with the quota used up, and the admin pages at phone width. The suite's one browser, a fresh
context (own cookies, viewport, time zone) per page."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from mailadmin.extensions import db, get_redis
from mailadmin.limits.send_pace import reserve_send_tokens
from mailadmin.models import Campaign, Recipient
from mailadmin.models.moments import format_moment, format_utc
from mailadmin.services.campaigns import start_campaign
from mailadmin.services.sending_switch import set_sending_paused
from tests.factories import ADMIN_EMAIL, MANAGER_EMAIL, create_campaign, fresh_campaign
from tests.support.browser import browser_login

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
TOKYO = "Asia/Tokyo"  # UTC+9 all year: no daylight-saving edge in the expectations


@pytest.fixture
def open_page(browser):
    """open_page(width=1280, timezone_id=None) -> a page in a fresh context of the suite's one browser;
    all closed after the test."""
    contexts = []

    def factory(width: int = 1280, height: int = 900, timezone_id: str | None = None):
        options = {"viewport": {"width": width, "height": height}}
        if timezone_id:
            options["timezone_id"] = timezone_id
        context = browser.new_context(**options)
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context.new_page()

    yield factory
    for context in contexts:
        context.close()


def no_horizontal_scroll(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


@pytest.fixture
def one_per_batch(app_env):
    """The worker reports after every message, so the table changes several times on its way to "Sent"."""
    app_env["MAILER_SEND_BATCH_SIZE"] = "1"


@pytest.mark.usefixtures("one_per_batch")
def test_the_recipients_table_turns_to_sent_without_a_reload(app, manager, smtp, live_server, open_page, engine_processes):
    smtp.delay_per_message(0.15)
    campaign = create_campaign(manager, 6, name="Live table")
    page = open_page()
    browser_login(page, live_server, MANAGER_EMAIL)
    start_campaign(campaign, manager, enforce_throttle=False)
    page.goto(f"{live_server.url}/campaigns/{campaign.id}")
    page.evaluate("window.__sameDocument = true")
    statuses = page.locator("table.recipients tbody td[data-label='Status']")
    assert statuses.count() == 6 and "Waiting" in statuses.all_inner_texts()
    engine_processes.worker()
    # Locator assertions, not wait_for_function: the page's CSP (no 'unsafe-eval') refuses string predicates.
    expect(statuses).to_have_text(["Sent"] * 6, timeout=60_000)
    expect(page.locator(".page-head .status")).to_have_text("Finished", timeout=30_000)
    assert page.evaluate("window.__sameDocument === true"), "the page was reloaded"
    assert page.locator("table.recipients tbody td[data-label='Sent'] time").count() == 6
    assert page.locator('[data-bind="counts.sent"]').inner_text() == "6"


def test_an_owner_pauses_resumes_and_cancels_and_is_refused_the_breaker_resume(app, manager, live_server, open_page):
    campaign = create_campaign(manager, 4, name="Own campaign")
    start_campaign(campaign, manager, enforce_throttle=False)  # no worker: it stays queued
    page = open_page()
    browser_login(page, live_server, MANAGER_EMAIL)
    page.goto(f"{live_server.url}/campaigns/{campaign.id}")

    page.get_by_role("button", name="Pause").click()
    page.locator(".flash.success", has_text="paused. Sending stops before its next message.").wait_for()
    assert fresh_campaign(campaign.id).status == "paused"
    page.get_by_role("button", name="Resume").click()
    page.locator(".flash.success", has_text="resumed").wait_for()
    assert fresh_campaign(campaign.id).status == "queued"
    page.get_by_role("link", name="Cancel…").click()
    page.get_by_role("button", name="Yes, cancel this campaign for good").click()
    page.locator(".flash.success", has_text="cancelled").wait_for()
    assert fresh_campaign(campaign.id).status == "cancelled"
    assert page.locator("dt", has_text="Cancelled").is_visible()

    tripped = create_campaign(manager, 2, name="Tripped")
    start_campaign(tripped, manager, enforce_throttle=False)
    tripped = fresh_campaign(tripped.id)
    tripped.status, tripped.queue.defer_reason = "paused", "circuit_breaker"
    db.session.commit()
    page.goto(f"{live_server.url}/campaigns/{tripped.id}")
    resume = page.get_by_role("button", name="Resume")
    assert resume.is_disabled()
    assert "only an admin can resume it" in page.locator(".campaign-controls").inner_text()
    assert "only an admin can resume it" in page.locator("#campaign-reason").inner_text()


def test_times_show_in_the_browsers_zone_and_a_start_typed_in_it_lands_at_the_right_instant(
    app, manager, live_server, open_page
):
    campaign = create_campaign(manager, 1, name="Tokyo morning")
    page = open_page(timezone_id=TOKYO)
    browser_login(page, live_server, MANAGER_EMAIL)
    page.goto(f"{live_server.url}/campaigns/{campaign.id}")
    created = page.locator("dl.facts time").first
    created_utc = fresh_campaign(campaign.id).created_at.astimezone(UTC)
    tokyo = created_utc.astimezone(ZoneInfo(TOKYO))
    expect(created).to_contain_text(tokyo.strftime("%H:%M"))
    expect(created).to_have_text(format_moment(created_utc, ZoneInfo(TOKYO)))  # "8 Dec 2026, 05:04 UTC+9"
    assert created.get_attribute("title") == format_utc(created_utc)

    page.get_by_role("link", name="Start…").click()
    # localtime.js names the zone once the new page has loaded: wait for it, then type in that zone.
    expect(page.locator("[data-tz-name]")).to_have_text(TOKYO)
    local = (datetime.now(ZoneInfo(TOKYO)) + timedelta(days=2)).replace(hour=9, minute=30, second=0, microsecond=0)
    page.get_by_label("Start at").fill(local.strftime("%Y-%m-%dT%H:%M"))
    page.get_by_role("button", name="Start sending").click()
    page.locator(".flash.success", has_text="Campaign scheduled").wait_for()
    scheduled = fresh_campaign(campaign.id).scheduled_at
    assert scheduled == local.astimezone(UTC)  # 09:30 in Tokyo is 00:30 UTC
    # The server writes UTC; localtime.js rewrites it once the page has loaded: wait for that.
    expect(page.locator(".flash.success")).to_contain_text("09:30")
    expect(page.locator("#scheduled-for")).to_contain_text("09:30")


def test_the_browser_writes_every_time_exactly_as_the_server_does(app, admin, manager, live_server, open_page):
    """localtime.js and the server share one format: a page the server wrote in UTC (the zone cookie
    says UTC) reads, once the script has run, exactly as the server writes it in the browser's zone."""
    from mailadmin.services.campaigns import pause_campaign

    campaign = create_campaign(manager, 2, name="Held")
    start_campaign(campaign, manager, enforce_throttle=False)
    pause_campaign(fresh_campaign(campaign.id), admin)
    zone = "Asia/Kolkata"  # UTC+5:30: minutes in the offset
    page = open_page(timezone_id=zone)
    browser_login(page, live_server, ADMIN_EMAIL)
    for path in ("/", f"/campaigns/{campaign.id}", "/admin/operations", "/admin/audit"):
        page.context.add_cookies([{"name": "mailadmin_tz", "value": "UTC", "url": live_server.url}])
        page.goto(f"{live_server.url}{path}")
        expect(page.locator("time[data-local]").first).to_contain_text("UTC+5:30")
        shown = page.eval_on_selector_all(
            "time[data-local]", "els => els.map(e => [e.getAttribute('datetime'), e.dataset.local, e.textContent])")
        assert shown, path
        for iso, style, text in shown:
            assert text == format_moment(datetime.fromisoformat(iso), ZoneInfo(zone), style), (path, iso, style)


def test_a_draft_loses_a_recipient_and_an_import_then_is_duplicated_and_deleted(app, manager, live_server, open_page):
    campaign = create_campaign(manager, ["ada@example.com", "alan@example.org", "grace@example.net"], name="Fix me")
    page = open_page()
    browser_login(page, live_server, MANAGER_EMAIL)
    page.goto(f"{live_server.url}/campaigns/{campaign.id}/recipients/import")
    page.get_by_label("Or paste addresses, one per line").fill("oops1@example.com\noops2@example.com\n")
    page.get_by_role("button", name="Import").click()
    page.locator("#import-summary").wait_for()
    page.get_by_role("button", name="Undo this import").click()
    page.locator(".flash.success", has_text="Last import undone: 2 recipients removed.").wait_for()

    page.get_by_role("button", name="Remove alan@example.org").click()
    page.locator(".flash.success", has_text="Recipient removed. 2 recipients left.").wait_for()
    emails = page.locator("table.recipients td[data-label='Email']").all_inner_texts()
    assert emails == ["ada@example.com", "grace@example.net"]
    assert page.locator("table.recipients td[data-label='#']").all_inner_texts() == ["1", "2"]

    page.get_by_role("button", name="Duplicate with recipients").click()
    page.locator(".flash.success", has_text="Draft “Fix me (copy)” created with 2 recipients.").wait_for()
    copy_url = page.url
    assert page.locator("h1").inner_text() == "Fix me (copy)"
    page.get_by_role("link", name="Delete draft…").click()
    page.get_by_role("button", name="Yes, delete this draft").click()
    page.locator(".flash.success", has_text="Draft “Fix me (copy)” deleted.").wait_for()
    assert page.goto(copy_url).status == 404
    names = db.session.scalars(select(Campaign.name).order_by(Campaign.id)).all()
    assert names == ["Fix me"]
    assert db.session.scalar(select(db.func.count()).select_from(Recipient)) == 2


def test_the_start_estimate_with_the_quota_used_up_says_when_it_will_finish(app, manager, live_server, open_page):
    maximum = app.config["SETTINGS"].smtp_max_per_hour
    reserve_send_tokens(get_redis(), maximum, maximum)
    campaign = create_campaign(manager, 21, name="After the quota")
    page = open_page()
    browser_login(page, live_server, MANAGER_EMAIL)
    page.goto(f"{live_server.url}/campaigns/{campaign.id}/start")
    estimate = page.locator("#start-estimate").inner_text()
    assert re.search(r"Finishes around \d\d:\d\d", estimate), estimate
    assert "the hourly quota holds it back" in estimate and "0 free now" in estimate
    assert "about 1 h" in estimate or "about 59 min" in estimate or "about 60 min" in estimate, estimate
    assert "3 min" not in estimate


def test_operations_page_and_audit_log_fit_a_phone(app, admin, manager, live_server, open_page):
    campaign = create_campaign(manager, 2, name="A campaign with a rather long name for a phone screen")
    start_campaign(campaign, manager, enforce_throttle=False)
    set_sending_paused(True, admin)
    page = open_page(**PHONE)
    browser_login(page, live_server, ADMIN_EMAIL)
    page.goto(f"{live_server.url}/admin/operations")
    assert page.get_by_role("heading", name="Operations").is_visible()
    open_checks = page.locator("section.check details[open]")
    assert open_checks.count() >= 1 and open_checks.count() < page.locator("section.check").count()
    assert no_horizontal_scroll(page), page.evaluate("document.documentElement.scrollWidth")
    page.goto(f"{live_server.url}/admin/audit")
    assert page.get_by_role("cell", name="All sending switched off").first.is_visible() or (
        "All sending switched off" in page.locator("#audit-events").inner_text()
    )
    assert no_horizontal_scroll(page), page.evaluate("document.documentElement.scrollWidth")
    page.get_by_role("textbox", name="Campaign").fill("rather long")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r"campaign=rather"))
    assert "Campaign started" in page.locator("#audit-events").inner_text()
    assert no_horizontal_scroll(page), page.evaluate("document.documentElement.scrollWidth")
