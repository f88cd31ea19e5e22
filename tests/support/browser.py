"""Debian's Chromium driven by Playwright (never `playwright install`), and steps a person takes in it.

Two ways to hold the browser, because Playwright's sync API refuses to start where an event loop
already runs: the session's `browser` fixture drives it from the test's own thread, and
`BrowserThread` drives a second one from a dedicated thread (`call(fn, *args)` runs `fn` there).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from tests.factories import PASSWORD
from tests.support.live_server import LiveServer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

T = TypeVar("T")


class BrowserThread:
    """A headless Chromium whose every Playwright call happens in one dedicated worker thread.

    `call(fn, *args)` runs `fn` there and returns its result (or raises its exception, assertion
    failures included) in the test's thread.
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


def browser_login(page, server: LiveServer, email: str, password: str = PASSWORD) -> None:
    """Log in through the real login form."""
    page.goto(f"{server.url}/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name=re.compile("log in", re.I)).click()
    page.wait_for_url(re.compile(r"^(?!.*/login).*$"))


def new_segment_with_attribute(page, name: str, attribute: str, value: str) -> None:
    """Open the segment editor from the menu, name the segment and make its first condition
    "attribute equals value"."""
    page.get_by_role("link", name="Segments").click()
    page.get_by_role("link", name="New segment").click()
    page.get_by_label("Name").fill(name)
    page.locator('select[name="c-0-op"]').select_option("attribute:eq")
    page.locator('input[name="c-0-name"]').fill(attribute)
    page.locator('input[name="c-0-value"]').fill(value)


def screenshot(page, name: str) -> str:
    """Save a full-page screenshot under /tmp for a person to look at."""
    path = f"/tmp/mailadmin-admin-{name}.png"
    page.screenshot(path=path, full_page=True)
    return path
