"""Lists and segments through the API: the CRM keeps a list's members in step and saves a segment
it then counts and samples; another manager's list or segment does not exist for it."""

from __future__ import annotations

from sqlalchemy import select

from mailadmin.extensions import db
from mailadmin.models import AuditEvent
from tests import factories
from tests.factories import bearer


def test_a_list_is_made_filled_changed_in_bulk_and_counted(client, manager):
    token = factories.api_token(manager)
    made = client.post("/api/v1/lists", headers=bearer(token), json={"name": "Customers"})
    assert made.status_code == 201, made.json
    list_id = made.json["id"]
    added = client.post(f"/api/v1/lists/{list_id}/members", headers=bearer(token),
                        json={"action": "add", "emails": ["a@example.com", "b@example.com", "nonsense"]})
    assert [r["outcome"] for r in added.json["results"]] == ["updated", "updated", "rejected"]
    client.post(f"/api/v1/lists/{list_id}/members", headers=bearer(token),
                json={"action": "remove", "emails": ["b@example.com"]})
    counts = client.get(f"/api/v1/lists/{list_id}", headers=bearer(token)).json
    assert (counts["subscribed"], counts["unsubscribed"]) == (1, 1)
    actions = db.session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()
    assert actions[-3:] == ["list_created", "list_members_changed", "list_members_changed"]


def test_a_segment_is_saved_counted_and_sampled(client, manager):
    token = factories.api_token(manager)
    customers = factories.create_list(manager, "Customers")
    ada = factories.add_member(customers, "ada@example.com")
    factories.add_member(customers, "bob@example.com")
    client.patch(f"/api/v1/contacts/{ada.id}", headers=bearer(token), json={"attributes": {"plan": "pro"}})
    segment = {"name": "Pro customers", "filter": {"match": "all", "conditions": [
        {"field": "list", "op": "subscribed", "value": customers.id},
        {"field": "attribute", "name": "plan", "op": "eq", "type": "text", "value": "pro"}]}}
    saved = client.post("/api/v1/segments", headers=bearer(token), json=segment)
    assert saved.status_code == 201, saved.json
    segment_id = saved.json["id"]
    assert client.get(f"/api/v1/segments/{segment_id}/count", headers=bearer(token)).json == {"count": 1}
    sample = client.get(f"/api/v1/segments/{segment_id}/sample", headers=bearer(token)).json["items"]
    assert [c["email"] for c in sample] == ["ada@example.com"]
    wrong = client.post("/api/v1/segments", headers=bearer(token),
                        json={"name": "x", "filter": {"conditions": [{"field": "nope"}]}})
    assert wrong.status_code == 422


def test_another_managers_list_and_segment_are_not_found(client, manager, other_manager):
    theirs = factories.create_list(other_manager, "Theirs")
    token = factories.api_token(manager)
    assert client.get(f"/api/v1/lists/{theirs.id}", headers=bearer(token)).status_code == 404
    assert client.post(f"/api/v1/lists/{theirs.id}/members", headers=bearer(token),
                       json={"action": "add", "emails": ["a@example.com"]}).status_code == 404
    assert client.get("/api/v1/lists", headers=bearer(token)).json == []
