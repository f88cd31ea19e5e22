"""The suppression list for admins: search, add, remove with a reason, CSV import/export, and erasing a person."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import select

from mailadmin.extensions import db
from mailadmin.mail.bounces import BounceReport
from mailadmin.models import AuditEvent, Suppression
from mailadmin.pii import erasure_hash
from mailadmin.services.bounces import record_bounce
from mailadmin.services.recipients import import_recipients
from mailadmin.services.suppressions import is_suppressed, suppress
from tests.factories import create_campaign, recipient_of, sent_campaign
from tests.support.bounces import tables_holding
from tests.support.forms import csrf_token_from
from tests.support.web import flashes

PAGE = "/admin/suppressions"


def post(client, url: str, data: dict, **kwargs):
    token = csrf_token_from(client.get(PAGE).get_data(as_text=True))
    return client.post(url, data={**data, "csrf_token": token}, follow_redirects=True, **kwargs)


@pytest.fixture
def listed(app):
    suppress("jane@example.com", "hard_bounce", source="ses")
    suppress("joe@example.org", "complaint", source="sendgrid")
    suppress("ann@example.com", "unsubscribed", source="unsubscribe")


def test_only_admins_see_the_suppression_list(manager_client, admin_client):
    assert manager_client.get(PAGE).status_code in (403, 404)
    assert admin_client.get(PAGE).status_code == 200


@pytest.mark.parametrize(("query", "expected"), [
    ({"q": "jane"}, {"jane@example.com"}),
    ({"q": "@example.com"}, {"jane@example.com", "ann@example.com"}),
    ({"reason": "complaint"}, {"joe@example.org"}),
    ({"source": "unsubscribe"}, {"ann@example.com"}),
    ({"date_from": "2000-01-01", "date_to": "2000-01-02"}, set()),
])
def test_search_by_address_domain_reason_source_and_date(admin_client, listed, query, expected):
    html = admin_client.get(PAGE, query_string=query).get_data(as_text=True)
    shown = {address for address in ("jane@example.com", "joe@example.org", "ann@example.com")
             if f'data-email="{address}"' in html}
    assert shown == expected


def test_add_many_with_a_reason_reports_bad_rows(admin_client):
    response = post(admin_client, f"{PAGE}/add",
                    {"addresses": "one@example.com\nnot an address\nTwo@Example.com\none@example.com",
                     "reason": "manual", "note": "asked by phone"})
    messages = flashes(response.get_data(as_text=True))
    assert ("success", "2 addresses added to the suppression list, 1 already there.") in messages
    assert ("error", "1 row refused. Row 2: not a valid address.") in messages
    rows = db.session.scalars(select(Suppression).order_by(Suppression.email)).all()
    assert [(r.email, r.reason, r.source, r.note) for r in rows] == [
        ("one@example.com", "manual", "admin", "asked by phone"), ("two@example.com", "manual", "admin", "asked by phone")]


def test_removing_needs_a_reason_and_is_audited_without_the_address(admin_client, listed):
    entry = db.session.scalar(select(Suppression).where(Suppression.email == "jane@example.com"))
    refused = post(admin_client, f"{PAGE}/{entry.id}/remove", {"why": " "})
    assert ("error", "Say why the address may receive mail again.") in flashes(refused.get_data(as_text=True))
    assert is_suppressed("jane@example.com")
    post(admin_client, f"{PAGE}/{entry.id}/remove", {"why": "she wrote to us: new mailbox works"})
    assert not is_suppressed("jane@example.com")
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "suppression_removed"))
    assert event.details["why"] == "she wrote to us: new mailbox works"
    assert event.details["email_masked"] == "ja***@example.com"
    assert "jane@example.com" not in str(event.details)


def test_import_and_export_csv(admin_client):
    upload = b"email,reason\nimported@example.com,complaint\nplain@example.com\nbroken,manual\n"
    response = post(admin_client, f"{PAGE}/import",
                    {"file": (io.BytesIO(upload), "list.csv"), "reason": "manual", "note": "old system"},
                    content_type="multipart/form-data")
    messages = flashes(response.get_data(as_text=True))
    assert ("success", "2 addresses added to the suppression list, 0 already there.") in messages
    assert ("error", "1 row refused. Row 4: not a valid address.") in messages
    suppress("=cmd@example.com", "manual")
    export = admin_client.get(f"{PAGE}/export.csv").get_data(as_text=True).splitlines()
    assert export[0] == "email,reason,source,note,campaign_id,created_at"
    assert any(line.startswith("imported@example.com,complaint,import,old system,,") for line in export)
    assert any(line.startswith("plain@example.com,manual,import,") for line in export)
    assert any(line.startswith("'=cmd@example.com,") for line in export)  # never a spreadsheet formula
    only = admin_client.get(f"{PAGE}/export.csv", query_string={"reason": "complaint"}).get_data(as_text=True)
    assert len(only.splitlines()) == 2


@pytest.fixture
def one_mb_uploads(app_env):
    app_env["MAILER_MAX_UPLOAD_MB"] = "1"


def test_an_oversized_import_goes_back_to_the_list_with_the_limit_and_adds_nothing(one_mb_uploads, admin_client):
    """The import form posts to a POST-only URL: the browser is sent back to the page it came from."""
    big = io.BytesIO("\n".join(f"user{n}@example.com" for n in range(80_000)).encode())
    assert len(big.getvalue()) > 1024 * 1024
    token = csrf_token_from(admin_client.get(PAGE).get_data(as_text=True))
    response = admin_client.post(f"{PAGE}/import", data={"file": (big, "big.csv"), "reason": "manual", "csrf_token": token},
                                 content_type="multipart/form-data", headers={"Referer": f"http://localhost{PAGE}?q=x"})
    assert (response.status_code, response.headers["Location"]) == (303, f"{PAGE}?q=x")
    page = admin_client.get(response.headers["Location"])
    assert page.status_code == 200
    assert ("error", "The upload is too large. Maximum: 1 MB.") in flashes(page.get_data(as_text=True))
    assert db.session.scalar(select(Suppression.id)) is None


def test_an_oversized_post_never_redirects_off_site(one_mb_uploads, admin_client):
    for referrer in ("https://evil.example/admin/suppressions", "http://localhost//evil.example/x",
                     "http://localhost/\\evil.example/x", ""):
        big = io.BytesIO(b"x" * (1024 * 1024 + 1))
        response = admin_client.post(f"{PAGE}/import", data={"file": (big, "big.csv")},
                                     content_type="multipart/form-data", headers={"Referer": referrer})
        assert (response.status_code, response.headers["Location"]) == (303, "/"), referrer


def test_erasing_a_person_leaves_only_hashes_and_keeps_them_suppressed(admin_client, admin, manager):
    target = "Erin.Target@example.com"
    campaign = sent_campaign(manager, ["erin.target@example.com", "other@example.com"])
    record_bounce(BounceReport(target, "hard", "ses", "n-1"))
    suppress("unrelated@example.com", "manual")
    response = post(admin_client, f"{PAGE}/erase", {"email": target, "confirm": "y"})
    assert any(kind == "success" and "Person erased" in text for kind, text in flashes(response.get_data(as_text=True)))
    assert tables_holding("erin.target@example.com") == []
    assert recipient_of(campaign, "other@example.com").status == "sent"
    # Still suppressed, by hash: a new import skips the address, a new bounce does not re-add it in clear.
    assert is_suppressed(target)
    draft = create_campaign(manager, [])
    summary = import_recipients(draft, "Erin.Target@example.com\nfresh@example.com\n")
    assert (summary.added, summary.suppressed) == (1, 1)
    assert tables_holding("erin.target@example.com") == []  # imported as its marker, skipped
    again = import_recipients(draft, "erin.target@example.com\n")
    assert (again.added, again.suppressed, again.duplicates) == (0, 0, 1)
    record_bounce(BounceReport(target, "complaint", "sendgrid", "n-2"))
    assert db.session.scalar(select(Suppression).where(Suppression.email == "erin.target@example.com")) is None
    first = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "person_erased")).first()
    assert first.details == {"email_hash": erasure_hash(target, "test-salt"), "recipients": 1, "suppressions": 1,
                             "audit_events": 0, "contacts": 0, "memberships": 0}


def test_erasing_needs_the_confirmation(admin_client):
    suppress("keep@example.com", "manual")
    response = post(admin_client, f"{PAGE}/erase", {"email": "keep@example.com"})
    assert any(kind == "error" for kind, _ in flashes(response.get_data(as_text=True)))
    assert db.session.scalar(select(Suppression.email)) == "keep@example.com"
