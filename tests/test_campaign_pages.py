"""The manager dashboard's pages, through the real app, database, Redis and SMTP server."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, timedelta

import pytest
from sqlalchemy import select

from mailadmin.extensions import db
from mailadmin.models import Campaign, CampaignQueue, Recipient
from mailadmin.models.moments import format_moment
from mailadmin.models.types import utcnow
from tests.factories import make_draft, numbered_addresses, reload
from tests.support.forms import csrf_token_from
from tests.support.web import flashes, submit

XSS_NAME = '<script>alert("name")</script>'
XSS_SUBJECT = '<img src=x onerror=alert(1)> {{ name }}'


def text_of(response) -> str:
    return response.get_data(as_text=True)


# --- access ----------------------------------------------------------------------------------


def campaign_urls(campaign_id: int) -> list[tuple[str, str]]:
    """Every page and endpoint of one campaign, with the method a browser uses on it."""
    base = f"/campaigns/{campaign_id}"
    gets = ["", "/edit", "/preview", "/recipients/import", "/test-email", "/start", "/progress.json",
            "/sends-per-hour.svg", "/results.csv", "/cancel", "/delete", "/recipients/remove-all"]
    posts = ["/edit", "/recipients/import", "/test-email", "/start", "/pause", "/resume", "/cancel", "/duplicate",
             "/delete", "/recipients/remove-all", "/recipients/undo-import", "/recipients/1/remove"]
    return [("GET", base + path) for path in gets] + [("POST", base + path) for path in posts]


def test_another_managers_campaign_answers_404_on_every_page_and_endpoint(app, manager, other_client, smtp):
    campaign = make_draft(manager, recipients="jane@example.com\n")
    csrf = csrf_token_from(text_of(other_client.get("/campaigns/new")))
    for method, url in campaign_urls(campaign.id):
        data = {"csrf_token": csrf, "name": "x", "subject": "y", "body_text": "z", "to_address": "a@example.com",
                "text": "evil@example.com"}
        response = other_client.get(url) if method == "GET" else other_client.post(url, data=data)
        assert response.status_code == 404, (method, url, response.status_code)
    assert smtp.messages == []
    assert reload(campaign).recipients_total == 1 and reload(campaign).name == "Spring news"
    assert db.session.scalar(select(db.func.count()).select_from(Campaign)) == 1  # nothing duplicated
    assert f"/campaigns/{campaign.id}" not in text_of(other_client.get("/"))


def test_an_admin_sees_every_campaign_with_its_owner(app, manager, other_manager, admin_client):
    make_draft(manager, name="Mine")
    make_draft(other_manager, name="Theirs")
    page = text_of(admin_client.get("/"))
    assert "Mine" in page and "Theirs" in page
    assert '<th scope="col">Owner</th>' in page and "other.manager@example.com" in page


def test_a_manager_sees_only_their_own_campaigns_and_no_owner_column(app, manager, other_manager, manager_client):
    make_draft(manager, name="Mine")
    make_draft(other_manager, name="Theirs")
    page = text_of(manager_client.get("/"))
    assert "Mine" in page and "Theirs" not in page
    assert "Owner</th>" not in page


def test_a_post_without_a_csrf_token_is_refused(app, manager, manager_client):
    campaign = make_draft(manager)
    response = manager_client.post("/campaigns/new", data={"name": "n", "subject": "s", "body_text": "b"})
    assert response.status_code == 400 and "Form refused" in text_of(response)
    response = manager_client.post(f"/campaigns/{campaign.id}/recipients/import", data={"text": "x@example.com"})
    assert response.status_code == 400
    response = manager_client.post(f"/campaigns/{campaign.id}/start", data={})
    assert response.status_code == 400
    assert db.session.scalar(select(Campaign.id).where(Campaign.name == "n")) is None
    assert reload(campaign).recipients_total == 0 and reload(campaign).status == "draft"


# --- create / edit -----------------------------------------------------------------------------


def test_a_new_campaign_is_created_from_the_form(app, manager, manager_client):
    page = text_of(manager_client.get("/campaigns/new"))
    for field in ("name", "subject", "body_text", "body_html"):
        assert f'<label for="{field}">' in page and f'id="{field}"' in page
    assert "{{ name }}" in page and "Jane Doe" in page  # merge fields shown with an example
    response = submit(manager_client, "/campaigns/new",
                      {"name": "Autumn", "subject": "Hi {{ name }}", "body_text": "Hello\r\nthere", "body_html": ""})
    assert response.status_code == 303
    campaign = db.session.scalar(select(Campaign).where(Campaign.name == "Autumn"))
    assert campaign.owner_id == manager.id and campaign.status == "draft"
    assert campaign.body_text == "Hello\nthere" and campaign.body_html is None


def test_html_and_script_in_name_and_subject_are_shown_escaped(app, manager, manager_client, admin_client):
    campaign = make_draft(manager, name=XSS_NAME, subject=XSS_SUBJECT, recipients="jane@example.com,Jane\n")
    pages = [f"/campaigns/{campaign.id}", f"/campaigns/{campaign.id}/preview", f"/campaigns/{campaign.id}/start",
             f"/campaigns/{campaign.id}/edit", f"/campaigns/{campaign.id}/test-email", "/"]
    for client in (manager_client, admin_client):
        for url in pages:
            page = text_of(client.get(url))
            assert "<script>alert" not in page, url
            assert "<img src=x" not in page, url
        assert "&lt;script&gt;alert(&#34;name&#34;)&lt;/script&gt;" in text_of(client.get(f"/campaigns/{campaign.id}"))
    preview = text_of(manager_client.get(f"/campaigns/{campaign.id}/preview"))
    assert "&lt;img src=x onerror=alert(1)&gt; Jane" in preview


def test_cr_or_lf_in_the_subject_is_refused(app, manager, manager_client):
    for subject in ("Hello\r\nBcc: victim@example.com", "Hello\nthere", "Hello\rthere"):
        response = submit(manager_client, "/campaigns/new", {"name": "n", "subject": subject, "body_text": "b"})
        assert response.status_code == 400
        assert "The subject must be a single line: line breaks (CR/LF) are not allowed." in text_of(response)
    assert db.session.scalar(select(Campaign.id)) is None


def test_template_errors_are_shown_with_their_line(app, manager, manager_client):
    response = submit(manager_client, "/campaigns/new", {
        "name": "n", "subject": "Hi {{ name }", "body_text": "line one\nline two\n{% if name %}no end\n",
        "body_html": "<p>ok</p>\n{{ name.__class__ }}",
    })
    page = text_of(response)
    assert response.status_code == 400
    assert re.search(r'id="subject-error">Line 1: ', page)
    assert re.search(r'id="body_text-error">Line \d: .*endif', page)
    assert re.search(r'id="body_html-error">Line 2: .*__class__', page)
    assert ("error", "The campaign was not saved. Please fix the problems marked below.") in flashes(page)


def test_a_draft_can_be_edited_but_a_started_campaign_cannot(app, manager, manager_client):
    campaign = make_draft(manager)
    response = submit(manager_client, f"/campaigns/{campaign.id}/edit",
                      {"name": "Renamed", "subject": "S", "body_text": "B"}, follow_redirects=True)
    assert ("success", "Changes saved.") in flashes(text_of(response))
    assert reload(campaign).name == "Renamed"
    campaign = reload(campaign)
    campaign.status = "sending"
    db.session.commit()
    response = manager_client.get(f"/campaigns/{campaign.id}/edit", follow_redirects=True)
    assert ("warning", "Only a draft campaign can be changed. This campaign has already been started.") in flashes(
        text_of(response)
    )


def test_the_preview_is_rendered_for_a_sample_recipient(app, manager, manager_client):
    campaign = make_draft(manager, subject="Hi {{ name }}", body_text="Dear {{ name }} of {{ company }}",
                          body_html="<p>Hello <b>{{ name }}</b><script>alert(1)</script></p>")
    page = text_of(manager_client.get(f"/campaigns/{campaign.id}/preview"))
    assert "made-up sample recipient" in page and "Hi Jane Doe" in page
    from mailadmin.services.recipients import import_recipients

    import_recipients(campaign, "email,name,company\nreal@example.com,Real One,ACME\n")
    page = text_of(manager_client.get(f"/campaigns/{campaign.id}/preview"))
    assert "Hi Real One" in page and "Dear Real One of ACME" in page
    # The HTML part goes in a sandboxed frame of its own whose CSP runs no script: never in our page.
    recipient_id = db.session.scalar(select(Recipient.id).where(Recipient.campaign_id == campaign.id))
    frame_url = f"/campaigns/{campaign.id}/preview/html?recipient={recipient_id}"
    assert 'sandbox=""' in page and f'src="{frame_url.replace("&", "&amp;")}"' in page and "<script>alert" not in page
    frame = manager_client.get(frame_url)
    assert text_of(frame) == "<p>Hello <b>Real One</b><script>alert(1)</script></p>"
    assert "sandbox" in frame.headers["Content-Security-Policy"] and "script-src" not in frame.headers[
        "Content-Security-Policy"]


# --- uploads ----------------------------------------------------------------------------------


@pytest.fixture
def one_mb_uploads(app_env):
    app_env["MAILER_MAX_UPLOAD_MB"] = "1"


def test_an_oversized_upload_is_refused_with_a_message(one_mb_uploads, app, manager, manager_client):
    campaign = make_draft(manager)
    url = f"/campaigns/{campaign.id}/recipients/import"
    big = io.BytesIO(("\n".join(f"user{n}@example.com,User {n}" for n in range(60_000))).encode())
    assert len(big.getvalue()) > 1024 * 1024
    response = submit(manager_client, url, {"file": (big, "big.csv")}, content_type="multipart/form-data")
    assert response.status_code == 303 and response.headers["Location"].endswith(url)
    page = text_of(manager_client.get(url))
    assert ("error", "The upload is too large. Maximum: 1 MB.") in flashes(page)
    assert reload(campaign).recipients_total == 0


# --- campaign list ------------------------------------------------------------------------------


def started_campaign(owner, name="Live", status="deferred", reason="rate_limit", until_minutes=30, **counters):
    """A campaign as the send engine leaves it, written directly (display tests only)."""
    campaign = make_draft(owner, name=name, recipients=numbered_addresses(counters.pop("total", 10)))
    campaign.status = status
    campaign.started_at = utcnow() - timedelta(minutes=5)
    for key, value in counters.items():
        setattr(campaign, key, value)
    until = (utcnow() + timedelta(minutes=until_minutes)).replace(second=0, microsecond=0) if until_minutes else None
    db.session.add(CampaignQueue(campaign_id=campaign.id, defer_reason=reason, deferred_until=until))
    db.session.commit()
    return campaign, until


def test_the_list_says_why_a_campaign_waits_and_when_it_resumes(app, manager, manager_client):
    campaign, until = started_campaign(manager, sent_count=4, failed_count=1)
    page = without_tags(text_of(manager_client.get("/")))
    assert f"Waiting for the hourly quota — resumes at {format_moment(until, UTC, 'auto')}" in page
    page = text_of(manager_client.get("/"))
    assert 'aria-valuenow="50"' in page  # (4 sent + 1 failed) of 10
    assert "4</span> sent" in page


def test_a_campaign_paused_by_the_circuit_breaker_says_so(app, manager, manager_client):
    started_campaign(manager, status="paused", reason="circuit_breaker", until_minutes=None)
    page = text_of(manager_client.get("/"))
    assert "Paused by the circuit breaker after repeated SMTP errors" in page


def test_the_list_filters_by_status_and_is_paginated(app, manager, manager_client):
    for n in range(30):
        make_draft(manager, name=f"Draft {n:02d}")
    started_campaign(manager, name="The live one")
    page = text_of(manager_client.get("/?status=deferred"))
    assert "The live one" in page and "Draft 00" not in page
    first = text_of(manager_client.get("/"))
    assert "The live one" in first and "Page 1 of 2" in first and "Draft 29" in first and "Draft 05" not in first
    second = text_of(manager_client.get("/?page=2"))
    assert "Draft 00" in second and "Draft 29" not in second


# --- campaign page ------------------------------------------------------------------------------


def mark(campaign, email, **values):
    recipient = db.session.scalar(select(Recipient).where(Recipient.campaign_id == campaign.id, Recipient.email == email))
    for key, value in values.items():
        setattr(recipient, key, value)
    db.session.commit()


def test_progress_json_reports_counts_reason_and_resume_time(app, manager, manager_client):
    campaign, until = started_campaign(manager, total=4, sent_count=2, failed_count=1)
    mark(campaign, "user0@example.com", status="sent", sent_at=utcnow())
    mark(campaign, "user1@example.com", status="sent", sent_at=utcnow())
    mark(campaign, "user2@example.com", status="failed", last_error="SMTP 550", smtp_code=550)
    data = manager_client.get(f"/campaigns/{campaign.id}/progress.json").get_json()
    assert data["status"] == "deferred" and data["reason"] == "rate_limit"
    assert data["counts"] == {"pending": 1, "sending": 0, "sent": 2, "failed": 1, "skipped": 0, "unknown": 0,
                              "bounced": 0, "complained": 0}
    assert (data["total"], data["sent"], data["failed"], data["percent"]) == (4, 2, 1, 75)
    assert data["reason_text"].startswith("Waiting for the hourly quota — resumes at ")
    assert data["deferred_until"].startswith(until.strftime("%Y-%m-%dT%H:%M"))
    assert data["final"] is False


def test_the_campaign_page_shows_counts_chart_and_masked_last_errors(app, manager, manager_client, admin_client):
    campaign, _ = started_campaign(manager, status="sending", reason=None, until_minutes=None, total=5,
                                   sent_count=3, failed_count=1)
    hour_ago = utcnow() - timedelta(hours=1)
    mark(campaign, "user0@example.com", status="sent", sent_at=hour_ago)
    mark(campaign, "user1@example.com", status="sent", sent_at=utcnow())
    mark(campaign, "user2@example.com", status="sent", sent_at=utcnow())
    mark(campaign, "user3@example.com", status="failed", smtp_code=550, last_error="SMTP 550 at RCPT TO: no such user")
    page = text_of(manager_client.get(f"/campaigns/{campaign.id}"))
    assert 'data-bind="counts.sent">3<' in page and 'data-bind="counts.failed">1<' in page
    assert "<svg" in page and "Emails sent per hour (UTC)" in page and "3 emails sent over 2 hours" in page
    assert "us***@example.com" in page.split('id="errors-title"')[1].split("</table>")[0]
    assert "user3@example.com" not in page.split('id="errors-title"')[1].split("</table>")[0]
    assert 'src="/static/progress.js"' in page and 'data-progress-url="/campaigns/' in page
    admin_page = text_of(admin_client.get(f"/campaigns/{campaign.id}"))
    assert "user3@example.com" in admin_page.split('id="errors-title"')[1].split("</table>")[0]
    svg = manager_client.get(f"/campaigns/{campaign.id}/sends-per-hour.svg")
    assert svg.mimetype == "image/svg+xml" and svg.get_data(as_text=True).count("<rect") == 3  # background + 2 hours


def test_the_recipients_table_filters_by_status_and_searches(app, manager, manager_client):
    campaign = make_draft(manager, recipients="alice@example.com,Alice\nbob@example.org,Bob Stone\ncarol@example.com,Carol\n")
    mark(campaign, "bob@example.org", status="failed")
    base = f"/campaigns/{campaign.id}"
    assert ">bob@example.org<" in text_of(manager_client.get(base + "?status=failed"))
    assert ">alice@example.com<" not in text_of(manager_client.get(base + "?status=failed"))
    found = text_of(manager_client.get(base + "?q=STONE"))
    assert ">bob@example.org<" in found and ">carol@example.com<" not in found
    assert "No recipients match this filter." in text_of(manager_client.get(base + "?q=%25_"))


def test_the_recipients_table_is_paginated(app, manager, manager_client):
    campaign = make_draft(manager, recipients=numbered_addresses(120))
    first = text_of(manager_client.get(f"/campaigns/{campaign.id}"))
    assert "Page 1 of 3" in first and ">user0@example.com<" in first and ">user50@example.com<" not in first
    third = text_of(manager_client.get(f"/campaigns/{campaign.id}?page=3"))
    assert ">user119@example.com<" in third and ">user0@example.com<" not in third


def test_csv_formula_cells_are_escaped_on_export(app, manager, manager_client):
    campaign = make_draft(
        manager,
        recipients='email,name\nsum@example.com,=SUM(A1:A9)\nplus@example.com,+cmd\nminus@example.com,-2+3\n'
                   'at@example.com,@HYPERLINK("http://evil")\ntab@example.com,x\ncr@example.com,y\nplain@example.com,Plain Name\n',
    )
    mark(campaign, "plain@example.com", last_error="=HYPERLINK(\"x\")")
    mark(campaign, "tab@example.com", name="\tx")  # the import strips cells; a stored value may not be
    mark(campaign, "cr@example.com", name="\r=1+1")
    response = manager_client.get(f"/campaigns/{campaign.id}/results.csv")
    assert response.mimetype == "text/csv"
    assert f'filename="campaign-{campaign.id}-results.csv"' in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(text_of(response))))
    assert rows[0] == ["email", "name", "status", "attempts", "smtp_code", "last_error", "soft_bounces", "sent_at"]
    names = {row[0]: row[1] for row in rows[1:]}
    assert names == {
        "sum@example.com": "'=SUM(A1:A9)",
        "plus@example.com": "'+cmd",
        "minus@example.com": "'-2+3",
        "at@example.com": "'@HYPERLINK(\"http://evil\")",
        "tab@example.com": "'\tx",
        "cr@example.com": "'\r=1+1",
        "plain@example.com": "Plain Name",
    }
    assert [row[5] for row in rows if row[0] == "plain@example.com"] == ["'=HYPERLINK(\"x\")"]


def test_csv_export_of_a_campaign_with_many_recipients_is_complete(app, manager, manager_client):
    campaign = make_draft(manager, recipients=numbered_addresses(2500))
    rows = list(csv.reader(io.StringIO(text_of(manager_client.get(f"/campaigns/{campaign.id}/results.csv")))))
    assert len(rows) == 2501 and rows[-1][0] == "user2499@example.com"


# --- start ---------------------------------------------------------------------------------------


def without_tags(html: str) -> str:
    """The page's text as a person reads it (without a zone cookie: times in UTC)."""
    return re.sub(r"<[^>]+>", "", html)


