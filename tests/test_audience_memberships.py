"""The shared audience writes: a contact by its address, and a membership's status with one history
row per change (the same status again records nothing)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from mailadmin.extensions import db
from mailadmin.models import Contact, MailingList, MembershipChange
from mailadmin.models.audience import ChangeSource, MembershipStatus
from mailadmin.services.audiences.memberships import (
    AudienceError,
    normalise_contact_email,
    set_membership_status,
    upsert_contact,
)
from mailadmin.services.transaction import transaction


def _history(membership_id: int) -> list[tuple[str | None, str, str]]:
    rows = db.session.scalars(select(MembershipChange).where(MembershipChange.membership_id == membership_id)
                              .order_by(MembershipChange.id))
    return [(row.from_status, row.to_status, row.source) for row in rows]


def test_an_address_is_stored_as_an_import_stores_it_and_a_bad_one_is_named():
    assert normalise_contact_email("  Ann.Lee@Example.COM ") == "ann.lee@example.com"
    with pytest.raises(AudienceError, match="not-an-address"):
        normalise_contact_email("not-an-address")
    with pytest.raises(AudienceError, match="SMTPUTF8"):
        normalise_contact_email("анна@example.com")


def test_a_second_upsert_merges_attributes_and_replace_drops_the_old_ones(app):
    with transaction():
        upsert_contact("ann@example.com", ChangeSource.IMPORT, name="Ann", attributes={"plan": "pro", "seats": 3})
    with transaction():
        upsert_contact("ann@example.com", ChangeSource.API, attributes={"country": "DE"})
    contact = db.session.scalar(select(Contact).where(Contact.email == "ann@example.com"))
    assert contact.attributes == {"plan": "pro", "seats": 3, "country": "DE"} and contact.source == "api"
    with transaction():
        upsert_contact("ann@example.com", ChangeSource.PAGE, attributes={"plan": "free"}, replace_attributes=True)
    db.session.refresh(contact)
    assert contact.attributes == {"plan": "free"} and contact.name == "Ann"


def test_each_status_change_is_one_history_row_and_a_repeat_records_nothing(app):
    with transaction():
        newsletter = MailingList(name="Newsletter", opt_in="double")
        db.session.add(newsletter)
        contact = upsert_contact("bob@example.com", ChangeSource.FORM)
        db.session.flush()
        first = set_membership_status(newsletter.id, contact.id, MembershipStatus.UNCONFIRMED, ChangeSource.FORM)
    with transaction():
        confirmed = set_membership_status(newsletter.id, contact.id, MembershipStatus.SUBSCRIBED,
                                          ChangeSource.CONFIRMATION)
    with transaction():
        again = set_membership_status(newsletter.id, contact.id, MembershipStatus.SUBSCRIBED, ChangeSource.CONFIRMATION)

    assert first.previous is None and first.changed
    assert confirmed.previous == MembershipStatus.UNCONFIRMED and confirmed.changed
    assert not again.changed
    assert _history(first.membership.id) == [(None, "unconfirmed", "form"), ("unconfirmed", "subscribed", "confirmation")]
