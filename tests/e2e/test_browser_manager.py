"""A manager's whole journey in a real browser: headless Chromium through Playwright, the app
served by a real WSGI server, a real RQ worker process, the loopback SMTP server.

The browser lives in a thread of its own (`browser_thread`): each step below is a function of
the page run there; the test's thread checks the SMTP server and starts the worker between steps.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.factories import MANAGER_EMAIL as MANAGER
from tests.factories import PASSWORD, make_draft

pytestmark = pytest.mark.browser

CSV = (
    "email,name,city\n"
    "ada@example.com,Ada Lovelace,London\n"
    "alan@example.org,Alan Turing,Wilmslow\n"
    "ADA@example.com,Ada again,London\n"  # duplicate (case folded)
    "grace@example,Grace Hopper,Arlington\n"  # invalid: no dot in the domain (row 5)
    "linus@example.net,Linus Torvalds,Portland\n"
)


def log_in(page, email: str = MANAGER) -> None:
    """Through the login form, as a person would."""
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/campaigns$|/$"))


def create_campaign_and_import(page) -> None:
    log_in(page)
    page.get_by_role("link", name="New campaign").click()
    page.get_by_label("Campaign name").fill("Autumn letter")
    page.get_by_label("Subject").fill("News for {{ name }}")
    page.get_by_label("Text body").fill("Hello {{ name }} in {{ city }}!")
    page.get_by_role("button", name="Create draft").click()
    page.wait_for_url(re.compile(r"/recipients/import$"))
    assert "Draft “Autumn letter” saved." in page.locator(".flash").first.inner_text()

    page.get_by_label("CSV file").set_input_files(
        {"name": "recipients.csv", "mimeType": "text/csv", "buffer": CSV.encode()}
    )
    page.get_by_role("button", name="Import").click()
    summary = page.locator("#import-summary")
    summary.wait_for()
    assert summary.inner_text() == "3 added · 1 duplicate · 1 invalid · 0 suppressed"
    bad_row = page.locator("table.invalid-rows tbody tr").first
    assert bad_row.locator("td").first.inner_text() == "5"
    assert "grace@example" in bad_row.inner_text()


def send_test_email_to_self(page) -> None:
    page.get_by_role("link", name="Next: send a test email").click()
    assert page.get_by_label("Send the test email to").input_value() == MANAGER
    page.get_by_role("button", name="Send test email").click()
    assert page.locator(".flash.success").inner_text() == f"Test email sent to {MANAGER}."


def start_campaign(page) -> str:
    page.get_by_role("link", name="5. Start").click()
    assert page.locator("#start-count strong").inner_text() == "3"
    # 3 recipients with the whole quota free: seconds, not the "2 min" a quota-only estimate promised.
    assert page.locator("#start-estimate").inner_text().startswith("Under a minute for this campaign.")
    assert "100 free now" in page.locator("#start-quota").inner_text()
    page.get_by_role("button", name="Start sending").click()
    page.wait_for_url(re.compile(r"/campaigns/\d+$"))
    page.evaluate("window.__sameDocument = true")  # gone if anything reloads the page
    return page.url


def watch_it_finish(page, campaign_url: str) -> None:
    # Locator assertions, not wait_for_function: the page's CSP (no 'unsafe-eval') refuses string predicates.
    expect(page.locator("#campaign-progress")).to_have_attribute("aria-valuenow", "100", timeout=60_000)
    expect(page.locator(".page-head .status")).to_have_text("Finished", timeout=30_000)
    assert page.evaluate("window.__sameDocument === true"), "the page was reloaded"
    assert page.url == campaign_url
    assert page.locator('[data-bind="counts.sent"]').inner_text() == "3"
    assert page.locator('[data-bind="percent"]').first.inner_text() == "100"


@pytest.fixture
def fast_sending(app_env):
    """One recipient per send batch: the worker reports progress several times on the way to 100%."""
    app_env["MAILER_SEND_BATCH_SIZE"] = "1"


def test_a_manager_builds_tests_and_launches_a_campaign_and_watches_it_finish(
    fast_sending, app, smtp, manager, engine_processes, browser_thread, browser_page
):
    page = browser_page
    browser_thread.call(create_campaign_and_import, page)

    browser_thread.call(send_test_email_to_self, page)
    assert smtp.wait_for(1, timeout=10)
    (test_message,) = smtp.messages
    assert test_message.rcpt_tos == (MANAGER,)
    assert test_message.subject == "[Test] News for Ada Lovelace"
    smtp.clear_messages()

    engine_processes.worker()
    campaign_url = browser_thread.call(start_campaign, page)
    browser_thread.call(watch_it_finish, page, campaign_url)
    assert sorted(rcpt for message in smtp.messages for rcpt in message.rcpt_tos) == [
        "ada@example.com", "alan@example.org", "linus@example.net"
    ]


def upload_too_large_file(page, campaign_id: int) -> None:
    log_in(page)
    page.goto(f"/campaigns/{campaign_id}/recipients/import")
    big = "\n".join(f"user{n}@example.com,User {n}" for n in range(250_000)).encode()  # ~8 MB > 5 MB
    page.get_by_label("CSV file").set_input_files({"name": "big.csv", "mimeType": "text/csv", "buffer": big})
    page.get_by_role("button", name="Import").click()
    page.locator(".flash.error").wait_for()
    assert page.locator(".flash.error").inner_text() == "The upload is too large. Maximum: 5 MB."
    assert page.url.endswith(f"/campaigns/{campaign_id}/recipients/import")
    assert page.get_by_label("CSV file").is_visible()


def test_an_oversized_upload_in_the_browser_comes_back_to_the_form_with_a_message(
    app, manager, browser_thread, browser_page
):
    campaign = make_draft(manager)
    browser_thread.call(upload_too_large_file, browser_page, campaign.id)
