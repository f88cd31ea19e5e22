"""The web defaults a reviewer expects: security headers on every response, no inline script or
style, the real client address behind trusted proxies, login that neither tells accounts apart by
timing nor lets an attacker lock the owner out."""

from __future__ import annotations

import re
import statistics
import time

import pytest
import redis

from mailadmin import create_app
from mailadmin.extensions import db
from mailadmin.limits.throttle import LOGIN_THROTTLED_MESSAGE, login_account_ip_key, login_ip_key
from mailadmin.mail.unsubscribe import make_unsubscribe_token
from mailadmin.models import Recipient
from mailadmin.models import user as user_model
from mailadmin.services import users as user_service
from tests.factories import MANAGER_EMAIL as MANAGER
from tests.factories import PASSWORD, make_draft
from tests.support.forms import csrf_token_from
from tests.support.web import IsolatedClient


def every_get_url(campaign_id: int, recipient_id: int, token: str) -> list[str]:
    base = f"/campaigns/{campaign_id}"
    return [
        "/", "/campaigns/new", base, f"{base}/edit", f"{base}/preview", f"{base}/recipients/import",
        f"{base}/test-email", f"{base}/start", f"{base}/progress.json", f"{base}/sends-per-hour.svg",
        f"{base}/results.csv", "/admin/sending", "/admin/audit", "/admin/users", "/admin/users/new",
        "/admin/operations", "/account/password", f"/u/{token}", "/u/forged", "/healthz", "/no-such-page",
        "/static/app.css", f"{base}/preview/html?recipient={recipient_id}",
    ]


def assert_security_headers(response, url: str) -> None:
    headers = response.headers
    assert headers["X-Content-Type-Options"] == "nosniff", url
    assert headers["Referrer-Policy"] == "same-origin", url
    csp = headers["Content-Security-Policy"]
    if "/preview/html" in url:
        assert "frame-ancestors 'self'" in csp and "sandbox" in csp and "script-src" not in csp, url
    else:
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "style-src 'self'" in csp, url
        assert "unsafe-inline" not in csp, url


def test_every_page_carries_the_security_headers_and_no_inline_script_or_style(app, admin, admin_client):
    campaign = make_draft(admin, body_html="<p style='color:red'>Hi {{ name }}</p>",
                          recipients="jane@example.com,Jane\n")
    recipient = db.session.scalar(db.select(Recipient).where(Recipient.campaign_id == campaign.id))
    token = make_unsubscribe_token(app.config["SECRET_KEY"], campaign.id, recipient.id)
    for url in every_get_url(campaign.id, recipient.id, token):
        response = admin_client.get(url)
        assert response.status_code < 500, url
        assert_security_headers(response, url)
        if response.mimetype == "text/html" and "/preview/html" not in url:
            page = response.get_data(as_text=True)
            assert not re.search(r"<script(?![^>]*\bsrc=)", page), url
            assert "<style" not in page and not re.search(r"<[a-zA-Z][^<>]*\sstyle\s*=", page), url
    anonymous = app.test_client()
    for url in ("/login", "/campaigns/1"):
        assert_security_headers(anonymous.get(url), url)
    assert "Strict-Transport-Security" not in anonymous.get("/login").headers


def test_the_html_preview_is_framed_only_by_our_own_page(admin_client, admin):
    campaign = make_draft(admin, body_html="<p style='color:red'>Hi {{ name }}</p>")
    preview = admin_client.get(f"/campaigns/{campaign.id}/preview").get_data(as_text=True)
    assert f'src="/campaigns/{campaign.id}/preview/html"' in preview and 'sandbox=""' in preview
    frame = admin_client.get(f"/campaigns/{campaign.id}/preview/html")
    assert frame.get_data(as_text=True) == "<p style='color:red'>Hi Jane Doe</p>"
    assert frame.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert "style-src 'unsafe-inline'" in frame.headers["Content-Security-Policy"]


def test_production_adds_hsts(app_env, _schema):
    production = create_app({**app_env, "APP_ENV": "production", "MAILER_LOG_HASH_SALT": "prod-salt",
                             "PUBLIC_URL": "https://mail.example.com", "TESTING": True, "SETUP_LOGGING": False})
    response = production.test_client().get("/login")
    assert response.headers["Strict-Transport-Security"].startswith("max-age=31536000")


# --- the client address ----------------------------------------------------------------------


def proxied_app(app_env, _schema, hops: int):
    application = create_app({**app_env, "TRUSTED_PROXIES": str(hops), "TESTING": True, "SETUP_LOGGING": False})
    application.test_client_class = IsolatedClient
    return application


def failed_login(client, ip: str, forwarded_for: str | None = None, email: str = MANAGER, password: str = "wrong"):
    token = csrf_token_from(client.get("/login").get_data(as_text=True))
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return client.post("/login", data={"email": email, "password": password, "csrf_token": token},
                       environ_base={"REMOTE_ADDR": ip}, headers=headers)


