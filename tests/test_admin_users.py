"""Users pages: list, create, disable/enable, change role — and the last active admin stays."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from mailadmin.extensions import db
from mailadmin.models import AuditEvent, User
from tests.factories import ADMIN_EMAIL, MANAGER_EMAIL, PASSWORD
from tests.support.web import AuthActions, click, flashes, new_client

# This module's fixtures (module-level names win over same-named fixtures other modules load as plugins).

NEW_PASSWORD = "a long enough password"


def _user(email: str) -> User:
    db.session.expire_all()
    return db.session.scalar(select(User).where(User.email == email))


def _audit_actions() -> list[str]:
    return list(db.session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))


def test_admin_sees_every_user_with_role_and_state(admin_client, manager):
    html = admin_client.get("/admin/users").get_data(as_text=True)
    assert ADMIN_EMAIL in html and MANAGER_EMAIL in html
    assert "(you)" in html
    assert 'data-action="disable"' in html


def test_admin_creates_a_user_who_can_then_log_in(app, admin_client):
    response = click(
        admin_client,
        "/admin/users/new",
        "/admin/users/new",
        {"email": "New.Person@Example.com", "password": NEW_PASSWORD, "role": "manager"},
    )
    html = response.get_data(as_text=True)
    assert ("success", "User new.person@example.com created as manager.") in flashes(html)
    assert "new.person@example.com" in html
    created = _user("new.person@example.com")
    assert created.role == "manager" and created.active
    event = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "user_created")).all()[-1]
    assert event.actor.email == ADMIN_EMAIL and event.details["user_id"] == created.id
    assert AuthActions(new_client(app)).login("new.person@example.com", NEW_PASSWORD).status_code == 302


def test_creating_a_user_with_a_taken_email_shows_the_reason(admin_client, manager):
    response = click(
        admin_client, "/admin/users/new", "/admin/users/new", {"email": MANAGER_EMAIL, "password": NEW_PASSWORD}
    )
    assert response.status_code == 400
    assert f"A user with the email {MANAGER_EMAIL} already exists" in response.get_data(as_text=True)


def test_creating_a_user_with_a_short_password_is_refused(admin_client):
    response = click(
        admin_client, "/admin/users/new", "/admin/users/new", {"email": "x@example.com", "password": "short"}
    )
    assert response.status_code == 400
    assert "The password must be at least 12 characters long" in response.get_data(as_text=True)
    assert _user("x@example.com") is None


def test_creating_a_user_with_a_bad_address_shows_the_validator_message(admin_client):
    response = click(
        admin_client, "/admin/users/new", "/admin/users/new", {"email": "not-an-address", "password": NEW_PASSWORD}
    )
    assert response.status_code == 400
    assert "Invalid email address" in response.get_data(as_text=True)


def test_admin_promotes_a_manager_and_demotes_them_again(admin_client, manager):
    html = click(admin_client, "/admin/users", f"/admin/users/{manager.id}/role", {"role": "admin"}).get_data(
        as_text=True
    )
    assert ("success", f"{MANAGER_EMAIL} is now admin.") in flashes(html)
    assert _user(MANAGER_EMAIL).role == "admin"
    click(admin_client, "/admin/users", f"/admin/users/{manager.id}/role", {"role": "manager"})
    assert _user(MANAGER_EMAIL).role == "manager"
    assert _audit_actions().count("user_role_changed") == 2


def test_setting_the_same_role_again_changes_nothing(admin_client, manager):
    html = click(admin_client, "/admin/users", f"/admin/users/{manager.id}/role", {"role": "manager"}).get_data(
        as_text=True
    )
    assert ("info", f"{MANAGER_EMAIL} is already manager; nothing changed.") in flashes(html)
    assert "user_role_changed" not in _audit_actions()


def test_unknown_role_is_refused(admin_client, manager):
    html = click(admin_client, "/admin/users", f"/admin/users/{manager.id}/role", {"role": "root"}).get_data(
        as_text=True
    )
    assert ("error", "Choose a role: manager or admin.") in flashes(html)
    assert _user(MANAGER_EMAIL).role == "manager"


def test_disabled_user_is_logged_out_and_cannot_log_in_until_enabled(app, admin_client, manager, manager_client):
    assert manager_client.get("/").status_code == 200
    html = click(admin_client, "/admin/users", f"/admin/users/{manager.id}/disable").get_data(as_text=True)
    assert ("success", f"{MANAGER_EMAIL} is disabled: they can no longer log in.") in flashes(html)
    assert manager_client.get("/").status_code == 302  # the open session ends with the next request
    assert AuthActions(new_client(app)).login(MANAGER_EMAIL, PASSWORD).status_code == 401

    html = click(admin_client, "/admin/users", f"/admin/users/{manager.id}/enable").get_data(as_text=True)
    assert ("success", f"{MANAGER_EMAIL} is enabled.") in flashes(html)
    assert AuthActions(new_client(app)).login(MANAGER_EMAIL, PASSWORD).status_code == 302
    assert _audit_actions()[-2:] == ["user_disabled", "user_enabled"]


def test_disabling_twice_is_harmless(admin_client, manager):
    click(admin_client, "/admin/users", f"/admin/users/{manager.id}/disable")
    html = click(admin_client, "/admin/users", f"/admin/users/{manager.id}/disable").get_data(as_text=True)
    assert ("info", f"{MANAGER_EMAIL} is already disabled; nothing changed.") in flashes(html)
    assert _audit_actions().count("user_disabled") == 1


def test_the_last_active_admin_cannot_be_disabled(admin_client, admin):
    html = click(admin_client, "/admin/users", f"/admin/users/{admin.id}/disable").get_data(as_text=True)
    assert ("error", "This is the last active admin: it cannot be disabled") in flashes(html)
    assert _user(ADMIN_EMAIL).active
    assert admin_client.get("/admin/users").status_code == 200


def test_the_last_active_admin_cannot_lose_the_admin_role(admin_client, admin, manager):
    html = click(admin_client, "/admin/users", f"/admin/users/{admin.id}/role", {"role": "manager"}).get_data(
        as_text=True
    )
    assert ("error", "This is the last active admin: make another user admin first") in flashes(html)
    assert _user(ADMIN_EMAIL).role == "admin"


def test_a_disabled_admin_does_not_count_as_another_admin(admin_client, admin, make_user):
    from mailadmin.services.users import set_active

    set_active(make_user("dormant@example.com", role="admin"), False)
    html = click(admin_client, "/admin/users", f"/admin/users/{admin.id}/disable").get_data(as_text=True)
    assert ("error", "This is the last active admin: it cannot be disabled") in flashes(html)


def test_with_two_admins_one_may_be_disabled_but_not_the_second(admin_client, admin, make_user):
    other = make_user("second.admin@example.com", role="admin")
    click(admin_client, "/admin/users", f"/admin/users/{other.id}/disable")
    assert not _user("second.admin@example.com").active
    html = click(admin_client, "/admin/users", f"/admin/users/{admin.id}/disable").get_data(as_text=True)
    assert ("error", "This is the last active admin: it cannot be disabled") in flashes(html)


def test_user_search_filters_by_email(admin_client, manager, make_user):
    make_user("someone.else@example.org")
    html = admin_client.get("/admin/users?q=example.org").get_data(as_text=True)
    assert "someone.else@example.org" in html and MANAGER_EMAIL not in html


@pytest.mark.parametrize("path", ["/admin/users", "/admin/users/new"])
def test_managers_get_403_on_user_pages(manager_client, path):
    assert manager_client.get(path).status_code == 403


def test_managers_cannot_create_disable_or_promote(manager_client, admin, manager):
    from tests.support.forms import csrf_token_from

    token = csrf_token_from(manager_client.get("/").get_data(as_text=True))
    events_before = _audit_actions()
    attempts = [
        ("/admin/users/new", {"email": "sneaky@example.com", "password": NEW_PASSWORD, "role": "admin"}),
        (f"/admin/users/{manager.id}/role", {"role": "admin"}),
        (f"/admin/users/{admin.id}/disable", {}),
        (f"/admin/users/{admin.id}/enable", {}),
    ]
    for url, data in attempts:
        assert manager_client.post(url, data={**data, "csrf_token": token}).status_code == 403, url
    assert _user("sneaky@example.com") is None
    assert _user(MANAGER_EMAIL).role == "manager" and _user(ADMIN_EMAIL).active
    assert _audit_actions() == events_before


def test_anonymous_visitors_are_sent_to_the_login_page(client):
    response = client.get("/admin/users")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


def test_user_actions_without_a_csrf_token_are_refused(admin_client, manager):
    assert admin_client.post(f"/admin/users/{manager.id}/disable").status_code == 400
    assert _user(MANAGER_EMAIL).active


def test_actions_on_a_missing_user_answer_404(admin_client):
    from tests.support.forms import csrf_token_from

    token = csrf_token_from(admin_client.get("/admin/users").get_data(as_text=True))
    assert admin_client.post("/admin/users/999999/disable", data={"csrf_token": token}).status_code == 404
