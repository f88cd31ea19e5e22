"""Segment filters: each condition against real contacts (the same answers on SQLite and PostgreSQL —
this module runs on whichever TEST_DATABASE_URL names), and the refusals that name the condition."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert

from mailadmin.extensions import db
from mailadmin.models import MailingList
from mailadmin.models.audience import ChangeSource, Contact, MembershipStatus
from mailadmin.models.campaign import R_BOUNCED, Recipient
from mailadmin.models.types import utcnow
from mailadmin.services.audiences.memberships import AudienceError, set_membership_status, upsert_contact
from mailadmin.services.audiences.segments import (
    SegmentFilterError,
    count_matching,
    get_segment_for,
    sample_matching,
    save_segment,
)
from mailadmin.services.transaction import transaction
from tests.factories import create_suppressions, sent_campaign

PEOPLE = {
    "ann@example.com": {"plan": "pro", "country": "DE", "seats": 12, "renews": "2027-03-01"},
    "bob@example.com": {"plan": "free", "country": "FR", "seats": 2, "renews": "2026-11-30T10:00:00"},
    "cy@example.com": {"plan": "Pro team", "seats": "many", "renews": "soon"},
    "dee@example.com": {"plan": "pro", "country": "DE", "seats": 40.5, "vip": True},
    "eve@example.com": {},
}


@pytest.fixture
def audience(app, manager, other_manager):
    """Five contacts with mixed attribute types; ann and bob on the manager's list (bob unsubscribed),
    dee on another manager's list; ann was mailed yesterday, bob bounced, cy is suppressed as a complaint."""
    with transaction():
        contacts = {email: upsert_contact(email, ChangeSource.IMPORT, attributes=attrs)
                    for email, attrs in PEOPLE.items()}
        mine = MailingList(name="Customers", owner_id=manager.id)
        theirs = MailingList(name="Private", owner_id=other_manager.id)
        db.session.add_all([mine, theirs])
        db.session.flush()
        set_membership_status(mine.id, contacts["ann@example.com"].id, MembershipStatus.SUBSCRIBED, ChangeSource.PAGE)
        set_membership_status(mine.id, contacts["bob@example.com"].id, MembershipStatus.UNSUBSCRIBED,
                              ChangeSource.PAGE)
        set_membership_status(theirs.id, contacts["dee@example.com"].id, MembershipStatus.SUBSCRIBED,
                              ChangeSource.PAGE)
        old = datetime(2025, 1, 15, 12, tzinfo=UTC)
        contacts["eve@example.com"].created_at = old
        contacts["eve@example.com"].updated_at = old
    campaign = sent_campaign(manager, ["ann@example.com", "bob@example.com"])
    db.session.execute(Recipient.__table__.update().where(Recipient.email == "bob@example.com")
                       .values(status=R_BOUNCED, sent_at=utcnow() - timedelta(days=40)))
    db.session.execute(Recipient.__table__.update().where(Recipient.email == "ann@example.com")
                       .values(sent_at=utcnow() - timedelta(days=1)))
    create_suppressions(["cy@example.com"], reason="complaint", source="mailbox")
    db.session.commit()
    return {"mine": mine.id, "theirs": theirs.id, "campaign": campaign.id}


def _one(condition: dict) -> dict:
    return {"match": "all", "conditions": [condition]}


def _matching(filter_json: dict, user) -> set[str]:
    return {contact.email for contact in sample_matching(filter_json, user, size=50)}


CONDITIONS = [
    ({"field": "attribute", "name": "plan", "op": "eq", "value": "pro"}, {"ann", "dee"}),
    ({"field": "attribute", "name": "plan", "op": "ne", "value": "pro"}, {"bob", "cy", "eve"}),
    ({"field": "attribute", "name": "plan", "op": "contains", "value": "PRO"}, {"ann", "cy", "dee"}),
    ({"field": "attribute", "name": "plan", "op": "contains", "value": "%"}, set()),
    ({"field": "attribute", "name": "seats", "op": "gt", "type": "number", "value": "10"}, {"ann", "dee"}),
    ({"field": "attribute", "name": "seats", "op": "lt", "type": "number", "value": 12}, {"bob"}),
    ({"field": "attribute", "name": "seats", "op": "eq", "type": "number", "value": "12.0"}, {"ann"}),
    ({"field": "attribute", "name": "seats", "op": "eq", "value": "12"}, {"ann"}),
    ({"field": "attribute", "name": "seats", "op": "in", "type": "number", "value": "2, 40.5"}, {"bob", "dee"}),
    ({"field": "attribute", "name": "country", "op": "in", "value": ["DE", "FR"]}, {"ann", "bob", "dee"}),
    ({"field": "attribute", "name": "country", "op": "is_set"}, {"ann", "bob", "dee"}),
    ({"field": "attribute", "name": "vip", "op": "eq", "value": "true"}, {"dee"}),
    ({"field": "attribute", "name": "renews", "op": "gt", "type": "date", "value": "2026-12-01"}, {"ann"}),
    ({"field": "attribute", "name": "renews", "op": "lt", "type": "date", "value": "2026-12-01"}, {"bob"}),
    ({"field": "created", "op": "before", "value": "2025-06-01"}, {"eve"}),
    ({"field": "updated", "op": "after", "value": "2025-06-01"}, {"ann", "bob", "cy", "dee"}),
    ({"field": "sent", "op": "within_days", "value": 7}, {"ann"}),
    ({"field": "sent", "op": "not_within_days", "value": 7}, {"bob", "cy", "dee", "eve"}),
    ({"field": "bounced", "op": "ever"}, {"bob", "cy"}),
    ({"field": "bounced", "op": "never"}, {"ann", "dee", "eve"}),
]


