"""Factories and helpers for the dashboard's tests: logged-in clients, draft campaigns with
recipients, reading flash messages. The fixtures are in `tests.support.dashboard_fixtures`."""

from __future__ import annotations

import html
import re

from flask import Flask
from flask.testing import FlaskClient

from mailadmin.extensions import db
from mailadmin.models import Campaign, User
from tests.conftest import PASSWORD, AuthActions
from tests.support.forms import csrf_token_from

MANAGER = "manager@example.com"
OTHER_MANAGER = "other.manager@example.com"
ADMIN = "admin@example.com"

_FLASH = re.compile(r'<div class="flash (\w+)" role="(?:status|alert)">(.*?)</div>', re.S)


class SeparateContextClient(FlaskClient):
    """A client whose every request gets its own app context, as in production.

    The suite's `app` fixture keeps one app context pushed for the whole test and Flask reuses
    it for requests, so `g` (where Flask-Login caches the user) would leak between two clients.
    """

    def open(self, *args, **kwargs):
        with self.application.app_context():
            return super().open(*args, **kwargs)


def logged_in_client(app: Flask, email: str, password: str = PASSWORD) -> FlaskClient:
    """A new client of `app`, logged in through the real form."""
    app.test_client_class = SeparateContextClient
    client = app.test_client()
    response = AuthActions(client).login(email, password)
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


def flashes(page: str) -> list[tuple[str, str]]:
    """(category, text) of every flash message in a page, HTML entities decoded."""
    return [(cat, html.unescape(re.sub(r"\s+", " ", text)).strip()) for cat, text in _FLASH.findall(page)]


def submit(client: FlaskClient, url: str, data: dict | None = None, *, page_url: str | None = None, **kwargs):
    """Load the page holding the form, then POST `data` with its CSRF token (like a browser)."""
    token = csrf_token_from(client.get(page_url or url).get_data(as_text=True))
    return client.post(url, data={**(data or {}), "csrf_token": token}, **kwargs)


def make_draft(
    owner: User,
    name: str = "Spring news",
    subject: str = "Hello {{ name }}",
    body_text: str = "Hi {{ name }},\nour spring news.\n",
    body_html: str | None = None,
    recipients: str | None = None,
) -> Campaign:
    """A draft owned by `owner`, optionally with recipients imported from `recipients` (CSV text)."""
    from mailadmin.services.drafts import create_campaign
    from mailadmin.services.recipients import import_recipients

    campaign = create_campaign(owner, name, subject, body_text, body_html)
    if recipients:
        import_recipients(campaign, recipients)
    return campaign


def numbered_addresses(count: int, domain: str = "example.com", start: int = 0) -> str:
    """`count` distinct CSV lines "userN@domain,User N"."""
    return "\n".join(f"user{n}@{domain},User {n}" for n in range(start, start + count))


def reload(campaign: Campaign) -> Campaign:
    """The campaign as the database has it now."""
    db.session.expire_all()
    return db.session.get(Campaign, campaign.id)
