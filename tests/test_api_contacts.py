"""The CRM keeps its people in sync through /api/v1/contacts: upserts one or thousands into a list,
finds them by id, address or attribute, changes attributes, deletes and erases."""

from __future__ import annotations

from sqlalchemy import func, select

from mailadmin.extensions import db
from mailadmin.models import AuditEvent, Contact
from mailadmin.models.audience import ListMembership
from tests import factories
from tests.factories import bearer


def test_one_contact_is_created_then_updated_by_its_address_into_a_list(client, manager):
    token = factories.api_token(manager)
    customers = factories.create_list(manager, "Customers")
    body = {"email": "Ada@Example.com", "name": "Ada", "attributes": {"plan": "pro", "seats": 12},
            "list_id": customers.id}
    created = client.post("/api/v1/contacts", headers=bearer(token), json=body)
    assert created.status_code == 201, created.json
    assert created.json["email"] == "ada@example.com" and created.json["attributes"] == {"plan": "pro", "seats": 12}
    updated = client.post("/api/v1/contacts", headers=bearer(token),
                          json={**body, "attributes": {"country": "DE"}})
    assert updated.status_code == 200 and updated.json["id"] == created.json["id"]
    assert updated.json["attributes"] == {"plan": "pro", "seats": 12, "country": "DE"}
    assert db.session.scalar(select(ListMembership.status)) == "subscribed"


def test_bulk_upsert_answers_each_row(client, manager):
    token = factories.api_token(manager)
    customers = factories.create_list(manager, "Customers")
    factories.add_member(customers, "known@example.com")
    rows = [{"email": "known@example.com", "attributes": {"plan": "free"}},
            {"email": "not an address"},
            {"email": "new@example.com", "name": "New"}]
    response = client.post("/api/v1/contacts/bulk", headers=bearer(token),
                           json={"list_id": customers.id, "contacts": rows})
    assert response.status_code == 200, response.json
    assert (response.json["created"], response.json["updated"], response.json["rejected"]) == (1, 1, 1)
    outcomes = [(r["row"], r["outcome"]) for r in response.json["results"]]
    assert outcomes == [(0, "updated"), (1, "rejected"), (2, "created")]
    assert response.json["results"][1]["error"] and response.json["results"][2]["contact_id"]
    audit = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "contacts_upserted"))
    assert audit.details["api_token"] == "CRM" and audit.details["rows"] == 3


def test_a_manager_must_name_a_list_and_may_not_use_anothers(client, manager, other_manager):
    token = factories.api_token(manager)
    theirs = factories.create_list(other_manager, "Theirs")
    assert client.post("/api/v1/contacts", headers=bearer(token), json={"email": "a@example.com"}).status_code == 422
    assert client.post("/api/v1/contacts", headers=bearer(token),
                       json={"email": "a@example.com", "list_id": theirs.id}).status_code == 404
    assert db.session.scalar(select(func.count()).select_from(Contact)) == 0


def test_contacts_are_found_by_id_address_and_attribute_and_only_when_visible(client, manager, other_manager):
    token = factories.api_token(manager)
    mine = factories.create_list(manager, "Mine")
    ada = factories.add_member(mine, "ada@example.com")
    theirs = factories.add_member(factories.create_list(other_manager, "Theirs"), "bob@example.com")
    client.patch(f"/api/v1/contacts/{ada.id}", headers=bearer(token), json={"attributes": {"plan": "pro"}})
    assert client.get(f"/api/v1/contacts/{ada.id}", headers=bearer(token)).json["attributes"] == {"plan": "pro"}
    assert client.get(f"/api/v1/contacts/{theirs.id}", headers=bearer(token)).status_code == 404
    by_address = client.get("/api/v1/contacts?email=ADA@example.com", headers=bearer(token)).json["items"]
    assert [c["id"] for c in by_address] == [ada.id]
    by_attribute = client.get("/api/v1/contacts?search=plan=pro", headers=bearer(token)).json["items"]
    assert [c["id"] for c in by_attribute] == [ada.id]
    assert client.get("/api/v1/contacts?email=bob@example.com", headers=bearer(token)).json["items"] == []


def test_delete_and_erase(client, manager, admin):
    mine = factories.create_list(manager, "Mine")
    ada = factories.add_member(mine, "ada@example.com")
    bob = factories.add_member(mine, "bob@example.com")
    manager_token, admin_token = factories.api_token(manager), factories.api_token(admin)
    deleted = client.delete(f"/api/v1/contacts/{ada.id}", headers=bearer(manager_token))
    assert deleted.json == {"deleted": True} and db.session.get(Contact, ada.id) is None
    assert client.post(f"/api/v1/contacts/{bob.id}/erase", headers=bearer(manager_token)).status_code == 403
    erased = client.post(f"/api/v1/contacts/{bob.id}/erase", headers=bearer(admin_token))
    assert erased.status_code == 200 and erased.json["contacts"] == 1
