"""The public audience pages in a real browser: a person signs up on a double opt-in list's hosted
form, the confirmation mail reaches the SMTP capture, its link confirms, and the preference page's
switch takes them off the list — with no Content-Security-Policy violation on any of these pages."""

from __future__ import annotations

import re

import pytest

from mailadmin.extensions import get_settings
from mailadmin.mail.unsubscribe import make_preferences_token
from mailadmin.services.audiences.bounds import MIN_FILL_SECONDS
from tests.factories import add_member, create_list, membership_history, membership_status
from tests.support.jobs import run_queued_jobs

pytestmark = pytest.mark.browser

CONFIRM_LINK = re.compile(r"http://mailadmin\.test(/subscribe/confirm/[A-Za-z0-9_.\-]+)")


def watch_csp(page) -> list[str]:
    violations: list[str] = []
    page.on("console", lambda message: violations.append(message.text)
            if "Content Security Policy" in message.text or "Refused to" in message.text else None)
    return violations


def sign_up_in_the_browser(page, public_id: str) -> str:
    page.goto(f"/subscribe/{public_id}")
    page.get_by_label("Email address").fill("jane@example.com")
    page.get_by_label("Name (optional)").fill("Jane")
    # A person takes at least this long to fill in the form; sooner is refused as a bot.
    page.wait_for_timeout(MIN_FILL_SECONDS * 1000 + 300)
    page.get_by_role("button", name="Subscribe").click()
    return page.locator("h1").inner_text()


def confirm_in_the_browser(page, path: str) -> str:
    page.goto(path)
    page.get_by_role("button", name="Confirm my subscription").click()
    return page.locator("h1").inner_text()


def switch_off_in_the_browser(page, path: str, list_name: str) -> tuple[bool, str]:
    page.goto(path)
    switch = page.get_by_role("switch", name=list_name)
    was_on = switch.is_checked()
    switch.uncheck()
    page.get_by_role("button", name="Save my choices").click()
    return was_on, page.locator("#preferences-saved").inner_text()


def test_hosted_form_confirmation_link_and_preference_page_in_a_browser(browser_thread, browser_page, app, app_env,
                                                                         manager, smtp):
    news = create_list(manager, "Product news", opt_in="double", published=True)
    offers = create_list(manager, "Offers")
    violations = browser_thread.call(watch_csp, browser_page)

    heading = browser_thread.call(sign_up_in_the_browser, browser_page, news.public_id)
    assert heading == "Thank you"

    run_queued_jobs(app_env["REDIS_URL"])
    [mail] = smtp.messages
    path = CONFIRM_LINK.search(mail.parsed().get_content()).group(1)
    assert browser_thread.call(confirm_in_the_browser, browser_page, path) == "You are subscribed"

    jane = add_member(offers, "jane@example.com")
    assert membership_status(news, jane) == "subscribed"
    preferences = f"/p/{make_preferences_token(get_settings().secret_key, jane.id)}"
    was_on, saved = browser_thread.call(switch_off_in_the_browser, browser_page, preferences, "Product news")

    assert was_on and "1 change" in saved
    assert (membership_status(news, jane), membership_status(offers, jane)) == ("unsubscribed", "subscribed")
    assert [source for _, _, source in membership_history(news, jane)] == ["form", "confirmation", "preferences"]
    assert violations == [], violations
