"""An admin in a real browser: pauses a campaign while a real worker sends it, resumes it, switches all
sending off and on, and finds each action in the audit log; manages the suppression list (finds,
removes, adds, imports, erases a person — after which no text column of any table holds that
person's address in clear). Headless Chromium + Playwright."""

from __future__ import annotations

import re
import time

import pytest
from sqlalchemy import select

from mailadmin.extensions import db
from mailadmin.models import AuditEvent
from mailadmin.services.campaigns import start_campaign
from mailadmin.services.suppressions import is_suppressed, suppress
from tests.factories import (
    ADMIN_EMAIL,
    create_campaign,
    fresh_campaign,
    recipient_address,
    recipient_statuses,
    sent_campaign,
)
from tests.support.bounces import tables_holding
from tests.support.browser import browser_login, screenshot
from tests.support.waiting import wait_until

pytestmark = pytest.mark.browser

RECIPIENTS = 30
SECONDS_PER_MESSAGE = 0.25  # the SMTP server answers slowly so that the pause lands mid-campaign
BANNER = "#global-pause-banner"


@pytest.fixture
def small_batches(app_env):
    app_env["MAILER_SEND_BATCH_SIZE"] = "3"
    # One connection: 30 slow messages take 7.5 s, so the pause lands mid-campaign even when the
    # browser is slow to load the page on a busy machine.
    app_env["MAILER_SMTP_CONNECTIONS"] = "1"


@pytest.mark.usefixtures("small_batches")
def test_admin_pauses_resumes_switches_sending_and_sees_it_all_in_the_audit_log(
    app, admin, manager, smtp, live_server, page, engine_processes
):
    smtp.delay_per_message(SECONDS_PER_MESSAGE)
    campaign = create_campaign(manager, RECIPIENTS, name="Browser campaign")
    engine_processes.worker()
    start_campaign(campaign, manager, enforce_throttle=False)

    browser_login(page, live_server, ADMIN_EMAIL)
    page.goto(f"{live_server.url}/campaigns/{campaign.id}")
    assert smtp.wait_for(3, timeout=20), "the worker did not start sending"

    # Pause while the worker is sending: the SMTP server receives nothing for it a second later.
    clicked_at = time.time()
    page.locator('[data-action="pause"]').click()
    page.wait_for_selector('[data-action="resume"]')
    assert "paused. Sending stops before its next message." in page.locator(".flash.success").inner_text()
    screenshot(page, "campaign-paused")
    wait_until(lambda: time.time() > clicked_at + 1.0, 5)
    received_when_paused = len(smtp.messages)
    assert not smtp.wait_for(received_when_paused + 1, timeout=2.0), "messages kept arriving after the pause"
    assert max(m.received_at for m in smtp.messages) <= clicked_at + 1.0
    assert received_when_paused < RECIPIENTS
    paused = fresh_campaign(campaign.id)
    assert paused.status == "paused" and paused.queue.defer_reason == "admin_pause"
    assert "sending" not in recipient_statuses(campaign.id)

    # Resume: it completes, and every recipient got exactly one message.
    page.locator('[data-action="resume"]').click()
    page.wait_for_selector(".flash.success >> text=resumed")
    smtp.delay_per_message(0.02)
    wait_until(lambda: fresh_campaign(campaign.id).status == "finished", 30, message="the campaign to finish")
    received = smtp.recipients()
    assert received == {recipient_address(i): 1 for i in range(RECIPIENTS)}
    assert recipient_statuses(campaign.id) == {"sent": RECIPIENTS}
    page.reload()
    assert page.locator('[data-action="pause"], [data-action="resume"]').count() == 0
    screenshot(page, "campaign-finished")

    # The global switch: off shows the banner on every page, on removes it.
    page.get_by_role("link", name="Sending").click()
    page.get_by_role("button", name="Pause all sending").click()
    page.wait_for_selector(BANNER)
    assert "All sending is switched off" in page.locator("#sending-switch").inner_text()
    screenshot(page, "sending-off")
    page.get_by_role("link", name="Campaigns").first.click()
    assert page.locator(BANNER).is_visible()
    page.get_by_role("link", name="Sending").click()
    page.get_by_role("button", name="Resume all sending").click()
    page.wait_for_selector(".flash.success >> text=switched back on")
    assert page.locator(BANNER).count() == 0
    screenshot(page, "sending-on")

    # The audit log has each action, by this admin; filtering by action through the form works.
    page.get_by_role("link", name="Audit log").click()
    rows = page.locator("#audit-events tbody tr")
    actions = [row.get_attribute("data-action") for row in rows.all()]
    for action in ("campaign_paused", "campaign_resumed", "sending_switched_off", "sending_switched_on"):
        assert action in actions, actions
    paused_row = page.locator('#audit-events tr[data-action="campaign_paused"]')
    assert ADMIN_EMAIL in paused_row.inner_text() and "Browser campaign" in paused_row.inner_text()
    assert re.search(r"(Sending|Queued) → Paused", paused_row.inner_text()) and "Campaign paused" in paused_row.inner_text()
    screenshot(page, "audit")
    page.get_by_label("Action").select_option(label="Campaign resumed")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r"action=campaign_resumed"))
    assert [row.get_attribute("data-action") for row in rows.all()] == ["campaign_resumed"]


