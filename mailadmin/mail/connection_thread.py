"""One SMTP connection of `connections.SmtpConnections`, on its own thread, and what it shares with
the slice.

* `Delivery`: one message for one connection, as the slice submits it; `SendSteps`: how the slice
  wants it sent (build, then conclude the verdict).
* `HandOver`: what the slice and its connections share — the deliveries queued in order, the
  results and the deliveries given back untried, the stop / hold / warm-up flags, and the counts of
  deliveries outstanding and handed over, every count changed under the one lock `stop()` takes, so
  a delivery is either handed over before a stop or never written (connections.py's docstring:
  "Hand-over").
* `ConnectionThread`: one connection's loop — take the next delivery in order, wait for its slot,
  send it (with the previous message's body when that waits for company), report what came of it.
* The two ways a connection sends: `StepSender` (`SendSteps`, overlapping the next message with
  this one's verdict when the transport can) and `OneAtATime` (a plain `send_one(transport,
  delivery)`).

connections.py's docstring says why threads, and how overlap, stop and hand-over work.
"""

from __future__ import annotations

import queue
import threading
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


DONE = object()  # put on the work queue by `close()`: the connection taking it ends


class HandOver:
    """The state the slice and the connections share, and the steps that change it under its lock."""

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        low_water: int,
        wake_when_free: bool,
        also_stop_on: threading.Event | None,
        on_hand_over: Callable[[Delivery], None] | None,
    ) -> None:
        self.clock = clock
        self.low_water = low_water
        self.wake_when_free = wake_when_free
        # Called on the connection's thread as each delivery is handed over.
        self.on_hand_over = on_hand_over
        self.wake = threading.Event()  # the slice has something to do
        # An event set elsewhere (SIGTERM) that stops the connections like `stop()`; only read here.
        self.external_stop = also_stop_on or threading.Event()
        self.results: queue.Queue = queue.Queue()
        self.untried: queue.Queue[Delivery] = queue.Queue()
        self.work: queue.Queue = queue.Queue()
        self.stopped = threading.Event()
        self.released = threading.Event()
        self.released.set()
        self.warm = threading.Event()
        self.lock = threading.Lock()
        self.outstanding = 0  # submitted and neither sent nor returned untried
        self.waiting_for_work = 0  # connections open and waiting for their next delivery
        self.sending: dict[int, Delivery] = {}
        # What the transports spent, added up as each connection ends (their `transactions`, `round_trips`).
        self.messages_sent_over_smtp = 0
        self.round_trips = 0

    # --- the slice's steps ---------------------------------------------------------------

    def submit(self, deliveries: list[Delivery]) -> None:
        with self.lock:
            self.outstanding += len(deliveries)
        for delivery in deliveries:
            self.work.put(delivery)

    def stop(self) -> None:
        with self.lock:
            self.stopped.set()
        self.released.set()
        self.warm.set()
        self.wake.set()

    def take_back_queued(self) -> list[Delivery]:
        """Remove the deliveries no connection has taken yet."""
        taken = []
        while True:
            try:
                item = self.work.get_nowait()
            except queue.Empty:
                break
            if item is DONE:
                self.work.put(item)
                break
            taken.append(item)
        with self.lock:
            self.outstanding -= len(taken)
        return taken

    # --- a connection's steps ------------------------------------------------------------

    def next_delivery(self) -> Any:
        """The next delivery in order (or DONE), waiting for one; the slice is woken if it asked to
        know when a connection is free."""
        with self.lock:
            self.waiting_for_work += 1
        if self.wake_when_free:
            self.wake.set()
        try:
            return self.work.get()
        finally:
            with self.lock:
                self.waiting_for_work -= 1

    def queued_delivery(self) -> Any:
        """The next delivery if one is queued now, else None (never waits)."""
        try:
            return self.work.get_nowait()
        except queue.Empty:
            return None

    def begin(self, delivery: Delivery) -> bool:
        """Hand the delivery to this connection, unless stopped meanwhile: one step under the lock, so
        a message is either in flight after `stop()` or never written (the slice releases the
        claims of everything else it handed out). The hand-over point of connections.py's docstring."""
        with self.lock:
            if self.stopped.is_set():
                return False
            delivery.handed_over_at = self.clock()
            self.sending[id(delivery)] = delivery
        if self.on_hand_over is not None:
            self.on_hand_over(delivery)
        return True

    def give_back(self, delivery: Delivery) -> None:
        """The delivery goes back unsent (`untried`)."""
        self.untried.put(delivery)
        with self.lock:
            self.sending.pop(id(delivery), None)
            self.outstanding -= 1
        self.wake.set()

    def report(self, results: list[tuple[Delivery, Any]]) -> None:
        """Hand the results to the slice; each delivery stops being outstanding."""
        for delivery, result in results:
            self.results.put(result)
            with self.lock:
                self.sending.pop(id(delivery), None)
                self.outstanding -= 1
                low = self.outstanding <= self.low_water
            if low:
                self.wake.set()

    def count_spent(self, transactions: int, round_trips: int) -> None:
        """Add what a connection's transport spent, as the connection ends."""
        with self.lock:
            self.messages_sent_over_smtp += transactions
            self.round_trips += round_trips


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


