"""Fixtures of the dashboard's tests (load with `pytest_plugins = ["tests.support.dashboard_fixtures"]`):
users and logged-in clients per role, and a Redis of the test's own that the test may stop."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest
from flask import Flask
from flask.testing import FlaskClient

from mailadmin.devtools.redis_server import EmbeddedRedis
from mailadmin.models import User
from tests.support.dashboard import ADMIN, MANAGER, OTHER_MANAGER, logged_in_client

T = TypeVar("T")


@pytest.fixture
def manager(make_user) -> User:
    return make_user(MANAGER, role="manager")


@pytest.fixture
def other_manager(make_user) -> User:
    return make_user(OTHER_MANAGER, role="manager")


@pytest.fixture
def admin(make_user) -> User:
    return make_user(ADMIN, role="admin")


@pytest.fixture
def manager_client(app, manager) -> FlaskClient:
    return logged_in_client(app, MANAGER)


@pytest.fixture
def other_client(app, other_manager) -> FlaskClient:
    return logged_in_client(app, OTHER_MANAGER)


@pytest.fixture
def admin_client(app, admin) -> FlaskClient:
    return logged_in_client(app, ADMIN)


@pytest.fixture
def own_redis(app_env) -> Iterator[EmbeddedRedis]:
    """A redis-server of this test's own, used by the app instead of the suite's; a test may stop it."""
    with EmbeddedRedis() as server:
        app_env["REDIS_URL"] = server.url
        yield server


@pytest.fixture
def app_with_own_redis(own_redis, app) -> Flask:
    """`app` wired to `own_redis` (requested in this order so the env override comes first)."""
    return app


class LiveServer:
    """The test's app served by a real WSGI server (werkzeug, threaded) on a free loopback port."""

    def __init__(self, app: Flask) -> None:
        from werkzeug.serving import make_server

        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="live-server", daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.thread.join(10)
        self.server.server_close()


@pytest.fixture
def live_server(app) -> Iterator[LiveServer]:
    with LiveServer(app) as server:
        yield server


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


class BrowserThread:
    """Debian's Chromium driven by Playwright's sync API in a thread of its own.

    Playwright's sync API refuses to start where an event loop already runs, and another part's
    session-wide Playwright in the main thread counts as one. Here every Playwright call happens
    in one dedicated worker thread: `call(fn, *args)` runs `fn` there and returns its result (or
    raises its exception, assertion failures included) in the test's thread.
    """

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="playwright")
        self._playwright = None
        self._browser = None
        self.call(self._start)

    def _start(self) -> None:
        from playwright.sync_api import sync_playwright

        self._playwright = sync_playwright().start()
        self._browser = self._playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)

    def _stop(self) -> None:
        if self._browser is not None:
            self._browser.close()
        if self._playwright is not None:
            self._playwright.stop()

    def call(self, fn: Callable[..., T], *args: Any, timeout: float = 180) -> T:
        """Run `fn(*args)` in the browser thread and wait for it."""
        return self._executor.submit(fn, *args).result(timeout)

    def new_page(self, base_url: str, width: int = 1280, height: int = 900):
        """A page in a fresh browser context (own cookies); use it only through `call`."""

        def open_page():
            context = self._browser.new_context(viewport={"width": width, "height": height}, base_url=base_url)
            context.set_default_timeout(15_000)
            return context.new_page()

        return self.call(open_page)

    def close(self) -> None:
        try:
            self.call(self._stop, timeout=30)
        finally:
            self._executor.shutdown(wait=True)


@pytest.fixture(scope="session")
def browser_thread() -> Iterator[BrowserThread]:
    """A headless Chromium for the session (never a downloaded browser build: Debian's package)."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium")
    browser = BrowserThread()
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture
def browser_page(browser_thread, live_server):
    """A fresh page (own cookies) on the live server; use it only through `browser_thread.call`."""
    page = browser_thread.new_page(live_server.url)
    yield page
    browser_thread.call(page.context.close)
