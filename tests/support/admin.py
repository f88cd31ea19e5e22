"""Fixtures and helpers for the admin pages' tests: logged-in admins and managers, started campaigns."""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from flask.testing import FlaskClient

from tests.conftest import PASSWORD, AuthActions
from tests.support.forms import csrf_token_from

ADMIN_EMAIL = "admin@example.com"
MANAGER_EMAIL = "manager@example.com"

_FLASH = re.compile(r'<div class="flash (\w+)" role="status">(.*?)</div>', re.S)


class IsolatedClient(FlaskClient):
    """A test client whose every request runs in its own app context, as in production.

    The `app` fixture keeps one app context pushed for the whole test, and Flask reuses it for
    requests: `g` (where Flask-Login caches the current user) and the DB session would then leak
    from one client's request into another's — two admins at once would look like one.
    """

    def open(self, *args, **kwargs):
        with self.application.app_context():
            return super().open(*args, **kwargs)


def new_client(app) -> FlaskClient:
    """A client of `app` whose requests do not share `g` or the DB session with the test."""
    app.test_client_class = IsolatedClient
    return app.test_client()


@pytest.fixture
def admin(make_user):
    """The first admin (the one who does things in these tests)."""
    return make_user(ADMIN_EMAIL, role="admin")


@pytest.fixture
def manager(make_user):
    return make_user(MANAGER_EMAIL, role="manager")


@pytest.fixture
def admin_client(app, admin) -> FlaskClient:
    """A test client logged in as the admin."""
    client = new_client(app)
    assert AuthActions(client).login(ADMIN_EMAIL, PASSWORD).status_code == 302
    return client


@pytest.fixture
def manager_client(app, manager) -> FlaskClient:
    """A test client logged in as a manager."""
    client = new_client(app)
    assert AuthActions(client).login(MANAGER_EMAIL, PASSWORD).status_code == 302
    return client


def login_client(app, email: str, password: str = PASSWORD) -> FlaskClient:
    """A fresh client logged in as `email` (for "two admins at once")."""
    client = new_client(app)
    assert AuthActions(client).login(email, password).status_code == 302
    return client


def click(client: FlaskClient, page_url: str, action_url: str, data: dict | None = None, **kwargs):
    """Submit a button's form as a browser would: load the page, take its CSRF token, POST, follow the redirect."""
    token = csrf_token_from(client.get(page_url).get_data(as_text=True))
    return client.post(action_url, data={**(data or {}), "csrf_token": token}, follow_redirects=True, **kwargs)


def flashes(html: str) -> list[tuple[str, str]]:
    """(category, text) of every flash message on a page."""
    return [(category, re.sub(r"\s+", " ", text).strip()) for category, text in _FLASH.findall(html)]


@contextmanager
def rq_logger_left_alone() -> Iterator[None]:
    """Undo what an in-process RQ worker does to the `rq.worker` logger (its own handlers, no propagation),
    so that later tests still see RQ's records through the loguru bridge."""
    rq_logger = logging.getLogger("rq.worker")
    saved = (rq_logger.level, list(rq_logger.handlers), rq_logger.propagate)
    try:
        yield
    finally:
        rq_logger.setLevel(saved[0])
        rq_logger.handlers[:] = saved[1]
        rq_logger.propagate = saved[2]


def wait_until(condition: Callable[[], bool], timeout: float = 10.0, interval: float = 0.02, message: str = "") -> None:
    """Poll `condition` until it is true; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message or condition}")
        time.sleep(interval)


# --- a live server and a real browser ---------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


class LiveServer:
    """The app served over real HTTP on a free loopback port, from a thread of the test process."""

    def __init__(self, flask_app) -> None:
        from werkzeug.serving import make_server

        self._server = make_server("127.0.0.1", 0, flask_app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="live-server", daemon=True)

    def start(self) -> LiveServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=10)


@pytest.fixture
def live_server(app, app_env) -> Iterator[LiveServer]:
    """A second app instance (same database, Redis and SMTP as `app`) behind a real HTTP server."""
    from mailadmin import create_app

    served = create_app({**app_env, "SETUP_LOGGING": False})
    server = LiveServer(served).start()
    yield server
    server.stop()
    with served.app_context():
        from mailadmin.extensions import db

        db.engine.dispose()


@pytest.fixture(scope="session")
def browser():
    """Headless Debian Chromium driven by Playwright (never `playwright install`)."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    page = context.new_page()
    yield page
    context.close()


def browser_login(page, server: LiveServer, email: str, password: str = PASSWORD) -> None:
    """Log in through the real login form."""
    page.goto(f"{server.url}/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name=re.compile("log in", re.I)).click()
    page.wait_for_url(re.compile(r"^(?!.*/login).*$"))


def screenshot(page, name: str) -> str:
    """Save a full-page screenshot under /tmp for a person to look at."""
    path = f"/tmp/mailadmin-admin-{name}.png"
    page.screenshot(path=path, full_page=True)
    return path