class ConnectionThread:
    """Connection number `number`: a daemon thread named `smtp-connection-<number>`."""

    def __init__(
        self,
        number: int,
        hand: HandOver,
        make_transport: Callable[[], Transport],
        send: SendSteps | Callable[[Transport, Delivery], Any],
        max_lateness: float | None,
    ) -> None:
        self.number = number
        self.hand = hand
        self.make_transport = make_transport
        self.send = send
        self.max_lateness = max_lateness
        self.thread = threading.Thread(target=self.run, name=f"smtp-connection-{number}", daemon=True)

    def run(self) -> None:
        # Slow start: only the first connection sends until the relay has answered a message, so a
        # relay that refuses everything costs one attempt per slice, not one per connection.
        if self.number > 0:
            self.hand.warm.wait()
        transport = self.make_transport()
        sender = StepSender(self.send, transport) if isinstance(self.send, SendSteps) else OneAtATime(self.send, transport)
        try:
            self._open(transport)
            self._serve(sender)
        finally:
            try:
                self._settle_waiting_body(sender)  # a body waiting for company is never left behind
            finally:
                self.hand.count_spent(getattr(transport, "transactions", 0), getattr(transport, "round_trips", 0))
                transport.close()

    def _open(self, transport: Transport) -> None:
        """Open the session before the first delivery, so its slot is not spent on the handshake."""
        connect = getattr(transport, "connect", None)
        if connect is None or self.hand.stopped.is_set():
            return
        try:
            connect()
        except Exception:  # the first send reconnects and reports the failure with its recipient
            pass

    def _serve(self, sender: StepSender | OneAtATime) -> None:
        """Take deliveries in order until `close()`; each is sent with the previous body when that waits."""
        hand = self.hand
        while True:
            if sender.awaiting:
                delivery = hand.queued_delivery()
                if delivery is None or delivery is DONE or not self._due_now(delivery):
                    self._settle_waiting_body(sender)  # nothing to go with
                    if delivery is None:
                        continue
            else:
                delivery = hand.next_delivery()
            if delivery is DONE:
                return
            if not self._ready_to_send(delivery) or not hand.begin(delivery):
                hand.give_back(delivery)
                continue
            hand.report(sender.start(delivery))

    def _settle_waiting_body(self, sender: StepSender | OneAtATime) -> None:
        """A body waits and nothing goes with it: send it alone — or, once stopped, take its message
        back untried: the connection is closed in the middle of its DATA, so the relay discards it
        and, after a stop, no message whose body had not gone out is delivered."""
        if not sender.awaiting:
            return
        if self.hand.stopped.is_set():
            for delivery in sender.abandon():
                self.hand.give_back(delivery)
        else:
            self.hand.report(sender.finish())

    def _ready_to_send(self, delivery: Delivery) -> bool:
        """Wait for the delivery's slot and for a hold to end; False when stopped meanwhile or too late."""
        hand = self.hand
        wait = delivery.slot - hand.clock()
        if wait > 0 and hand.stopped.wait(wait):
            return False
        while not hand.released.wait(0.5):
            pass
        if self.max_lateness is not None and delivery.slot and hand.clock() - delivery.slot > self.max_lateness:
            return False
        if hand.external_stop.is_set():
            hand.stop()
        return not hand.stopped.is_set()

    def _due_now(self, delivery: Delivery) -> bool:
        """`delivery` may go out at once: its slot reached, no hold, no stop (never waits)."""
        hand = self.hand
        if delivery.slot and delivery.slot > hand.clock():
            return False
        stopped = hand.stopped.is_set() or hand.external_stop.is_set()
        return hand.released.is_set() and not stopped
