"""Sessions that can be ended, passwords that can be changed and reset, one password policy.

A "copied cookie" is the session (or remember) cookie of a logged-in browser put into another
client, as an attacker who stole it would.
"""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from mailadmin.extensions import db
from mailadmin.models import User
from tests.factories import ADMIN_EMAIL as ADMIN
from tests.factories import MANAGER_EMAIL as MANAGER
from tests.factories import PASSWORD
from tests.support.forms import csrf_token_from
from tests.support.web import AuthActions, flashes, logged_in_client, new_client, submit

NEW_PASSWORD = "a brand new passphrase"


def fresh_client(app) -> FlaskClient:
    return new_client(app)


def copy_cookie(app, source: FlaskClient, name: str = "session") -> FlaskClient:
    """A new client holding only `source`'s cookie `name`."""
    thief = fresh_client(app)
    cookie = source.get_cookie(name)
    assert cookie is not None, f"no {name} cookie to copy"
    thief.set_cookie(name, cookie.value)
    return thief


def is_logged_in(client: FlaskClient) -> bool:
    return client.get("/").status_code == 200


def user(email: str) -> User:
    db.session.expire_all()
    return db.session.scalar(db.select(User).where(User.email == email))


def change_password(client: FlaskClient, current: str, new: str, confirm: str | None = None):
    return submit(client, "/account/password",
                  {"current_password": current, "new_password": new, "confirm": new if confirm is None else confirm})


def test_a_copied_cookie_stops_working_after_logout(app, manager):
    browser = logged_in_client(app, MANAGER)
    thief = copy_cookie(app, browser)
    assert is_logged_in(thief)

    AuthActions(browser).logout()

    assert not is_logged_in(thief)
    assert not is_logged_in(browser)


def login_remembered(app) -> FlaskClient:
    browser = fresh_client(app)
    token = csrf_token_from(browser.get("/login").get_data(as_text=True))
    response = browser.post("/login", data={"email": MANAGER, "password": PASSWORD, "remember": "y",
                                            "csrf_token": token})
    assert response.status_code == 302
    return browser


def test_a_copied_remember_cookie_stops_working_after_logout(app, manager):
    browser = login_remembered(app)
    thief = copy_cookie(app, browser, "remember_token")
    assert is_logged_in(thief)  # the remember cookie alone logs in

    AuthActions(browser).logout()

    assert not is_logged_in(thief)


def test_a_password_change_ends_other_sessions_but_keeps_this_one(app, manager):
    browser = logged_in_client(app, MANAGER)
    elsewhere = logged_in_client(app, MANAGER)
    thief = copy_cookie(app, browser)

    response = change_password(browser, PASSWORD, NEW_PASSWORD)

    assert response.status_code == 303
    assert is_logged_in(browser)
    assert not is_logged_in(thief) and not is_logged_in(elsewhere)
    assert AuthActions(fresh_client(app)).login(MANAGER, NEW_PASSWORD).status_code == 302
    assert AuthActions(fresh_client(app)).login(MANAGER, PASSWORD).status_code == 401


def test_disabling_ends_sessions_and_re_enabling_does_not_revive_them(app, manager, admin_client):
    browser = logged_in_client(app, MANAGER)
    thief = copy_cookie(app, browser)
    target = user(MANAGER)

    submit(admin_client, f"/admin/users/{target.id}/disable", page_url="/admin/users")
    assert not is_logged_in(thief) and not is_logged_in(browser)

    submit(admin_client, f"/admin/users/{target.id}/enable", page_url="/admin/users")
    assert not is_logged_in(thief)
    assert AuthActions(fresh_client(app)).login(MANAGER, PASSWORD).status_code == 302


def test_an_admin_ends_a_users_sessions(app, manager, admin_client):
    browser = logged_in_client(app, MANAGER)
    response = submit(admin_client, f"/admin/users/{user(MANAGER).id}/end-sessions", page_url="/admin/users",
                      follow_redirects=True)
    assert ("success", f"Every session of {MANAGER} has ended; they must log in again.") in flashes(
        response.get_data(as_text=True))
    assert not is_logged_in(browser)


def test_an_admin_reset_gives_a_temporary_password_that_must_be_changed(app, manager, admin_client):
    browser = logged_in_client(app, MANAGER)
    page = submit(admin_client, f"/admin/users/{user(MANAGER).id}/reset-password", page_url="/admin/users")
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    temporary = page.get_data(as_text=True).split('<code id="temporary-password">')[1].split("</code>")[0]
    assert len(temporary) >= 12
    assert not is_logged_in(browser)

    person = fresh_client(app)
    assert AuthActions(person).login(MANAGER, PASSWORD).status_code == 401
    response = AuthActions(person).login(MANAGER, temporary)
    assert response.headers["Location"] == "/account/password"
    blocked = person.get("/")
    assert blocked.status_code == 302 and blocked.headers["Location"] == "/account/password"

    assert change_password(person, temporary, NEW_PASSWORD).status_code == 303
    assert person.get("/").status_code == 200
    assert user(MANAGER).must_change_password is False


