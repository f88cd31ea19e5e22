"""An HTTP client for the live server: real sockets, a cookie jar, the whole body read to its end.

The Flask test client runs a response's generator inside the test's own app context; a real server
does not. Downloads read through this client prove that a streamed body reaches its last byte.
"""

from __future__ import annotations

import http.cookiejar
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from tests.factories import PASSWORD
from tests.support.forms import csrf_token_from


@dataclass(frozen=True)
class LiveResponse:
    """What the server answered, body read in full (a cut-off body raises instead)."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


class LiveClient:
    """A browser-like client of one live server: keeps its cookies, logs in through the real form."""

    def __init__(self, base_url: str, timeout: float = 30) -> None:
        self.base_url = base_url
        self._timeout = timeout
        self._opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def request(self, path: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> LiveResponse:
        """GET (or POST with `data`) `path`; redirects are followed; 4xx/5xx are returned, not raised."""
        request = urllib.request.Request(self.base_url + path, data=data, headers=headers or {})
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                # read() raises http.client.IncompleteRead when a chunked body stops before its end.
                return LiveResponse(response.status, dict(response.headers), response.read())
        except urllib.error.HTTPError as error:
            with error:
                return LiveResponse(error.code, dict(error.headers), error.read())

    def login(self, email: str, password: str = PASSWORD) -> None:
        """Log in through the login form, CSRF token included."""
        token = csrf_token_from(self.request("/login").text)
        form = urllib.parse.urlencode({"email": email, "password": password, "csrf_token": token}).encode()
        landing = self.request("/login", data=form)
        assert landing.status == 200 and email in landing.text, f"the login of {email} failed"
