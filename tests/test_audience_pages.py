"""The Audiences pages through the web layer: lists with counts and growth, a list's members with
search, add / status change / remove each in the history, the CSV export, contacts and a contact's
page, the import form and its progress JSON, and 404 for another manager's list or contact."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import select

from mailadmin.extensions import db
from mailadmin.models import Contact, MembershipChange
from mailadmin.services.audiences.lists import add_member, create_list
from tests.factories import create_suppressions
from tests.support.jobs import run_queued_jobs
from tests.support.web import submit


@pytest.fixture
def newsletter(manager):
    mailing_list = create_list(manager, "Newsletter", "Monthly news")
    add_member(manager, mailing_list.id, "ann@example.com", "Ann")
    add_member(manager, mailing_list.id, "bob@example.com", "Bob", status="unconfirmed")
    return mailing_list


def test_the_lists_page_shows_counts_by_status_and_growth(manager_client, newsletter):
    page = manager_client.get("/audiences/lists").get_data(as_text=True)
    assert "Newsletter" in page and "+2" in page
    assert 'data-label="Subscribed" class="num">1<' in page and 'data-label="Unconfirmed" class="num">1<' in page


def test_a_manager_creates_a_list_and_another_manager_gets_404_for_it(manager_client, other_client):
    response = submit(manager_client, "/audiences/lists/new", {"name": "Customers", "opt_in": "double"},
                      page_url="/audiences/lists/new")
    assert response.status_code == 303
    list_url = response.headers["Location"]
    assert "Customers" in manager_client.get(list_url).get_data(as_text=True)
    for url in (list_url, list_url + "/edit", list_url + "/members.csv", list_url + "/import"):
        assert other_client.get(url).status_code == 404


def test_members_are_searched_added_moved_and_removed_each_in_the_history(manager_client, newsletter):
    url = f"/audiences/lists/{newsletter.id}"
    assert "bob@example.com" not in manager_client.get(url + "?q=ann").get_data(as_text=True)
    response = submit(manager_client, url + "/members", {"email": "Cy@Example.com", "name": "Cy",
                                                         "status": "subscribed"}, page_url=url)
    assert response.status_code == 303
    cy = db.session.scalar(select(Contact).where(Contact.email == "cy@example.com"))
    submit(manager_client, f"{url}/members/{cy.id}/status", {"status": "unconfirmed"}, page_url=url)
    submit(manager_client, f"{url}/members/{cy.id}/remove", {}, page_url=url)

    history = db.session.execute(select(MembershipChange.from_status, MembershipChange.to_status)
                                 .order_by(MembershipChange.id)).all()[-3:]
    assert history == [(None, "subscribed"), ("subscribed", "unconfirmed"), ("unconfirmed", "unsubscribed")]
    contact_page = manager_client.get(f"/audiences/contacts/{cy.id}").get_data(as_text=True)
    assert "subscribed → unconfirmed (page)" in contact_page and "unconfirmed → unsubscribed" in contact_page


def test_a_suppressed_address_cannot_be_added_as_subscribed(manager_client, newsletter):
    create_suppressions(["dan@example.com"])
    url = f"/audiences/lists/{newsletter.id}"
    response = submit(manager_client, url + "/members", {"email": "dan@example.com", "status": "subscribed"},
                      page_url=url, follow_redirects=True)
    assert "suppression list" in response.get_data(as_text=True)


def test_contacts_search_by_attribute_and_a_contact_page_shows_what_is_known(app_env, manager_client, manager,
                                                                             newsletter):
    data = {"file": (io.BytesIO(b"email,plan,seats\nann@example.com,pro,3\nbob@example.com,free,1\n"), "p.csv"),
            "mode": "update", "status": "subscribed"}
    url = f"/audiences/lists/{newsletter.id}/import"
    response = submit(manager_client, url, data, page_url=url, content_type="multipart/form-data")
    assert response.status_code == 303
    import_url = response.headers["Location"]
    run_queued_jobs(app_env["REDIS_URL"])
    progress = manager_client.get(import_url + "/progress.json").get_json()
    assert progress["finished"] and progress["updated"] == 2 and progress["percent"] == 100

    found = manager_client.get("/audiences/contacts?q=plan=pro").get_data(as_text=True)
    assert "ann@example.com" in found and "bob@example.com" not in found
    assert "bob@example.com" in manager_client.get("/audiences/contacts?q=seats=1").get_data(as_text=True)
    ann = db.session.scalar(select(Contact).where(Contact.email == "ann@example.com"))
    page = manager_client.get(f"/audiences/contacts/{ann.id}").get_data(as_text=True)
    assert "Newsletter" in page and ">pro<" in page and "Not on the suppression list" in page


def test_another_managers_contact_and_import_are_not_found(app_env, manager_client, other_client, newsletter):
    ann = db.session.scalar(select(Contact).where(Contact.email == "ann@example.com"))
    assert other_client.get(f"/audiences/contacts/{ann.id}").status_code == 404
    assert "ann@example.com" not in other_client.get("/audiences/contacts").get_data(as_text=True)
    assert other_client.get("/audiences/imports/abc123/progress.json").status_code == 404


def test_a_bad_upload_is_a_clear_message_not_a_500(manager_client, newsletter):
    url = f"/audiences/lists/{newsletter.id}/import"
    data = {"file": (io.BytesIO(b""), "empty.csv"), "mode": "update", "status": "subscribed"}
    response = submit(manager_client, url, data, page_url=url, content_type="multipart/form-data")
    assert response.status_code == 400 and "The file is empty" in response.get_data(as_text=True)


def test_the_members_export_lists_every_member(manager_client, newsletter):
    response = manager_client.get(f"/audiences/lists/{newsletter.id}/members.csv")
    lines = response.get_data(as_text=True).splitlines()
    assert lines[0] == "email,name,status,attributes,joined_at,status_changed_at"
    assert [line.split(",")[:3] for line in lines[1:]] == [["ann@example.com", "Ann", "subscribed"],
                                                             ["bob@example.com", "Bob", "unconfirmed"]]