@pytest.mark.parametrize(("hops", "counted_ip"), [(0, "10.0.0.1"), (1, "198.51.100.7")])
def test_the_login_throttle_counts_the_address_the_trusted_proxies_vouch_for(app, app_env, _schema, manager,
                                                                            hops, counted_ip):
    application = proxied_app(app_env, _schema, hops)
    with application.app_context():
        failed_login(application.test_client(), "10.0.0.1", forwarded_for="203.0.113.99, 198.51.100.7")
    r = redis.Redis.from_url(app_env["REDIS_URL"])
    salt = app_env["MAILER_LOG_HASH_SALT"]
    assert r.zcard(login_ip_key(counted_ip)) == 1
    assert r.zcard(login_account_ip_key(MANAGER, counted_ip, salt)) == 1
    assert r.zcard(login_ip_key("203.0.113.99")) == 0  # a client-sent header is never believed


def test_a_replayed_cookie_claiming_the_victims_address_is_refused(app, app_env, _schema, manager):
    application = proxied_app(app_env, _schema, 0)
    with application.app_context():
        victim = application.test_client()
        token = csrf_token_from(victim.get("/login", environ_base={"REMOTE_ADDR": "198.51.100.7"}).get_data(as_text=True))
        victim.post("/login", data={"email": MANAGER, "password": PASSWORD, "csrf_token": token},
                    environ_base={"REMOTE_ADDR": "198.51.100.7"})
        assert victim.get("/", environ_base={"REMOTE_ADDR": "198.51.100.7"}).status_code == 200

        thief = application.test_client()
        thief.set_cookie("session", victim.get_cookie("session").value)
        replay = thief.get("/", environ_base={"REMOTE_ADDR": "203.0.113.9"}, headers={"X-Forwarded-For": "198.51.100.7"})
        assert replay.status_code == 302 and replay.headers["Location"].startswith("/login")


# --- login -----------------------------------------------------------------------------------


def timed_login(client, email: str, ip: str) -> float:
    """The CPU time the server spends on one failed login.

    The test client handles the request in this thread, so this is the work an attacker's stopwatch
    measures on an idle server, without the noise other processes make on a busy test machine.
    """
    token = csrf_token_from(client.get("/login").get_data(as_text=True))
    started = time.thread_time()
    response = client.post("/login", data={"email": email, "password": "not the password", "csrf_token": token},
                           environ_base={"REMOTE_ADDR": ip})
    took = time.thread_time() - started
    assert response.status_code == 401
    return took


@pytest.fixture
def full_cost_hashes(monkeypatch):
    """The product's own password hash cost for this test (the suite's is cheap): timing is about it."""
    monkeypatch.setattr(user_model, "PASSWORD_HASH_METHOD", "scrypt")
    user_service._dummy_hash.cache_clear()
    yield
    user_service._dummy_hash.cache_clear()


def test_login_takes_as_long_for_an_unknown_account_as_for_a_wrong_password(app, full_cost_hashes, manager, client):
    unknown, existing = [], []
    for n in range(21):  # the first pair warms up (the dummy hash is made on first use)
        ip = f"192.0.2.{n + 1}"  # keep every attempt under the throttles
        unknown.append(timed_login(client, "nobody@example.com", ip))
        existing.append(timed_login(client, MANAGER, ip))
    slow, fast = sorted((statistics.median(unknown[1:]), statistics.median(existing[1:])), reverse=True)
    assert (slow - fast) / slow < 0.20, (unknown, existing)


def test_the_owner_logs_in_while_an_attacker_hammers_from_another_address(app, manager):
    app.test_client_class = IsolatedClient
    attacker, owner = app.test_client(), app.test_client()
    refused = [failed_login(attacker, "203.0.113.66").status_code for _ in range(30)]
    assert refused[:10] == [401] * 10 and set(refused[10:]) == {429}
    assert LOGIN_THROTTLED_MESSAGE in failed_login(attacker, "203.0.113.66").get_data(as_text=True)

    token = csrf_token_from(owner.get("/login").get_data(as_text=True))
    response = owner.post("/login", data={"email": MANAGER, "password": PASSWORD, "csrf_token": token},
                          environ_base={"REMOTE_ADDR": "198.51.100.7"})
    assert response.status_code == 302
    assert failed_login(attacker, "203.0.113.66", password=PASSWORD).status_code == 429  # still slowed


def test_the_per_account_bar_stops_a_spread_out_attack(app, app_env, _schema, manager):
    app_env["MAILER_THROTTLE_LOGIN_PER_ACCOUNT"] = "15"
    application = create_app({**app_env, "TESTING": True, "SETUP_LOGGING": False})
    application.test_client_class = IsolatedClient
    with application.app_context():
        client = application.test_client()
        statuses = [failed_login(client, f"203.0.113.{n}").status_code for n in range(20)]
    assert statuses[:15] == [401] * 15 and set(statuses[15:]) == {429}


def test_the_audience_public_pages_carry_the_security_headers_and_no_inline_script_or_style(app, admin, admin_client):
    from mailadmin.mail.unsubscribe import make_preferences_token
    from tests.factories import add_member, create_list

    news = create_list(admin, opt_in="double", published=True)
    jane = add_member(news, "jane@example.com")
    urls = [f"/subscribe/{news.public_id}", f"/subscribe/lists/{news.id}", "/subscribe/confirm/forged",
            f"/p/{make_preferences_token(app.config['SECRET_KEY'], jane.id)}"]
    for url in urls:
        response = admin_client.get(url)
        assert response.status_code < 500, url
        assert_security_headers(response, url)
        page = response.get_data(as_text=True)
        assert not re.search(r"<script(?![^>]*\bsrc=)", page), url
        assert "<style" not in page and not re.search(r"<[a-zA-Z][^<>]*\sstyle\s*=", page), url
