"""A person's data: the admin's JSON export of everything stored about an address, and the erase
that now takes the contact, its memberships and their history with it (the audit keeps the hash)."""

from __future__ import annotations

import json

from sqlalchemy import func, select

from mailadmin.extensions import db
from mailadmin.mail.bounces import BounceReport
from mailadmin.models import AuditEvent, Contact, ListMembership, MembershipChange
from mailadmin.pii import erasure_hash
from mailadmin.services.bounces import record_bounce
from mailadmin.services.suppressions import is_suppressed
from tests.factories import add_member, create_list, sent_campaign
from tests.support.bounces import tables_holding
from tests.support.web import submit

PAGE = "/admin/suppressions"
ERIN = "erin@example.com"


def a_person_with_history(manager):
    news, offers = create_list(manager, "News"), create_list(manager, "Offers")
    erin = add_member(news, ERIN, name="Erin Example")
    add_member(offers, ERIN)
    add_member(offers, "other@example.com")
    from mailadmin.models.audience import ChangeSource
    from mailadmin.services.audiences.memberships import set_membership_status, upsert_contact

    upsert_contact(ERIN, ChangeSource.IMPORT, attributes={"plan": "pro", "seats": 12})
    set_membership_status(offers.id, erin.id, "unsubscribed", ChangeSource.UNSUBSCRIBE_LINK)
    db.session.commit()
    campaign = sent_campaign(manager, [ERIN, "other@example.com"])
    record_bounce(BounceReport(ERIN, "hard", "ses", "n-1"))
    return campaign


def export(admin_client, address: str):
    return submit(admin_client, f"{PAGE}/person.json", {"person-email": address}, page_url=PAGE)


def test_the_export_holds_the_contact_memberships_history_campaigns_bounces_and_suppression(admin_client, admin,
                                                                                            manager):
    campaign = a_person_with_history(manager)

    response = export(admin_client, "Erin@Example.com")

    assert response.status_code == 200 and response.mimetype == "application/json"
    assert "attachment" in response.headers["Content-Disposition"]
    person = json.loads(response.data)
    assert person["address"] == ERIN
    assert person["contact"]["name"] == "Erin Example" and person["contact"]["attributes"] == {"plan": "pro", "seats": 12}
    memberships = {item["list_name"]: item for item in person["memberships"]}
    assert memberships["News"]["status"] == "subscribed"
    assert [(change["from_status"], change["to_status"], change["source"]) for change in
            memberships["Offers"]["history"]] == [(None, "subscribed", "import"),
                                                  ("subscribed", "unsubscribed", "unsubscribe_link")]
    assert [(item["campaign_id"], item["status"]) for item in person["campaigns"]] == [(campaign.id, "bounced")]
    assert [(item["kind"], item["source"]) for item in person["bounces"]] == [("hard", "ses")]
    assert [(item["reason"], item["stored_as"]) for item in person["suppression"]] == [("hard_bounce", "address")]
    assert "other@example.com" not in response.get_data(as_text=True)
    audit = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "person_exported"))
    assert ERIN not in json.dumps(audit.details) and audit.details["email_hash"] == erasure_hash(ERIN, "test-salt")


def test_the_export_is_for_admins_only(manager_client, manager):
    assert manager_client.post(f"{PAGE}/person.json", data={"person-email": ERIN}).status_code in (400, 403)
    assert manager_client.get(PAGE).status_code == 403


def test_erasing_a_person_deletes_their_contact_memberships_and_history(admin_client, admin, manager):
    a_person_with_history(manager)
    other = db.session.scalar(select(Contact).where(Contact.email == "other@example.com"))

    submit(admin_client, f"{PAGE}/erase", {"email": ERIN, "confirm": "y"}, page_url=PAGE)

    assert tables_holding(ERIN) == []
    db.session.expire_all()
    assert db.session.scalars(select(Contact.email)).all() == ["other@example.com"]
    assert db.session.scalars(select(ListMembership.contact_id)).all() == [other.id]
    assert db.session.scalar(select(func.count()).select_from(MembershipChange)) == 1  # other's one row
    assert is_suppressed(ERIN)
    audit = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "person_erased"))
    assert (audit.details["contacts"], audit.details["memberships"]) == (1, 2)
    assert audit.details["email_hash"] == erasure_hash(ERIN, "test-salt")
    person = json.loads(export(admin_client, ERIN).data)
    assert (person["contact"], person["memberships"], person["campaigns"]) == (None, [], [])
    assert [item["stored_as"] for item in person["suppression"]] == ["hash"]
