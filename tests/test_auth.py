"""Login, logout, open redirects, brute force, CSRF, roles and /healthz."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mailadmin.limits.throttle import LOGIN_THROTTLED_MESSAGE, UNAVAILABLE_MESSAGE
from tests.factories import PASSWORD
from tests.support.forms import csrf_token_from, path_for


def test_login_with_the_right_password_opens_the_dashboard(client, auth, make_user):
    make_user("manager@example.com")
    response = auth.login("Manager@Example.com", PASSWORD)
    assert response.status_code == 302 and response.headers["Location"] == path_for("campaigns.index")
    assert client.get(path_for("campaigns.index")).status_code == 200


def test_wrong_password_is_refused_with_a_message(client, auth, make_user):
    make_user("manager@example.com")
    response = auth.login("manager@example.com", "not the password")
    assert response.status_code == 401
    assert "Wrong email or password." in response.get_data(as_text=True)
    assert client.get(path_for("campaigns.index")).status_code == 302


def test_disabled_user_cannot_log_in(auth, make_user, app):
    from mailadmin.services.users import set_active

    set_active(make_user("gone@example.com"), False)
    assert auth.login("gone@example.com", PASSWORD).status_code == 401


def test_logout_ends_the_session(client, auth, make_user):
    make_user()
    auth.login()
    assert auth.logout().status_code == 302
    assert client.get(path_for("campaigns.index")).headers["Location"].startswith("/login")


def test_pages_need_a_login_and_come_back_after_it(client, auth, make_user):
    make_user()
    response = client.get(path_for("campaigns.index"))
    assert response.status_code == 302 and response.headers["Location"].startswith("/login?next=")
    response = auth.login(query_string={"next": "/admin/users"})
    assert response.headers["Location"] == "/admin/users"


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)"])
def test_next_never_leaves_the_site(auth, make_user, target):
    make_user()
    response = auth.login(query_string={"next": target})
    assert response.headers["Location"] == path_for("campaigns.index")


def test_brute_force_locks_the_account_from_that_address_but_not_others(auth, make_user, app):
    make_user("victim@example.com")
    make_user("other@example.com")
    limit = app.config["SETTINGS"].throttle_login_per_account_ip
    for _ in range(limit):
        assert auth.login("victim@example.com", "guess").status_code == 401
    locked = auth.login("victim@example.com", PASSWORD)
    assert locked.status_code == 429
    assert LOGIN_THROTTLED_MESSAGE in locked.get_data(as_text=True)
    assert auth.login("other@example.com", PASSWORD).status_code == 302


def test_login_is_refused_when_the_throttle_backend_is_down(private_redis, auth, make_user):
    make_user()
    private_redis.stop()
    response = auth.login()
    assert response.status_code == 503
    assert UNAVAILABLE_MESSAGE in response.get_data(as_text=True)


def test_post_without_csrf_token_is_refused(client, make_user, app):
    make_user()
    app.config["WTF_CSRF_ENABLED"] = True
    response = client.post("/login", data={"email": "manager@example.com", "password": PASSWORD})
    assert response.status_code == 400
    assert "The form has expired or was not sent by this site" in response.get_data(as_text=True)


def test_logout_without_csrf_token_is_refused(client, auth, make_user):
    make_user()
    auth.login()
    assert client.post("/logout").status_code == 400
    assert client.get(path_for("campaigns.index")).status_code == 200


def test_manager_gets_403_on_admin_pages(client, auth, make_user):
    make_user()
    auth.login()
    assert client.get("/admin/users").status_code == 403


def test_admin_sees_admin_pages(client, auth, make_user):
    make_user("admin@example.com", role="admin")
    auth.login("admin@example.com")
    assert client.get("/admin/users").status_code == 200


def test_session_cookie_is_httponly_and_lax(client, auth, make_user):
    make_user()
    cookie = auth.login().headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_login_page_renders_with_a_csrf_token(client):
    page = client.get("/login").get_data(as_text=True)
    assert csrf_token_from(page)
    assert '<label for="email">' in page and '<label for="password">' in page


def test_healthz_is_ok_without_login(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"db": "ok", "redis": "ok"}


def test_healthz_names_redis_when_it_is_down(private_redis, client):
    private_redis.stop()
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["db"] == "ok" and body["redis"].startswith("error: ")
    assert "redis://" not in response.get_data(as_text=True)


def test_the_product_hashes_passwords_with_scrypt_at_werkzeugs_full_cost():
    """The suite lowers the hash cost for speed (conftest); a real process keeps N=2**15."""
    code = ("from mailadmin.models.user import User; user = User(); user.set_password('correct horse battery');"
            "print(user.password_hash.split('$')[0])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "scrypt:32768:8:1"
