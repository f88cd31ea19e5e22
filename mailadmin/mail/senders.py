"""What one SMTP connection of `connections.SmtpConnections` sends: the `Delivery` items the slice
submits, and the two ways a connection sends them — `StepSender` (`SendSteps`: build, then conclude
the verdict, overlapping the next message with this one's verdict when the transport can) and
`OneAtATime` (a plain `send_one(transport, delivery)`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mailadmin.mail.message import BuiltMessage
from mailadmin.mail.transports.base import Finished, SendError, SendOutcome, Transport


@dataclass(slots=True)
class Delivery:
    """One message for one connection: what to send (opaque to this module) and its earliest send time."""

    payload: Any
    slot: float = 0.0  # Unix seconds; 0 = at once
    token: int | None = None  # index of its token in the slice's token batch
    # When a connection took it (the pool's clock): from then on its bytes may be written.
    handed_over_at: float | None = None


@dataclass(frozen=True, slots=True)
class SendSteps:
    """Sending a delivery in two steps, so that a connection can write the next message before this
    one's verdict has come.

    `prepare(delivery)` returns the `BuiltMessage` to send, or the delivery's result when there is
    nothing to send (an invalid address); `conclude(transport, delivery, message, verdict)` turns the
    transport's verdict (a `SendOutcome` or a `SendError`) into the delivery's result. Both run on the
    connection's thread; an exception either raises becomes the delivery's result.
    """

    prepare: Callable[[Delivery], Any]
    conclude: Callable[[Transport, Delivery, BuiltMessage, SendOutcome | SendError], Any]



class OneAtATime:
    """A connection sending through a plain `send_one(transport, delivery)`: the result at once."""

    awaiting = False

    def __init__(self, send_one: Callable[[Transport, Delivery], Any], transport: Transport) -> None:
        self.send_one = send_one
        self.transport = transport

    def start(self, delivery: Delivery) -> list[tuple[Delivery, Any]]:
        try:
            result = self.send_one(self.transport, delivery)
        except BaseException as exc:  # handed to the slice, which decides; the thread goes on
            result = exc
        return [(delivery, result)]

    def finish(self) -> list[tuple[Delivery, Any]]:
        return []

    def abandon(self) -> list[Delivery]:
        return []


class StepSender:
    """A connection sending in `SendSteps`: overlapped when the transport has `start`/`finish`
    (an `OverlappingTransport`), else one `send` at a time."""

    def __init__(self, steps: SendSteps, transport: Transport) -> None:
        self.steps = steps
        self.transport = transport
        self.overlapping = callable(getattr(transport, "start", None))
        self.handed_over: dict[int, tuple[Delivery, BuiltMessage]] = {}  # by ticket

    @property
    def awaiting(self) -> bool:
        return self.overlapping and self.transport.awaiting  # type: ignore[attr-defined]

    def start(self, delivery: Delivery) -> list[tuple[Delivery, Any]]:
        try:
            message = self.steps.prepare(delivery)
        except BaseException as exc:  # handed to the slice, which decides; the thread goes on
            return [(delivery, exc)]
        if not isinstance(message, BuiltMessage):
            return [(delivery, message)]  # nothing to send: its result
        ticket = id(delivery)
        self.handed_over[ticket] = (delivery, message)
        if self.overlapping:
            return self._verdicts(lambda: self.transport.start(  # type: ignore[attr-defined]
                message.envelope_from, message.envelope_to, message.data, ticket))
        return self._verdicts(lambda: [_send_now(self.transport, message, ticket)])

    def finish(self) -> list[tuple[Delivery, Any]]:
        return self._verdicts(self.transport.finish) if self.awaiting else []  # type: ignore[attr-defined]

    def abandon(self) -> list[Delivery]:
        """Close the connection in the middle of the waiting message's DATA: the deliveries handed
        over and not finished (that one: its body never went out)."""
        self.transport.close()
        abandoned, self.handed_over = self.handed_over, {}
        return [delivery for delivery, _ in abandoned.values()]

    def _verdicts(self, step: Callable[[], list[Finished]]) -> list[tuple[Delivery, Any]]:
        """Run a transport step; each message it finished, with the result `conclude` makes of it."""
        try:
            finished = step()
        except BaseException as exc:  # a bug in the send path: every message handed over ends with it
            self.transport.close()
            abandoned, self.handed_over = self.handed_over, {}
            return [(delivery, exc) for delivery, _ in abandoned.values()]
        results = []
        for done in finished:
            delivery, message = self.handed_over.pop(done.ticket)  # type: ignore[call-overload]
            verdict = done.error if done.error is not None else done.outcome
            try:
                results.append((delivery, self.steps.conclude(self.transport, delivery, message, verdict)))
            except BaseException as exc:  # handed to the slice, which decides; the thread goes on
                results.append((delivery, exc))
        return results


def _send_now(transport: Transport, message: BuiltMessage, ticket: int) -> Finished:
    try:
        return Finished(ticket, transport.send(message.envelope_from, message.envelope_to, message.data))
    except SendError as exc:
        return Finished(ticket, error=exc)