def start(client, campaign, scheduled_at: str = ""):
    return submit(client, f"/campaigns/{campaign.id}/start", {"scheduled_at": scheduled_at}, follow_redirects=True)


def test_the_start_page_shows_the_recipient_count_and_the_current_quota(app, manager, manager_client):
    campaign = make_draft(manager, recipients=numbered_addresses(417))
    page = text_of(manager_client.get(f"/campaigns/{campaign.id}/start"))
    assert "<strong>417</strong>" in page
    # 100 go now, then each hour frees 100 more: the last of 417 waits four hours for the quota.
    estimate = re.sub(r"\s+", " ", re.search(r'<dd id="start-estimate">(.*?)</dd>', page, re.S).group(1))
    assert "Finishes around" in estimate and "(about 4 h): the hourly quota holds it back." in estimate
    assert "Sending quota 100 messages per rolling hour, shared by all campaigns: 100 free now." in estimate
    assert '<label for="scheduled_at">' in page and 'type="datetime-local"' in page


def test_starting_a_campaign_queues_it_and_shows_its_page(app, manager, manager_client):
    campaign = make_draft(manager, recipients=numbered_addresses(3))
    response = start(manager_client, campaign)
    assert ("success", "Campaign started: 3 recipients queued.") in flashes(text_of(response))
    assert response.request.path == f"/campaigns/{campaign.id}"
    assert reload(campaign).status == "queued"


