"""The audit log page: every admin action and campaign start, with filters and pagination."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from loguru import logger
from sqlalchemy import select

from mailadmin.extensions import db
from mailadmin.models import AuditEvent, Campaign
from mailadmin.services.audit import record_audit
from mailadmin.services.drafts import create_campaign
from tests.factories import ADMIN_EMAIL, MANAGER_EMAIL
from tests.support.web import click

# This module's fixtures (module-level names win over same-named fixtures other modules load as plugins).

_ROW = re.compile(r'<tr data-action="([^"]+)">')


def _rows(html: str) -> list[str]:
    """The action of each row of the audit table, top to bottom."""
    return _ROW.findall(html)


def _event(actor, action: str, *, at: datetime | None = None, campaign: Campaign | None = None, **kwargs) -> None:
    event = record_audit(actor, action, campaign_id=campaign.id if campaign else None, **kwargs)
    if at is not None:
        event.created_at = at
    db.session.commit()


@pytest.fixture
def campaign(manager) -> Campaign:
    return create_campaign(manager, "Spring news", "Hello {{ name }}", "Hi {{ name }}")


def test_audit_log_shows_who_did_what_to_which_campaign_and_the_state_change(admin_client, admin, campaign):
    _event(admin, "campaign_paused", campaign=campaign, from_status="sending", to_status="paused")
    html = admin_client.get("/admin/audit").get_data(as_text=True)
    row = html[html.index('<tr data-action="campaign_paused">') :]
    row = row[: row.index("</tr>")]
    assert ADMIN_EMAIL in row and "Spring news" in row and f"#{campaign.id}" in row
    assert re.search(r"Sending →</span> Paused", row) and "Campaign paused" in row
    assert re.search(r'<time datetime="[^"]+" title="\d{1,2} [A-Z][a-z]{2} \d{4}, \d\d:\d\d UTC"', row)


def test_system_actions_are_shown_as_system(admin_client, campaign):
    _event(None, "circuit_breaker_tripped", campaign=campaign, from_status="sending", to_status="paused")
    html = admin_client.get("/admin/audit").get_data(as_text=True)
    row = html[html.index('<tr data-action="circuit_breaker_tripped">') :]
    assert '<td data-label="Actor" class="actor">system</td>' in row[: row.index("</tr>")]


def test_user_management_is_audited_with_the_target_user(admin_client, manager):
    click(admin_client, "/admin/users", f"/admin/users/{manager.id}/role", {"role": "admin"})
    html = admin_client.get("/admin/audit?action=user_role_changed").get_data(as_text=True)
    assert _rows(html) == ["user_role_changed"]
    assert f"user: {MANAGER_EMAIL}" in html and "from: manager" in html and "to: admin" in html


def test_newest_events_come_first(admin_client, admin):
    now = datetime.now(UTC)
    _event(admin, "older", at=now - timedelta(hours=2))
    _event(admin, "newer", at=now - timedelta(hours=1))
    rows = _rows(admin_client.get("/admin/audit").get_data(as_text=True))
    assert [row for row in rows if row in ("newer", "older")] == ["newer", "older"]


def test_filter_by_actor_including_the_system(admin_client, admin, make_user):
    other = make_user("other.admin@example.com", role="admin")
    _event(admin, "by_first")
    _event(other, "by_other")
    _event(None, "by_system")
    assert _rows(admin_client.get(f"/admin/audit?actor={other.id}").get_data(as_text=True)) == ["by_other"]
    system_rows = _rows(admin_client.get("/admin/audit?actor=system").get_data(as_text=True))
    assert "by_system" in system_rows and "by_first" not in system_rows and "by_other" not in system_rows
    page = admin_client.get("/admin/audit").get_data(as_text=True)
    assert f'<option value="{other.id}">other.admin@example.com</option>' in page


def test_filter_by_action_and_campaign(admin_client, admin, manager, campaign):
    second = create_campaign(manager, "Autumn news", "Hello", "Hi")
    _event(admin, "campaign_paused", campaign=campaign)
    _event(admin, "campaign_resumed", campaign=campaign)
    _event(admin, "campaign_paused", campaign=second)
    html = admin_client.get(f"/admin/audit?action=campaign_paused&campaign={campaign.id}").get_data(as_text=True)
    assert _rows(html) == ["campaign_paused"]
    assert "Spring news" in html.split('id="audit-events"')[1] and "Autumn news" not in html
    assert len(_rows(admin_client.get(f"/admin/audit?campaign={second.id}").get_data(as_text=True))) == 1


def test_filter_by_campaign_name_finds_every_campaign_whose_name_contains_it(admin_client, admin, manager, campaign):
    second = create_campaign(manager, "Autumn news", "Hello", "Hi")
    third = create_campaign(manager, "Invoices", "Hello", "Hi")
    for each in (campaign, second, third):
        _event(admin, "campaign_paused", campaign=each)
    html = admin_client.get("/admin/audit?campaign=NEWS").get_data(as_text=True)
    table = html.split('id="audit-events"')[1]
    assert len(_rows(html)) == 2 and "Spring news" in table and "Autumn news" in table and "Invoices" not in table
    assert len(_rows(admin_client.get(f"/admin/audit?campaign=%23{third.id}").get_data(as_text=True))) == 1


def test_actions_read_as_words_and_the_action_filter_offers_them(admin_client, admin, campaign):
    _event(admin, "sending_switched_off", details={"campaigns_waiting": 1})
    html = admin_client.get("/admin/audit").get_data(as_text=True)
    assert '<option value="sending_switched_off">All sending switched off</option>' in html
    assert "<td data-label=\"Action\">All sending switched off</td>" in html and "campaigns waiting: 1" in html
    one = admin_client.get("/admin/audit?action=sending_switched_off").get_data(as_text=True)
    assert '<p class="muted" id="audit-count">1 event matching the filters.</p>' in one


def test_days_are_the_viewers_days(admin_client, admin):
    # 23:30 UTC on 1 March is already 2 March in Berlin (UTC+1).
    _event(admin, "late_evening_utc", at=datetime(2031, 3, 1, 23, 30, tzinfo=UTC))
    berlin = admin_client.get("/admin/audit?date_from=2031-03-02&date_to=2031-03-02&tz=Europe/Berlin")
    assert _rows(berlin.get_data(as_text=True)) == ["late_evening_utc"]
    utc = admin_client.get("/admin/audit?date_from=2031-03-02&date_to=2031-03-02")
    assert _rows(utc.get_data(as_text=True)) == []


def test_filter_by_date_range_is_inclusive_of_whole_days(admin_client, admin):
    _event(admin, "on_the_first", at=datetime(2031, 3, 1, 0, 0, 1, tzinfo=UTC))
    _event(admin, "late_on_the_second", at=datetime(2031, 3, 2, 23, 59, 59, tzinfo=UTC))
    _event(admin, "on_the_third", at=datetime(2031, 3, 3, 0, 0, 0, tzinfo=UTC))
    _event(admin, "before", at=datetime(2031, 2, 28, 23, 59, 59, tzinfo=UTC))
    html = admin_client.get("/admin/audit?date_from=2031-03-01&date_to=2031-03-02").get_data(as_text=True)
    assert _rows(html) == ["late_on_the_second", "on_the_first"]
    assert _rows(admin_client.get("/admin/audit?date_from=2031-03-03").get_data(as_text=True)) == ["on_the_third"]


def test_bad_filter_values_are_explained_not_a_crash(admin_client, admin):
    _event(admin, "something")
    response = admin_client.get("/admin/audit?date_from=yesterday&date_to=2031-13-01")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert html.count('class="field-error"') == 2
    assert "something" in _rows(html)  # the bad filters are ignored, the rest still applies


def test_audit_log_is_paginated_and_keeps_the_filters(admin_client, admin):
    start = datetime(2031, 1, 1, tzinfo=UTC)
    for i in range(60):
        _event(admin, "bulk_action", at=start + timedelta(minutes=i), details={"n": i})
    _event(admin, "other_action")
    first = admin_client.get("/admin/audit?action=bulk_action").get_data(as_text=True)
    assert len(_rows(first)) == 50 and "60 events matching the filters" in first
    assert "Page 1 of 2" in first
    next_link = re.search(r'<a href="([^"]+)" rel="next">', first).group(1).replace("&amp;", "&")
    assert "action=bulk_action" in next_link and "page=2" in next_link
    second = admin_client.get(next_link).get_data(as_text=True)
    assert _rows(second) == ["bulk_action"] * 10
    assert "n: 0" in second and "n: 59" not in second


def test_a_page_past_the_end_is_empty_not_an_error(admin_client, admin):
    _event(admin, "only")
    response = admin_client.get("/admin/audit?page=9")
    assert response.status_code == 200 and _rows(response.get_data(as_text=True)) == []


def test_audit_rows_are_also_structured_log_records(admin_client, manager):
    records: list[dict] = []
    sink = logger.add(lambda message: records.append(message.record), level="INFO")
    try:
        click(admin_client, "/admin/users", f"/admin/users/{manager.id}/disable")
    finally:
        logger.remove(sink)
    [record] = [r for r in records if r["message"] == "Audit: user_disabled"]
    admin_id = db.session.scalar(select(AuditEvent.actor_id).where(AuditEvent.action == "user_disabled"))
    assert record["extra"]["actor"] == admin_id and record["extra"]["action"] == "user_disabled"


def test_managers_get_403_on_the_audit_log(manager_client):
    assert manager_client.get("/admin/audit").status_code == 403