@pytest.mark.parametrize(("condition", "expected"), CONDITIONS, ids=[
    f"{c.get('name', c['field'])}-{c['op']}-{i}" for i, (c, _) in enumerate(CONDITIONS)])
def test_each_condition_matches_the_same_contacts_on_either_database(audience, manager, condition, expected):
    emails = {f"{name}@example.com" for name in expected}
    assert _matching(_one(condition), manager) == emails
    assert count_matching(_one(condition), manager) == len(emails)


def test_list_conditions_groups_and_any_combine(audience, manager):
    subscribed = {"field": "list", "op": "subscribed", "value": audience["mine"]}
    assert _matching(_one(subscribed), manager) == {"ann@example.com"}
    assert _matching(_one({**subscribed, "op": "not_subscribed"}), manager) == {
        "bob@example.com", "cy@example.com", "dee@example.com", "eve@example.com"}
    nested = {"match": "any", "conditions": [
        subscribed,
        {"match": "all", "conditions": [
            {"field": "attribute", "name": "plan", "op": "eq", "value": "free"},
            {"field": "bounced", "op": "ever"},
        ]},
    ]}
    assert _matching(nested, manager) == {"ann@example.com", "bob@example.com"}
    assert count_matching({"match": "any", "conditions": []}, manager) == 0
    assert count_matching({"match": "all", "conditions": []}, manager) == 5


REFUSALS = [
    (_one({"field": "password", "op": "eq"}), "Condition 1: unknown field 'password'"),
    (_one({"field": "attribute", "name": "plan", "op": "like", "value": "x"}), "Condition 1: unknown operator 'like'"),
    ({"match": "all", "conditions": [
        {"field": "bounced", "op": "ever"}, {"field": "bounced", "op": "never"},
        {"field": "attribute", "name": "seats", "op": "gt", "type": "number", "value": "lots"}]},
     "Condition 3: 'seats' greater than needs a number"),
    (_one({"field": "attribute", "name": "renews", "op": "lt", "type": "date", "value": "2026-13-45"}),
     "Condition 1: 'renews' less than needs a date"),
    (_one({"field": "attribute", "name": "x'; DROP TABLE contacts; --", "op": "eq", "value": "1"}),
     "Condition 1: an attribute name is"),
    (_one({"field": "sent", "op": "within_days", "value": -3}), "Condition 1: needs a number of days"),
    (_one({"field": "created", "op": "before", "value": 20250101}), "Condition 1: created before needs a date"),
    ({"match": "all", "conditions": [{"match": "any", "conditions": [
        {"match": "all", "conditions": []}]}]}, "Condition 1.1: groups nest one level deep at most"),
    ({"match": "some", "conditions": []}, "The filter: match must be 'all' or 'any'"),
    ("SELECT 1", "The filter: must be"),
    ({"match": "all", "conditions": [{"field": "bounced", "op": "ever"}] * 51},
     "Condition 51: a segment has at most 50 conditions"),
]


@pytest.mark.parametrize(("filter_json", "message"), REFUSALS)
def test_a_bad_filter_is_refused_with_a_message_naming_the_condition(audience, manager, filter_json, message):
    with pytest.raises(SegmentFilterError) as refused:
        count_matching(filter_json, manager)
    assert refused.value.message.startswith(message)


def test_a_list_the_manager_may_not_use_is_refused_like_one_that_does_not_exist(audience, manager, admin):
    theirs = _one({"field": "list", "op": "subscribed", "value": audience["theirs"]})
    with pytest.raises(SegmentFilterError, match="Condition 1: that list does not exist or you may not use it"):
        count_matching(theirs, manager)
    with pytest.raises(SegmentFilterError, match="Condition 1: that list does not exist"):
        count_matching(_one({"field": "list", "op": "subscribed", "value": 999999}), manager)
    assert count_matching(theirs, admin) == 1


def test_a_saved_segment_is_its_owners_and_stores_the_checked_filter(audience, manager, other_manager):
    segment = save_segment(manager, " Pro in DE ", {"match": "all", "conditions": [
        {"field": "attribute", "name": "seats", "op": "gt", "value": "3", "extra": "ignored"}]})
    assert segment.name == "Pro in DE"
    assert segment.filter == {"match": "all", "conditions": [
        {"field": "attribute", "name": "seats", "op": "gt", "type": "number", "value": 3}]}
    with pytest.raises(AudienceError) as hidden:
        get_segment_for(other_manager, segment.id)
    assert hidden.value.kind == "not_found"
    with pytest.raises(SegmentFilterError):
        save_segment(manager, "Broken", {"match": "all", "conditions": [{"field": "nope"}]}, segment.id)
    assert get_segment_for(manager, segment.id).name == "Pro in DE"


def test_many_contacts_are_counted_without_loading_them(app, manager):
    now = utcnow()
    rows = [{"email": f"p{i}@example.com", "name": "", "attributes": {"seats": i}, "source": "import",
             "created_at": now, "updated_at": now} for i in range(500)]
    db.session.execute(insert(Contact.__table__), rows)
    db.session.commit()
    assert count_matching(_one({"field": "attribute", "name": "seats", "op": "gt", "value": 249}), manager) == 250