def test_the_eleventh_start_in_an_hour_is_refused_with_the_spec_text(app, manager, manager_client):
    campaigns = [make_draft(manager, name=f"C{n}", recipients="a@example.com\n") for n in range(11)]
    for campaign in campaigns[:10]:
        assert flashes(text_of(start(manager_client, campaign)))[0][0] == "success"
    response = start(manager_client, campaigns[10])
    assert response.status_code == 429
    assert ("error", "Campaign start limit reached (10 starts per hour).") in flashes(text_of(response))
    assert reload(campaigns[10]).status == "draft"


@pytest.fixture
def three_starts_per_hour(app_env):
    app_env["MAILER_THROTTLE_CAMPAIGN_START_PER_HOUR"] = "3"


def test_the_start_limit_message_names_the_configured_number(three_starts_per_hour, app, manager, manager_client):
    campaigns = [make_draft(manager, name=f"C{n}", recipients="a@example.com\n") for n in range(4)]
    for campaign in campaigns[:3]:
        start(manager_client, campaign)
    response = start(manager_client, campaigns[3])
    assert ("error", "Campaign start limit reached (3 starts per hour).") in flashes(text_of(response))


def test_a_start_is_refused_when_redis_is_down(app_with_own_redis, own_redis, manager, manager_client):
    campaign = make_draft(manager, recipients="a@example.com\n")
    own_redis.stop()
    response = start(manager_client, campaign)
    assert response.status_code == 503
    assert ("error", "Service temporarily unavailable. Please try again later.") in flashes(text_of(response))
    assert reload(campaign).status == "draft"


