"""A manager in a real browser builds a segment in the editor (rows added by the script, the live count
following each change), sends a campaign to it and sees the resolved count on the start page and in
the started campaign — under the CSP, with no violation reported."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from mailadmin.extensions import db
from mailadmin.models import MailingList
from mailadmin.models.audience import ChangeSource, MembershipStatus
from mailadmin.models.campaign import QUEUED
from mailadmin.services.audiences.memberships import set_membership_status, upsert_contact
from mailadmin.services.transaction import transaction
from tests.factories import MANAGER_EMAIL, PASSWORD, create_campaign, fresh_campaign
from tests.support.browser import new_segment_with_attribute

pytestmark = pytest.mark.browser

PEOPLE = {  # email: (plan, status on Customers)
    "ann@example.com": ("pro", MembershipStatus.SUBSCRIBED),
    "dee@example.com": ("pro", MembershipStatus.SUBSCRIBED),
    "bob@example.com": ("free", MembershipStatus.SUBSCRIBED),
    "cy@example.com": ("pro", MembershipStatus.UNSUBSCRIBED),
}


def _customers(owner) -> int:
    with transaction():
        customers = MailingList(name="Customers", owner_id=owner.id)
        db.session.add(customers)
        db.session.flush()
        for email, (plan, status) in PEOPLE.items():
            contact = upsert_contact(email, ChangeSource.IMPORT, attributes={"plan": plan})
            set_membership_status(customers.id, contact.id, status, ChangeSource.IMPORT)
    return customers.id


def build_segment_and_send(page, campaign_id: int, list_id: int) -> dict:
    violations: list[str] = []
    page.on("console", lambda message: violations.append(message.text)
            if "Content Security Policy" in message.text or "Refused to" in message.text else None)
    page.goto("/login")
    page.get_by_label("Email").fill(MANAGER_EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/campaigns$|/$"))

    new_segment_with_attribute(page, "Pro customers", "plan", "pro")
    expect(page.locator("#segment-count")).to_have_text("3")  # ann, dee, cy: the live count, no reload
    url_before = page.url
    page.get_by_role("button", name="Add condition").click()
    assert page.url == url_before  # the script added the row in place
    page.locator('select[name="c-1-op"]').select_option("list:subscribed")
    page.locator('select[name="c-1-list"]').select_option(str(list_id))
    expect(page.locator("#segment-count")).to_have_text("2")
    expect(page.locator("#segment-sample li")).to_have_count(2)
    page.locator('input[name="c-0-value"]').fill("")
    page.locator('select[name="c-0-type"]').select_option("number")
    page.locator('select[name="c-0-op"]').select_option("attribute:gt")
    page.locator('input[name="c-0-value"]').fill("lots")
    expect(page.locator("#segment-problem")).to_have_text("Condition 1: 'plan' greater than needs a number")
    page.locator('select[name="c-0-type"]').select_option("text")
    page.locator('select[name="c-0-op"]').select_option("attribute:eq")
    page.locator('input[name="c-0-value"]').fill("pro")
    expect(page.locator("#segment-count")).to_have_text("2")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".flash.success")).to_have_text("Segment “Pro customers” saved.")

    page.goto(f"/campaigns/{campaign_id}/audience")
    page.locator("#audience-segments select").select_option("send")
    page.get_by_role("button", name="Save the audience").click()
    expect(page.locator("#resolved-count")).to_have_text("2")
    page.get_by_role("link", name="Next: start").click()
    start_count = page.locator("#start-count strong").inner_text()
    page.get_by_role("button", name="Start sending").click()
    started = page.locator(".flash.success").inner_text()
    return {"start_count": start_count, "started": started, "violations": violations}


def test_a_segment_built_in_the_editor_is_a_campaigns_audience_resolved_at_start(
        browser_thread, browser_page, app, manager):
    list_id = _customers(manager)
    campaign = create_campaign(manager, 0, name="Pro news")

    seen = browser_thread.call(build_segment_and_send, browser_page, campaign.id, list_id)

    assert seen["start_count"] == "2"
    assert seen["started"] == "Campaign started: 2 recipients queued."
    assert seen["violations"] == [], seen["violations"]
    started = fresh_campaign(campaign.id)
    assert (started.status, started.recipients_total) == (QUEUED, 2)
