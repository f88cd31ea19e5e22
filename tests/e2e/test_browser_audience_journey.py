"""The audience journey end to end, with a real browser, a real worker and scheduler, and the SMTP
capture: a manager imports a CSV into a list, builds a segment on it, starts a campaign to the
segment; one recipient opens the one-click unsubscribe link of the message they were actually
delivered and unsubscribes; the next campaign to the whole list reaches everyone but them."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from mailadmin.extensions import db
from mailadmin.models import MailingList
from tests.factories import MANAGER_EMAIL, create_campaign
from tests.support.browser import browser_login, new_segment_with_attribute
from tests.support.engine import fast_engine, wait_finished

pytestmark = pytest.mark.browser

PEOPLE = {  # email: plan
    "ann@example.com": "pro",
    "bob@example.com": "free",
    "cy@example.com": "pro",
    "dee@example.com": "pro",
    "eve@example.com": "free",
}
PRO = sorted(email for email, plan in PEOPLE.items() if plan == "pro")
LINK = re.compile(r"<(https?://[^>]+)>")


@pytest.fixture(autouse=True)
def _fast_engine(app_env) -> None:
    app_env.update(fast_engine(1, 3))


def _csv(tmp_path):
    path = tmp_path / "customers.csv"
    path.write_text("email,name,plan\n" + "".join(f"{email},{email[:3].title()},{plan}\n"
                                                 for email, plan in PEOPLE.items()), encoding="utf-8")
    return path


def _import_list(page, tmp_path) -> None:
    page.get_by_role("link", name="Audiences").click()
    page.get_by_role("link", name="New list").click()
    page.get_by_label("Name").fill("Customers")
    page.get_by_role("button", name="Create list").click()
    page.get_by_role("link", name="Import CSV").click()
    page.get_by_label("CSV file").set_input_files(str(_csv(tmp_path)))
    page.get_by_role("button", name="Import").click()
    expect(page.locator("[data-import=state]")).to_have_text("done", timeout=60_000)
    expect(page.locator("[data-import=added]")).to_have_text(str(len(PEOPLE)))


def _build_segment(page, list_id: int) -> None:
    new_segment_with_attribute(page, "Pro customers", "plan", "pro")
    page.get_by_role("button", name="Add condition").click()
    page.locator('select[name="c-1-op"]').select_option("list:subscribed")
    page.locator('select[name="c-1-list"]').select_option(str(list_id))
    expect(page.locator("#segment-count")).to_have_text(str(len(PRO)))
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".flash.success")).to_have_text("Segment “Pro customers” saved.")


def _start(page, base: str, campaign_id: int, target: str, expected: int) -> None:
    page.goto(f"{base}/campaigns/{campaign_id}/audience")
    page.locator(f"#audience-{target} select").select_option("send")
    page.get_by_role("button", name="Save the audience").click()
    expect(page.locator("#resolved-count")).to_have_text(str(expected))
    page.get_by_role("link", name="Next: start").click()
    expect(page.locator("#start-count strong")).to_have_text(str(expected))
    page.get_by_role("button", name="Start sending").click()
    expect(page.locator(".flash.success")).to_have_text(f"Campaign started: {expected} recipients queued.")


def _delivered(smtp, subject: str) -> dict[str, object]:
    """{recipient: parsed message} of the messages the capture accepted with this subject."""
    found = {}
    for message in smtp.messages:
        if message.subject == subject:
            for address in message.rcpt_tos:
                found[address] = message.parsed()
    return found


def test_an_imported_list_a_segment_a_send_an_unsubscribe_from_the_mail_and_the_next_send_leaves_them_out(
        page, live_server, engine_processes, manager, smtp, tmp_path):
    engine_processes.worker()
    engine_processes.scheduler()
    violations: list[str] = []
    page.on("console", lambda message: violations.append(message.text)
            if "Content Security Policy" in message.text or "Refused to" in message.text else None)
    browser_login(page, live_server, MANAGER_EMAIL)

    _import_list(page, tmp_path)
    db.session.commit()
    list_id = db.session.scalar(db.select(MailingList.id).where(MailingList.name == "Customers"))
    _build_segment(page, list_id)
    first = create_campaign(manager, 0, name="Pro news", subject="Pro news")
    _start(page, live_server.url, first.id, "segments", len(PRO))
    wait_finished(first.id)
    delivered = _delivered(smtp, "Pro news")
    assert sorted(delivered) == PRO

    # Ann opens the link of the message she received (its List-Unsubscribe header) and unsubscribes.
    link = LINK.search(delivered["ann@example.com"]["List-Unsubscribe"]).group(1)
    page.context.clear_cookies()  # she is not the manager
    page.goto(live_server.url + urlsplit(link).path)
    page.get_by_role("button", name="Unsubscribe").click()
    expect(page.get_by_role("heading", name="You are unsubscribed")).to_be_visible()

    browser_login(page, live_server, MANAGER_EMAIL)
    second = create_campaign(manager, 0, name="Everyone news", subject="Everyone news")
    _start(page, live_server.url, second.id, "lists", len(PEOPLE) - 1)
    finished = wait_finished(second.id)

    assert sorted(_delivered(smtp, "Everyone news")) == sorted(set(PEOPLE) - {"ann@example.com"})
    assert (finished.sent_count, finished.recipients_total) == (len(PEOPLE) - 1, len(PEOPLE) - 1)
    assert len(smtp.messages) == len(PRO) + len(PEOPLE) - 1  # one message each, nobody twice
    assert violations == [], violations

