"""The seam between the send loop and a mail provider: one `Transport` protocol (base.py; a
transport that can write the next message before the previous verdict also implements
`OverlappingTransport`: `start` / `finish`, each message coming back once as a `Finished`), SMTP
first: pipelined.py (our RFC 2920 client, BDAT when CHUNKING is offered; what `transport_from_url`
returns), conversation.py (its exchanges over the open connection), transaction.py (one message's
commands, expected replies and verdict), session.py (its connection set-up and reply reading),
classify.py (transient | permanent for each reply and failure). A second provider (an HTTP API) or a test double implements
`Transport` and is chosen here by `transport_from_url()`, the one place the send loop and the test
email get theirs.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from mailadmin.mail.transports.base import (
    ErrorClass,
    Finished,
    OverlappingTransport,
    PermanentSendError,
    SendError,
    SendOutcome,
    TransientSendError,
    Transport,
)
from mailadmin.mail.transports.pipelined import SECURITY_BY_SCHEME, PipelinedSmtpTransport

__all__ = [
    "ErrorClass", "Finished", "OverlappingTransport", "PermanentSendError", "PipelinedSmtpTransport", "SendError",
    "SendOutcome", "TransientSendError", "Transport",
    "transport_from_url",
]


def transport_from_url(url: str, timeout: float = 30) -> Transport:
    """The transport `SMTP_URL` names: `smtp://`, `smtp+starttls://` or `smtps://` (the pipelining
    SMTP client; it falls back to lock-step when the relay does not offer PIPELINING).

    Raises ValueError for any other scheme.
    """
    scheme = urlsplit(url).scheme.lower()
    if scheme in SECURITY_BY_SCHEME:
        return PipelinedSmtpTransport.from_url(url, timeout=timeout)
    raise ValueError(f"SMTP URL scheme must be one of {', '.join(SECURITY_BY_SCHEME)}, got {scheme!r}")
