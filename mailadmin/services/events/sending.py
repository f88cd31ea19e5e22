"""One HTTP attempt of one event: POST the signed body to the checked address, nothing more.

No redirect is followed (`http.client` never follows one; a 3xx is a failed attempt), the
connection goes to the address `check_endpoint_url` resolved and checked (TLS still verifies the
certificate against the host name), every socket operation has the short time-out
MAILER_EVENTS_TIMEOUT_SECONDS, and at most RESPONSE_READ_LIMIT bytes of the answer are read; an
excerpt of RESPONSE_EXCERPT characters is kept for the admin page and never logged.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from dataclasses import dataclass

from mailadmin.services.events.addresses import CheckedUrl, UnsafeEndpointUrl, check_endpoint_url

RESPONSE_READ_LIMIT = 4096
RESPONSE_EXCERPT = 200
USER_AGENT = "mailadmin-events/1"


@dataclass(frozen=True)
class AttemptResult:
    """What one attempt got: a 2xx (`ok`), another status, or no answer at all (`error`)."""

    ok: bool
    status_code: int | None = None
    response_ms: int | None = None
    error: str | None = None


def _connection(checked: CheckedUrl, timeout: float) -> http.client.HTTPConnection:
    if checked.scheme == "https":
        connection: http.client.HTTPConnection = http.client.HTTPSConnection(
            checked.host, checked.port, timeout=timeout, context=ssl.create_default_context())
    else:
        connection = http.client.HTTPConnection(checked.host, checked.port, timeout=timeout)

    def connect_to_checked_address(address, timeout=socket._GLOBAL_DEFAULT_TIMEOUT, source_address=None):
        # The address checked, never a second DNS answer: http.client calls this from connect().
        return socket.create_connection((checked.address, address[1]), timeout, source_address)

    connection._create_connection = connect_to_checked_address
    return connection


def _excerpt(raw: bytes) -> str:
    text = raw[:RESPONSE_EXCERPT].decode("utf-8", "replace")
    return "".join(ch if ch.isprintable() else " " for ch in text).strip()


def post_event(url: str, body: bytes, headers: dict[str, str], *, production: bool, timeout: float) -> AttemptResult:
    """POST `body` to `url` once (see the module docstring); never raises for what the receiver does."""
    try:
        checked = check_endpoint_url(url, production=production)
    except UnsafeEndpointUrl as exc:
        return AttemptResult(False, error=f"refused: {exc.message}"[:300])
    connection = _connection(checked, timeout)
    started = time.monotonic()
    try:
        connection.request("POST", checked.target, body=body, headers={
            "Host": checked.host_header, "Content-Type": "application/json", "User-Agent": USER_AGENT, **headers,
        })
        response = connection.getresponse()
        raw = response.read(RESPONSE_READ_LIMIT)
        status = response.status
    except (OSError, http.client.HTTPException) as exc:
        kind = "timed out" if isinstance(exc, TimeoutError | socket.timeout) else type(exc).__name__
        return AttemptResult(False, response_ms=_ms(started), error=f"no answer: {kind}")
    finally:
        connection.close()
    if 200 <= status < 300:
        return AttemptResult(True, status, _ms(started))
    excerpt = _excerpt(raw)
    return AttemptResult(False, status, _ms(started), f"HTTP {status}" + (f": {excerpt}" if excerpt else ""))


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
