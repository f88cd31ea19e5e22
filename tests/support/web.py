"""Using the app through its pages as a browser would: logging in, submitting forms, reading flashes."""

from __future__ import annotations

import html
import re

from flask import Flask
from flask.testing import FlaskClient

from tests.factories import PASSWORD
from tests.support.forms import csrf_token_from, path_for, post_form

_FLASH = re.compile(r'<div class="flash (\w+)" role="(?:status|alert)">(.*?)</div>', re.S)


class AuthActions:
    """Log a test client in and out through the real forms."""

    def __init__(self, client: FlaskClient) -> None:
        self._client = client

    def login(self, email: str = "manager@example.com", password: str = PASSWORD, **kwargs):
        """Log in through the real form, CSRF token included."""
        page = self._client.get("/login")
        token = csrf_token_from(page.get_data(as_text=True))
        return self._client.post(
            "/login", data={"email": email, "password": password, "csrf_token": token}, **kwargs
        )

    def logout(self):
        token = csrf_token_from(self._client.get(path_for("campaigns.index")).get_data(as_text=True))
        return self._client.post("/logout", data={"csrf_token": token})


class IsolatedClient(FlaskClient):
    """A test client whose every request runs in its own app context, as in production.

    The `app` fixture keeps one app context pushed for the whole test, and Flask reuses it for
    requests: `g` (where Flask-Login caches the current user) and the DB session would then leak
    from one client's request into another's — two users at once would look like one.
    """

    def open(self, *args, **kwargs):
        with self.application.app_context():
            return super().open(*args, **kwargs)


def new_client(app: Flask) -> FlaskClient:
    """A client of `app` whose requests do not share `g` or the DB session with the test."""
    app.test_client_class = IsolatedClient
    return app.test_client()


def logged_in_client(app: Flask, email: str, password: str = PASSWORD) -> FlaskClient:
    """A new client of `app`, logged in through the real form (for "two users at once")."""
    client = new_client(app)
    response = AuthActions(client).login(email, password)
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


def submit(client: FlaskClient, url: str, data: dict | None = None, *, page_url: str | None = None, **kwargs):
    """Load the page holding the form, then POST `data` with its CSRF token (like a browser)."""
    return post_form(client, url, data, page_url=page_url, **kwargs)


def click(client: FlaskClient, page_url: str, action_url: str, data: dict | None = None, **kwargs):
    """Press a button's form on `page_url` and follow the redirect, as a browser would."""
    return post_form(client, action_url, data, page_url=page_url, follow_redirects=True, **kwargs)


def flashes(page: str) -> list[tuple[str, str]]:
    """(category, text) of every flash message in a page, HTML entities decoded."""
    return [(cat, html.unescape(re.sub(r"\s+", " ", text)).strip()) for cat, text in _FLASH.findall(page)]