def test_the_password_page_refuses_with_the_reason(app, manager):
    browser = logged_in_client(app, MANAGER)
    cases = [
        ("not my password", NEW_PASSWORD, None, "The current password is not right"),
        (PASSWORD, "short one", None, "at least 12 characters"),
        (PASSWORD, " " * 12, None, "cannot be only spaces"),
        (PASSWORD, "password1234", None, "too common"),
        (PASSWORD, NEW_PASSWORD, "something else entirely", "The two new passwords differ."),
    ]
    for current, new, confirm, reason in cases:
        response = change_password(browser, current, new, confirm)
        assert response.status_code == 400, reason
        assert reason in response.get_data(as_text=True), reason
    assert AuthActions(fresh_client(app)).login(MANAGER, PASSWORD).status_code == 302


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        (" " * 12, "cannot be only spaces"),
        ("password12", "at least 12 characters"),
        ("password1234", "too common"),
        ("qwerty123456", "too common"),
        ("iloveyou2024!", "too common"),
        ("aaaaaaaaaaaa", "one character repeated"),
    ],
)
def test_the_cli_refuses_the_same_passwords_with_the_same_words(runner, make_user, password, reason):
    make_user(MANAGER)
    result = runner.invoke(args=["users", "set-password", MANAGER, "--password", password])
    assert result.exit_code != 0 and reason in result.output
    created = runner.invoke(args=["users", "create", "new@example.com", "--password", password])
    assert created.exit_code != 0 and reason in created.output


def test_flask_users_set_password_changes_it_and_ends_sessions(app, runner, manager):
    browser = logged_in_client(app, MANAGER)
    result = runner.invoke(args=["users", "set-password", MANAGER], input=f"{NEW_PASSWORD}\n{NEW_PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert "sessions have ended" in result.output
    assert not is_logged_in(browser)
    assert AuthActions(fresh_client(app)).login(MANAGER, NEW_PASSWORD).status_code == 302


def test_flask_users_end_sessions_logs_a_user_out_everywhere(app, runner, manager):
    browser = logged_in_client(app, MANAGER)
    result = runner.invoke(args=["users", "end-sessions", MANAGER])
    assert result.exit_code == 0 and f"Every session of {MANAGER} has ended" in result.output
    assert not is_logged_in(browser)


def test_the_csrf_token_changes_at_login(app, manager):
    browser = fresh_client(app)
    before = csrf_token_from(browser.get("/login").get_data(as_text=True))
    browser.post("/login", data={"email": MANAGER, "password": PASSWORD, "csrf_token": before})
    after = csrf_token_from(browser.get("/campaigns/new").get_data(as_text=True))

    assert after != before
    assert browser.post("/logout", data={"csrf_token": before}).status_code == 400  # the pre-login token is dead
    assert browser.post("/logout", data={"csrf_token": after}).status_code == 302


def test_remember_cookie_is_lax_httponly_and_secure_in_production(app, manager, app_env):
    from mailadmin import create_app

    browser = fresh_client(app)
    token = csrf_token_from(browser.get("/login").get_data(as_text=True))
    response = browser.post("/login", data={"email": MANAGER, "password": PASSWORD, "remember": "y",
                                            "csrf_token": token})
    remember = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("remember_token="))
    assert "SameSite=Lax" in remember and "HttpOnly" in remember and "Secure" not in remember

    production = create_app({**app_env, "APP_ENV": "production", "MAILER_LOG_HASH_SALT": "prod-salt",
                             "PUBLIC_URL": "https://mail.example.com", "TESTING": True, "SETUP_LOGGING": False})
    assert production.config["REMEMBER_COOKIE_SECURE"] is True and production.config["SESSION_COOKIE_SECURE"] is True
    assert production.config["REMEMBER_COOKIE_SAMESITE"] == "Lax"


def test_a_session_from_before_session_versions_is_logged_out(app, manager):
    browser = fresh_client(app)
    with browser.session_transaction() as session:
        session["_user_id"] = str(user(MANAGER).id)  # the old "{id}" form, no version
        session["_fresh"] = True
    assert not is_logged_in(browser)


def test_an_admin_cannot_reset_their_own_password_from_the_users_page(app, admin, admin_client):
    response = submit(admin_client, f"/admin/users/{user(ADMIN).id}/reset-password", page_url="/admin/users")
    assert response.status_code == 303 and response.headers["Location"] == "/account/password"
    assert user(ADMIN).must_change_password is False
