"""The one access rule of audiences: owner and admin edit, a shared list is visible and targetable for
every manager but not editable, another's list is "not found", a manager sees the contacts of the
lists they may use."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from mailadmin.extensions import db
from mailadmin.models import Contact, MailingList
from mailadmin.models.audience import ChangeSource, MembershipStatus
from mailadmin.services.audiences.access import (
    ListAccess,
    get_contact_for,
    get_list_for,
    visible_contacts,
    visible_lists,
)
from mailadmin.services.audiences.memberships import AudienceError, set_membership_status, upsert_contact
from mailadmin.services.errors import ErrorKind
from mailadmin.services.transaction import transaction


def _list_with(name: str, owner_id: int | None, address: str, shared: bool = False) -> MailingList:
    with transaction():
        mailing_list = MailingList(name=name, owner_id=owner_id, opt_in="single", shared=shared)
        db.session.add(mailing_list)
        contact = upsert_contact(address, ChangeSource.IMPORT)
        db.session.flush()
        set_membership_status(mailing_list.id, contact.id, MembershipStatus.SUBSCRIBED, ChangeSource.IMPORT)
    return mailing_list


def test_a_manager_sees_own_and_shared_lists_and_another_managers_list_is_not_found(admin, manager, other_manager):
    own = _list_with("Own", manager.id, "own@example.com")
    theirs = _list_with("Theirs", other_manager.id, "theirs@example.com")
    shared = _list_with("Shared", admin.id, "shared@example.com", shared=True)
    private_admin = _list_with("Admin only", admin.id, "adminonly@example.com")

    assert [m.name for m in db.session.scalars(visible_lists(manager))] == ["Own", "Shared"]
    assert len(db.session.scalars(visible_lists(admin)).all()) == 4
    assert get_list_for(manager, own.id, ListAccess.EDIT) is own
    assert get_list_for(manager, shared.id, ListAccess.TARGET) is shared
    for hidden in (theirs, private_admin):
        with pytest.raises(AudienceError) as refused:
            get_list_for(manager, hidden.id)
        assert refused.value.kind is ErrorKind.NOT_FOUND
    with pytest.raises(AudienceError) as refused:
        get_list_for(manager, shared.id, ListAccess.EDIT)
    assert refused.value.kind is ErrorKind.CONFLICT
    assert get_list_for(admin, theirs.id, ListAccess.EDIT) is theirs


def test_a_manager_sees_the_contacts_of_the_lists_they_may_use_and_an_admin_all(admin, manager, other_manager):
    _list_with("Own", manager.id, "own@example.com")
    _list_with("Theirs", other_manager.id, "theirs@example.com")
    _list_with("Shared", admin.id, "shared@example.com", shared=True)

    seen = {c.email for c in db.session.scalars(visible_contacts(manager))}
    assert seen == {"own@example.com", "shared@example.com"}
    assert len(db.session.scalars(visible_contacts(admin)).all()) == 3
    hidden = db.session.scalar(select(Contact.id).where(Contact.email == "theirs@example.com"))
    with pytest.raises(AudienceError) as refused:
        get_contact_for(manager, hidden)
    assert refused.value.kind is ErrorKind.NOT_FOUND
    assert get_contact_for(admin, hidden).email == "theirs@example.com"
