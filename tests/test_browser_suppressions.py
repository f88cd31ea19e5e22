"""An admin in a real browser manages the suppression list: finds a suppressed address, removes it
with a reason, adds one, imports a CSV and erases a person — after which no text column of any
table holds that person's address in clear (headless Chromium + Playwright)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from mailadmin.extensions import db
from mailadmin.models import AuditEvent
from mailadmin.services.suppressions import is_suppressed, suppress
from tests.support import admin as admin_support
from tests.support.admin import ADMIN_EMAIL, browser_login, screenshot
from tests.support.bounces import sent_campaign, tables_holding

admin = admin_support.admin
manager = admin_support.manager
browser = admin_support.browser
live_server = admin_support.live_server
page = admin_support.page

pytestmark = pytest.mark.browser

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
    assert "1 address(es) added" in page.locator(".flash.success").inner_text()

    # Import a CSV.
    upload = tmp_path / "old-list.csv"
    upload.write_text("email,reason\nlegacy1@example.com,hard_bounce\nlegacy2@example.com,complaint\n")
    page.get_by_label("CSV file (email[,reason])").set_input_files(str(upload))
    page.get_by_role("button", name="Import").click()
    assert "2 address(es) added" in page.locator(".flash.success").inner_text()
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
