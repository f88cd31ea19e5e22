"""Audiences in a real browser with a real worker: a manager creates a list, imports a CSV and
watches the progress bar (polled by static JS under the CSP) turn into the result with the rejected
row by its spreadsheet row and its CSV, then searches the members by attribute and moves one to
another status, which the contact's page shows in its history."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.factories import MANAGER_EMAIL
from tests.support.browser import browser_login

pytestmark = pytest.mark.browser

ROWS = 3000


def _people_csv(tmp_path):
    lines = ["email,name,plan,seats"]
    lines += [f"person{n:05d}@example.com,Person {n},{'pro' if n % 3 == 0 else 'free'},{n % 7}" for n in range(ROWS)]
    lines.insert(5, "not-an-address,Nobody,pro,1")  # spreadsheet row 6
    path = tmp_path / "people.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_manager_imports_a_list_and_works_with_its_members_in_the_browser(
        page, live_server, engine_processes, manager, tmp_path):
    violations: list[str] = []
    page.on("console", lambda message: violations.append(message.text)
            if "Content Security Policy" in message.text or "Refused to" in message.text else None)
    engine_processes.worker()
    browser_login(page, live_server, MANAGER_EMAIL)

    page.get_by_role("link", name="Audiences").click()
    page.get_by_role("link", name="New list").click()
    page.get_by_label("Name").fill("Customers")
    page.get_by_role("button", name="Create list").click()
    expect(page.get_by_role("heading", name="Customers")).to_be_visible()

    page.get_by_role("link", name="Import CSV").click()
    page.get_by_label("CSV file").set_input_files(str(_people_csv(tmp_path)))
    page.get_by_role("button", name="Import").click()
    page.wait_for_url(re.compile(r"/audiences/imports/\w+$"))
    # The JS polls the progress and reloads the page once the worker is done: the result appears.
    expect(page.locator("#rejected-rows")).to_be_visible(timeout=60_000)
    expect(page.locator("[data-import=state]")).to_have_text("done")
    expect(page.locator("#import-bar")).to_have_attribute("value", "100")
    expect(page.locator("[data-import=added]")).to_have_text(str(ROWS))
    expect(page.locator("#rejected-rows tbody tr").first).to_contain_text("6")
    expect(page.locator("#import-columns")).to_contain_text("number")
    with page.expect_download() as download:
        page.locator("#rejected-download").click()
    assert "not-an-address" in open(download.value.path(), encoding="utf-8").read()

    page.get_by_role("link", name="See the list").click()
    page.get_by_role("searchbox", name="Search").fill("seats=6")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("tr[data-email='person02995@example.com']")).to_be_visible()  # 2995 % 7 == 6, newest
    expect(page.locator("tr[data-email='person02999@example.com']")).to_have_count(0)
    page.get_by_role("searchbox", name="Search").fill("person00006@")
    page.get_by_role("button", name="Search").click()
    row = page.locator("tr[data-email='person00006@example.com']")
    expect(row).to_be_visible()
    row.get_by_label("New status of person00006@example.com").select_option("unsubscribed")
    row.get_by_role("button", name="Set").click()
    expect(page.locator(".flash")).to_contain_text("Status changed")

    page.goto(f"{live_server.url}/audiences/contacts?q=person00006")
    page.get_by_role("link", name="person00006@example.com").click()
    expect(page.locator(".history")).to_contain_text("subscribed → unsubscribed (page)")
    expect(page.locator("#attributes")).to_contain_text("pro")
    assert violations == [], violations
