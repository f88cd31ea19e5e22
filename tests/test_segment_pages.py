"""Segment pages: the editor works by plain form posts (add, remove, count, save), the JSON preview the
script polls, another manager's segment is a 404, a bad filter is shown with its message, never a 500."""

from __future__ import annotations

import html

import pytest

from mailadmin.extensions import db
from mailadmin.models.audience import ChangeSource, Segment
from mailadmin.services.audiences.memberships import upsert_contact
from mailadmin.services.audiences.segments import save_segment
from mailadmin.services.transaction import transaction
from tests.support.web import flashes, submit

ROW = {"c-0-op": "attribute:gt", "c-0-name": "seats", "c-0-type": "number", "c-0-value": "10", "c-0-group": "0"}


@pytest.fixture
def contacts(app):
    with transaction():
        for index, seats in enumerate((3, 12, 40)):
            upsert_contact(f"p{index}@example.com", ChangeSource.IMPORT, name=f"P{index}", attributes={"seats": seats})


def test_the_editor_counts_adds_removes_and_saves_without_javascript(manager_client, contacts):
    page = submit(manager_client, "/audiences/segments/new", {"name": "Big", **ROW, "action": "add"})
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and 'name="c-1-op"' in text  # a second row came back
    assert '<strong id="segment-count">2</strong>' in text and "p2@example.com" in text
    page = submit(manager_client, "/audiences/segments/new", {"name": "Big", **ROW, "c-1-op": "bounced:ever",
                                                               "c-2-op": "attribute:eq", "c-2-name": "",
                                                               "action": "remove-1"})
    assert 'name="c-1-op"' not in page.get_data(as_text=True)
    saved = submit(manager_client, "/audiences/segments/new", {"name": "Big", **ROW, "action": "save"},
                   follow_redirects=True)
    assert ("success", "Segment “Big” saved.") in flashes(saved.get_data(as_text=True))
    segment = db.session.query(Segment).one()
    assert segment.filter["conditions"][0] == {"field": "attribute", "name": "seats", "op": "gt", "type": "number",
                                               "value": 10}


def test_the_preview_answers_json_and_names_a_bad_condition(manager_client, contacts):
    answer = manager_client.get("/audiences/segments/preview", query_string=ROW)
    assert answer.status_code == 200
    assert answer.json["count"] == 2 and {c["email"] for c in answer.json["sample"]} == {"p1@example.com",
                                                                                            "p2@example.com"}
    bad = manager_client.get("/audiences/segments/preview", query_string={**ROW, "c-0-value": "lots"})
    assert bad.status_code == 400 and bad.json == {"error": "Condition 1: 'seats' greater than needs a number"}


@pytest.mark.parametrize("form", [
    {**ROW, "c-0-value": "lots"},
    {**ROW, "c-0-op": "password:eq"},
    {**ROW, "c-0-op": "list:subscribed", "c-0-list": "999"},
    {**ROW, "c-0-name": "a'b\"c"},
    {**ROW, "c-0-group": "7", "g-1-match": "xor", "match": "none"},
    {**ROW, "c-0-type": "date", "c-0-value": "2026-02-30"},
    {f"c-{n}-op": "bounced:ever" for n in range(200)},
])
def test_a_bad_filter_is_refused_on_save_with_its_message_never_a_500(manager_client, contacts, form):
    page = submit(manager_client, "/audiences/segments/new", {"name": "Bad", **form, "action": "save"})
    assert page.status_code in (303, 400)
    if page.status_code == 400:
        assert any(text.startswith("The segment was not saved. ") for _, text in
                   flashes(page.get_data(as_text=True)))


def test_another_managers_segment_is_a_404_and_cannot_be_deleted(manager, other_client, manager_client, contacts):
    segment = save_segment(manager, "Mine", {"match": "all", "conditions": []})
    assert other_client.get(f"/audiences/segments/{segment.id}").status_code == 404
    assert submit(other_client, f"/audiences/segments/{segment.id}/delete", page_url="/audiences/segments").status_code == 404
    assert "Mine" not in other_client.get("/audiences/segments").get_data(as_text=True)
    page = manager_client.get(f"/audiences/segments/{segment.id}")
    assert page.status_code == 200 and html.escape("Mine") in page.get_data(as_text=True)
    deleted = submit(manager_client, f"/audiences/segments/{segment.id}/delete",
                     page_url=f"/audiences/segments/{segment.id}", follow_redirects=True)
    assert ("success", "Segment “Mine” deleted.") in flashes(deleted.get_data(as_text=True))
    db.session.expire_all()
    assert db.session.query(Segment).count() == 0