def test_a_campaign_over_the_recipient_cap_is_refused_at_start(app, manager, manager_client):
    campaign = make_draft(manager, recipients=numbered_addresses(10_001))
    assert reload(campaign).recipients_total == 10_001  # the cap applies at start, not at import
    page = text_of(manager_client.get(f"/campaigns/{campaign.id}/start"))
    assert "Split it into several campaigns." in page
    response = start(manager_client, campaign)
    assert response.status_code == 409
    assert (
        "error", "Campaign is too large (10001 recipients). Maximum: 10000. Split it into several campaigns."
    ) in flashes(text_of(response))
    assert reload(campaign).status == "draft"


def test_a_scheduled_start_waits_and_says_when_it_starts(app, manager, manager_client):
    campaign = make_draft(manager, recipients="a@example.com\n")
    when = (utcnow() + timedelta(days=2)).replace(second=0, microsecond=0)
    response = start(manager_client, campaign, when.strftime("%Y-%m-%dT%H:%M"))
    assert flashes(text_of(response))[0][0] == "success"
    campaign = reload(campaign)
    assert campaign.status == "deferred" and campaign.queue.defer_reason == "scheduled"
    assert campaign.queue.deferred_until == when
    assert f"Scheduled start — starts at {format_moment(when, UTC, 'auto')}" in without_tags(text_of(response))
    assert f'<time datetime="{when.isoformat()}"' in text_of(response)


def test_a_start_time_in_the_past_is_refused(app, manager, manager_client):
    campaign = make_draft(manager, recipients="a@example.com\n")
    response = start(manager_client, campaign, "2001-01-01T10:00")
    assert response.status_code == 400
    assert ("error", "The start time must be in the future (times are in your time zone, UTC).") in flashes(
        text_of(response)
    )
    assert reload(campaign).status == "draft"


@pytest.fixture
def five_recipients_at_most(app_env):
    app_env["MAILER_MAX_CAMPAIGN_RECIPIENTS"] = "5"


def test_the_size_cap_message_names_the_configured_maximum(five_recipients_at_most, app, manager, manager_client):
    campaign = make_draft(manager, recipients=numbered_addresses(6))
    response = start(manager_client, campaign)
    assert (
        "error", "Campaign is too large (6 recipients). Maximum: 5. Split it into several campaigns."
    ) in flashes(text_of(response))
