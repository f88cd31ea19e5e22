"""The suppression list and the bounce reports through the API: admins keep the list; a manager's
token reads only their own campaigns' bounces."""

from __future__ import annotations

from mailadmin.extensions import db
from mailadmin.models import BounceEvent
from tests import factories
from tests.factories import bearer


def test_an_admin_adds_searches_and_removes_suppressions(client, admin):
    token = factories.api_token(admin)
    added = client.post("/api/v1/suppressions", headers=bearer(token),
                        json={"emails": ["Gone@Example.com", "not-an-address"], "note": "CRM says left"})
    assert added.status_code == 200, added.json
    assert (added.json["added"], added.json["already"], len(added.json["refused"])) == (1, 0, 1)
    found = client.get("/api/v1/suppressions?search=gone", headers=bearer(token)).json["items"]
    assert [(s["email"], s["reason"]) for s in found] == [("gone@example.com", "manual")]
    removed = client.delete(f"/api/v1/suppressions/{found[0]['id']}?why=asked+to+come+back", headers=bearer(token))
    assert removed.status_code == 204
    assert client.get("/api/v1/suppressions", headers=bearer(token)).json["items"] == []


def test_a_managers_token_may_not_touch_the_suppression_list(client, manager):
    token = factories.api_token(manager)
    assert client.get("/api/v1/suppressions", headers=bearer(token)).status_code == 403
    assert client.post("/api/v1/suppressions", headers=bearer(token), json={"emails": ["a@example.com"]}
                       ).status_code == 403


def test_bounces_are_listed_for_the_campaigns_one_may_see(client, manager, other_manager):
    mine, theirs = factories.create_campaign(manager, 1), factories.create_campaign(other_manager, 1)
    for key, campaign in (("a", mine), ("b", theirs)):
        db.session.add(BounceEvent(event_key=key, kind="hard", source="ses", email_hash="h" * 64,
                                   campaign_id=campaign.id))
    db.session.commit()
    token = factories.api_token(manager)
    items = client.get("/api/v1/bounces?kind=hard", headers=bearer(token)).json["items"]
    assert [b["campaign_id"] for b in items] == [mine.id]