# --- the suppression list ------------------------------------------------------------------------

ERASED = "rose.private@example.com"


def test_admin_finds_removes_adds_imports_and_erases(app, admin, manager, live_server, page, tmp_path):
    sent_campaign(manager, [ERASED, "colleague@example.com"])
    suppress("moved.away@example.org", "hard_bounce", source="ses")
    suppress(ERASED, "complaint", source="sendgrid")
    browser_login(page, live_server, ADMIN_EMAIL)
    page.get_by_role("link", name="Suppression list").click()

    # Find by domain, then remove with a reason.
    page.get_by_label("Address or @domain").fill("@example.org")
    page.get_by_role("button", name="Search").click()
    row = page.locator('tr[data-email="moved.away@example.org"]')
    assert page.locator("#suppression-count").inner_text().startswith("1 address")
    row.get_by_placeholder("Why?").fill("confirmed the new mailbox by phone")
    row.get_by_role("button", name="Remove").click()
    assert "Removed from the suppression list" in page.locator(".flash.success").inner_text()
    assert not is_suppressed("moved.away@example.org")

    # Add one.
    page.get_by_label("Addresses (one per line)").fill("no.more.mail@example.net")
    page.locator("#add-suppressions").get_by_label("Note (why)").fill("asked at the front desk")
    page.get_by_role("button", name="Add to the suppression list").click()
    assert "1 address added" in page.locator(".flash.success").inner_text()

    # Import a CSV.
    upload = tmp_path / "old-list.csv"
    upload.write_text("email,reason\nlegacy1@example.com,hard_bounce\nlegacy2@example.com,complaint\n")
    page.get_by_label("CSV file (email[,reason])").set_input_files(str(upload))
    page.get_by_role("button", name="Import").click()
    assert "2 addresses added" in page.locator(".flash.success").inner_text()
    assert is_suppressed("legacy1@example.com") and is_suppressed("legacy2@example.com")

    # Erase a person.
    page.get_by_label("Address of the person to erase").fill(ERASED)
    page.get_by_label("I understand").check()
    page.get_by_role("button", name="Erase this person").click()
    assert "Person erased" in page.locator(".flash.success").inner_text()
    screenshot(page, "suppressions-after-erase")

    db.session.expire_all()
    assert tables_holding(ERASED) == []
    assert is_suppressed(ERASED)
    assert page.locator(f'tr[data-email="{ERASED}"]').count() == 0
    actions = set(db.session.scalars(select(AuditEvent.action)))
    assert {"suppression_removed", "suppressions_added", "suppressions_imported", "person_erased"} <= actions
