"""What every transport shares: the `Transport` protocol (and `OverlappingTransport`, for one that
writes the next message before the previous verdict has come), the accepted-message outcome, a
finished message (`Finished`), and the send errors whose class (transient | permanent) tells the
send loop what to do with a recipient."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class Transport(Protocol):
    """Hands one message at a time to a mail provider, over a connection it may keep open.

    `send` returns a `SendOutcome` or raises a `SendError` subclass (`TransientSendError`: try
    again later; `PermanentSendError`: refused for good); error texts never quote an address.
    """

    @property
    def provider(self) -> str:
        """The provider's host name, for the "provider" log field."""
        ...

    def send(self, envelope_from: str, envelope_to: str, data: bytes) -> SendOutcome:
        """Deliver `data` (a complete RFC 5322 message) from `envelope_from` to `envelope_to`."""
        ...

    def close(self) -> None:
        """Close the connection if one is open; the transport may be used again afterwards."""
        ...


class OverlappingTransport(Transport, Protocol):
    """A transport that can write the next message before the previous one's verdict has come
    (SMTP PIPELINING: one message's end of data travels with the next one's envelope).

    `start` hands a message over and returns every message whose transaction is now over (an earlier
    one, this one, or none yet); `finish` sends what waits for company and returns the rest. Each
    message handed over comes back exactly once, as a `Finished` carrying its `ticket`.
    """

    @property
    def awaiting(self) -> bool:
        """A message handed over is still waiting for its verdict (`finish` would complete it)."""
        ...

    def start(self, envelope_from: str, envelope_to: str, data: bytes, ticket: Hashable) -> list[Finished]:
        """Hand `data` over; the messages (this one or earlier ones) whose transaction is over."""
        ...

    def finish(self) -> list[Finished]:
        """Complete every message handed over; their verdicts."""
        ...


class ErrorClass(StrEnum):
    """What the send loop does with a recipient whose send failed."""

    TRANSIENT = "transient"  # try again later (and count towards the circuit breaker)
    PERMANENT = "permanent"  # refused for good


class SendError(Exception):
    """A send that did not succeed; `error_class` tells the send loop what to do with the recipient."""

    error_class = ErrorClass.TRANSIENT

    def __init__(
        self, message: str, *, smtp_code: int | None = None, stage: str | None = None, outcome_unknown: bool = False
    ) -> None:
        super().__init__(message)
        self.message = message
        self.smtp_code = smtp_code
        self.stage = stage
        # True when the whole message had been transmitted and the server's verdict was
        # lost (timeout / disconnect after the final "."): it may have been delivered.
        self.outcome_unknown = outcome_unknown

    def __str__(self) -> str:
        return self.message


class TransientSendError(SendError):
    """Try again later: connection trouble, timeouts, 4xx replies, session setup failures."""

    error_class = ErrorClass.TRANSIENT


class PermanentSendError(SendError):
    """The server refused this message for good (5xx to MAIL, RCPT or DATA)."""

    error_class = ErrorClass.PERMANENT


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """A message accepted by the server: its reply (addresses masked) and how long it took."""

    smtp_code: int
    # As the server wrote it, every address in it masked (it may quote the recipient).
    smtp_reply: str
    took_ms: float
    reconnected: bool = False


@dataclass(frozen=True, slots=True)
class Finished:
    """A message whose transaction is over: the ticket it was handed over with, and its outcome or error."""

    ticket: Hashable
    outcome: SendOutcome | None = None
    error: SendError | None = None
