"""The Content-Security-Policy in a real browser: the vendored CSS and JS work under it (Chromium
reports no violation on any page), the preview's framed HTML keeps its inline styles, and the
framed document refuses to run its script."""

from __future__ import annotations

import re

import pytest

from tests.factories import ADMIN_EMAIL as ADMIN
from tests.factories import PASSWORD, make_draft

pytestmark = pytest.mark.browser

PAGES = ["/", "/campaigns/new", "/campaigns/{id}", "/campaigns/{id}/edit", "/campaigns/{id}/preview",
         "/campaigns/{id}/recipients/import", "/admin/sending", "/admin/audit", "/admin/users",
         "/admin/operations", "/account/password"]


def visit_every_page(page, campaign_id: int) -> dict:
    violations: list[str] = []
    page.on("console", lambda message: violations.append(message.text)
            if "Content Security Policy" in message.text or "Refused to" in message.text else None)
    page.goto("/login")
    page.get_by_label("Email").fill(ADMIN)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/campaigns$|/$"))
    looks = {}
    for path in PAGES:
        page.goto(path.format(id=campaign_id))
        page.wait_for_load_state("load")
        if path.endswith("/preview"):
            paragraph = page.frame_locator("iframe.mail-html").locator("p")
            looks["framed_color"] = paragraph.evaluate("p => getComputedStyle(p).color")
            looks["framed_script_ran"] = page.frame_locator("iframe.mail-html").locator("body").evaluate(
                "b => b.dataset.ran || ''")
        if path == "/campaigns/{id}":  # app.css is applied: a link styled as a button is laid out as one
            looks["button_background"] = page.locator("#start-link").evaluate("a => getComputedStyle(a).backgroundColor")
    looks["violations"] = violations
    return looks


def test_pages_work_under_the_csp_and_the_preview_frame_keeps_its_styles(browser_thread, browser_page, app, admin):
    campaign = make_draft(
        admin,
        body_html="<p style='color: rgb(200, 0, 0)'>Hello {{ name }}</p>"
        "<script>document.body.dataset.ran = 'yes'</script>",
        recipients="jane@example.com,Jane\n",
    )
    looks = browser_thread.call(visit_every_page, browser_page, campaign.id)

    assert looks["framed_color"] == "rgb(200, 0, 0)"  # the email's own inline style, in its frame
    assert looks["framed_script_ran"] == ""  # its script never ran
    assert looks["button_background"] not in ("", "rgba(0, 0, 0, 0)", "transparent")
    assert looks["violations"] == [], looks["violations"]


def read_the_api_reference(page) -> dict:
    violations: list[str] = []
    page.on("console", lambda message: violations.append(message.text)
            if "Content Security Policy" in message.text or "Refused to" in message.text else None)
    page.goto("/api/v1/docs")
    page.locator(".opblock").first.wait_for(timeout=20_000)
    return {"operations": page.locator(".opblock").count(), "title": page.locator(".title").first.inner_text(),
            "violations": violations}


def test_the_api_reference_renders_from_vendored_assets_under_the_csp(browser_thread, browser_page, app):
    looks = browser_thread.call(read_the_api_reference, browser_page)
    assert looks["operations"] >= 30 and "mailadmin" in looks["title"]
    assert looks["violations"] == [], looks["violations"]
