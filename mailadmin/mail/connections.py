"""Several SMTP connections sending one slice's messages at once: one thread per connection.

Why threads: the send loop around them is synchronous (SQLAlchemy sessions, RQ jobs, the blocking
pipelining client), and a connection spends nearly all its time waiting on the network, where a
thread releases the GIL. A thread per connection keeps each SMTP conversation a plain sequence of
blocking calls; asyncio would mean an async client, an event loop inside an RQ job and a bridge to
the synchronous database code, for no gain at ten connections.

The slice (one coordinating thread, the only one touching the database) hands `Delivery` items to
`SmtpConnections.submit`; each connection takes the next item in order, waits for its token's slot
(the per-second pace), sends it and puts its result on `results`. `stop()` makes every connection
stop before its next message (the item goes back on `untried`, as does one whose slot passed more
than `max_lateness` ago); `hold()` makes them wait before their next message until `release()` —
the slice holds while it checks whether a stop signal concerns it. Only the first connection sends
until `warm_up()` (the slice calls it when the relay has answered a message).

Overlap (one round trip per message): with `SendSteps` and a transport that can overlap (the
pipelining client), a connection does not wait for a message's verdict before taking the next one.
Once a message's DATA is accepted its body waits in the transport; if the next delivery is already
queued and may go out now (its slot reached, no hold, no stop), the connection takes it and the body
travels in one write with the next envelope; otherwise it sends the body alone and reads the verdict
("flushes") — except after `stop()`: then the connection is closed in the middle of that message's
DATA (the relay discards it) and the delivery goes back on `untried`, so after a stop no message
whose body had not gone out is delivered. Every message still gets exactly one result (or goes
back untried), in the order their verdicts come.

Hand-over: a delivery is *handed to a connection* at `_begin`, under the lock that `stop()` takes,
before its first byte may be written: `Delivery.handed_over_at` is set and `on_hand_over` called
then. From that moment until its result is on `results` it is listed by `in_flight()` — at most
two per connection (one whose verdict is awaited, the next one whose envelope went out with its
body); a delivery not handed over when `stop()` returns is never written.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from loguru import logger

from mailadmin.mail.senders import Delivery, OneAtATime, SendSteps, StepSender
from mailadmin.mail.transports.base import Transport

_DONE = object()


class SmtpConnections:
    """`count` threads, each with its own transport, sending the submitted deliveries in order.

    `send` is `SendSteps` (overlapped when the transport can) or a plain `send_one(transport,
    delivery)` returning the delivery's result (one message at a time)."""

    def __init__(
        self,
        count: int,
        make_transport: Callable[[], Transport],
        send: SendSteps | Callable[[Transport, Delivery], Any],
        *,
        clock: Callable[[], float] = time.time,
        max_lateness: float | None = None,
        low_water: int = 0,
        wake_when_free: bool = False,
        also_stop_on: threading.Event | None = None,
        on_hand_over: Callable[[Delivery], None] | None = None,
    ) -> None:
        self.make_transport = make_transport
        self.send = send
        # Called on the connection's thread as each delivery is handed over (see the module docstring).
        self.on_hand_over = on_hand_over
        self.clock = clock
        self.max_lateness = max_lateness
        # The slice sleeps in `wait()` until there is something to do: outstanding deliveries down to
        # `low_water` (time to record and claim), a connection free (paced sending), or a stop.
        self.low_water = low_water
        self.wake_when_free = wake_when_free
        self._wake = threading.Event()
        # An event set elsewhere (SIGTERM) that stops the connections like `stop()`; only read here.
        self._external_stop = also_stop_on or threading.Event()
        self.results: queue.Queue = queue.Queue()
        self.untried: queue.Queue[Delivery] = queue.Queue()
        self._work: queue.Queue = queue.Queue()
        self._stopped = threading.Event()
        self._released = threading.Event()
        self._released.set()
        self._warm = threading.Event()
        self._lock = threading.Lock()
        self._outstanding = 0  # submitted and neither sent nor returned untried
        self._waiting_for_work = 0  # connections open and waiting for their next delivery
        self._sending: dict[int, Delivery] = {}
        # What the transports spent, added up as each connection ends (their `transactions`, `round_trips`).
        self.messages_sent_over_smtp = 0
        self.round_trips = 0
        self._threads = [
            threading.Thread(target=self._run, args=(number,), name=f"smtp-connection-{number}", daemon=True)
            for number in range(count)
        ]
        for thread in self._threads:
            thread.start()

    # --- the slice's side ----------------------------------------------------------------

    def submit(self, deliveries: list[Delivery]) -> None:
        """Queue deliveries; connections take them in this order."""
        with self._lock:
            self._outstanding += len(deliveries)
        for delivery in deliveries:
            self._work.put(delivery)

    @property
    def outstanding(self) -> int:
        """Deliveries submitted and not yet finished (queued, waiting for a slot, or in flight)."""
        with self._lock:
            return self._outstanding

    @property
    def free(self) -> int:
        """Connections that would start a delivery at once if one were submitted now."""
        with self._lock:
            return max(0, self._waiting_for_work - self._work.qsize())

    def wait(self, timeout: float) -> None:
        """Sleep until the slice has something to do (see `__init__`), at most `timeout` seconds."""
        self._wake.wait(timeout)
        self._wake.clear()

    def wake(self) -> None:
        """Wake the slice now (a stop signal arrived, SIGTERM, ...)."""
        self._wake.set()

    def in_flight(self) -> list[Delivery]:
        """The deliveries handed to a connection and not finished: their bytes may be on the way."""
        with self._lock:
            return list(self._sending.values())

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def stop(self) -> None:
        """Every connection stops before its next message; what it would have sent goes to `untried`.

        Once this returns, `in_flight()` lists every message that may still go out (see `_begin`)."""
        with self._lock:
            self._stopped.set()
        self._released.set()
        self._warm.set()
        self._wake.set()

    def take_back_queued(self) -> list[Delivery]:
        """Remove the deliveries no connection has taken yet (after `stop()`, when there is no time to wait)."""
        taken = []
        while True:
            try:
                item = self._work.get_nowait()
            except queue.Empty:
                break
            if item is _DONE:
                self._work.put(item)
                break
            taken.append(item)
        with self._lock:
            self._outstanding -= len(taken)
        return taken

    def finished(self, timeout: float = 0) -> Iterator[Any]:
        """Yield what the connections finished (what `send_one` returned, or the exception it raised), in
        order, waiting up to `timeout` seconds for the first; what the caller does not take stays for later."""
        try:
            result = self.results.get(timeout=timeout) if timeout else self.results.get_nowait()
        except queue.Empty:
            return
        while True:
            yield result
            try:
                result = self.results.get_nowait()
            except queue.Empty:
                return

    def take_untried(self) -> list[Delivery]:
        """Remove and return the deliveries a connection gave back unsent (stopped, or its slot passed)."""
        taken = []
        while not self.untried.empty():
            taken.append(self.untried.get_nowait())
        return taken

    def warm_up(self) -> None:
        """The relay answers: open the other connections (until now only the first one sends)."""
        if not self._warm.is_set():  # called for every message sent: setting takes the event's lock
            self._warm.set()

    def hold(self) -> None:
        """Connections wait before their next message until `release()` or `stop()`."""
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    def close(self, timeout: float = 60) -> None:
        """Stop taking work, let messages in flight finish, close every transport."""
        self.stop()
        for _ in self._threads:
            self._work.put(_DONE)
        for thread in self._threads:
            thread.join(timeout)
        if self.messages_sent_over_smtp:
            logger.bind(
                connections=len(self._threads), messages=self.messages_sent_over_smtp, round_trips=self.round_trips,
                round_trips_per_message=round(self.round_trips / self.messages_sent_over_smtp, 3),
            ).info("SMTP connections closed")

    # --- one connection ------------------------------------------------------------------

    def _give_back(self, delivery: Delivery) -> None:
        self.untried.put(delivery)
        with self._lock:
            self._sending.pop(id(delivery), None)
            self._outstanding -= 1
        self._wake.set()

    def _settle_waiting_body(self, sender: StepSender | OneAtATime) -> None:
        """A body waits and nothing goes with it: send it alone — or, once stopped, take its message
        back untried: the connection is closed in the middle of its DATA, so the relay discards it
        and, after a stop, no message whose body had not gone out is delivered."""
        if not sender.awaiting:
            return
        if self._stopped.is_set():
            for delivery in sender.abandon():
                self._give_back(delivery)
        else:
            self._finished(sender.finish())

    def _ready_to_send(self, delivery: Delivery) -> bool:
        """Wait for the delivery's slot and for a hold to end; False when stopped meanwhile or too late."""
        wait = delivery.slot - self.clock()
        if wait > 0 and self._stopped.wait(wait):
            return False
        while not self._released.wait(0.5):
            pass
        if self.max_lateness is not None and delivery.slot and self.clock() - delivery.slot > self.max_lateness:
            return False
        if self._external_stop.is_set():
            self.stop()
        return not self._stopped.is_set()

    def _due_now(self, delivery: Delivery) -> bool:
        """`delivery` may go out at once: its slot reached, no hold, no stop (never waits)."""
        if delivery.slot and delivery.slot > self.clock():
            return False
        stopped = self._stopped.is_set() or self._external_stop.is_set()
        return self._released.is_set() and not stopped

    def _begin(self, delivery: Delivery) -> bool:
        """Hand the delivery to this connection, unless stopped meanwhile: one step under the lock, so
        a message is either in `in_flight()` after `stop()` or never written (the slice releases the
        claims of everything else it handed out). The hand-over point of the module docstring."""
        with self._lock:
            if self._stopped.is_set():
                return False
            delivery.handed_over_at = self.clock()
            self._sending[id(delivery)] = delivery
        if self.on_hand_over is not None:
            self.on_hand_over(delivery)
        return True

    def _open(self, transport: Transport) -> None:
        """Open the session before the first delivery, so its slot is not spent on the handshake."""
        connect = getattr(transport, "connect", None)
        if connect is None or self._stopped.is_set():
            return
        try:
            connect()
        except Exception:  # the first send reconnects and reports the failure with its recipient
            pass

    def _next_delivery(self) -> Any:
        with self._lock:
            self._waiting_for_work += 1
        if self.wake_when_free:
            self._wake.set()
        try:
            return self._work.get()
        finally:
            with self._lock:
                self._waiting_for_work -= 1

    def _waiting_delivery(self) -> Any:
        """The next delivery if one is queued now, else None (never waits)."""
        try:
            return self._work.get_nowait()
        except queue.Empty:
            return None

    def _run(self, number: int) -> None:
        # Slow start: only the first connection sends until the relay has answered a message, so a
        # relay that refuses everything costs one attempt per slice, not one per connection.
        if number > 0:
            self._warm.wait()
        transport = self.make_transport()
        sender = StepSender(self.send, transport) if isinstance(self.send, SendSteps) else OneAtATime(self.send, transport)
        try:
            self._open(transport)
            self._serve(sender)
        finally:
            try:
                self._settle_waiting_body(sender)  # a body waiting for company is never left behind
            finally:
                with self._lock:
                    self.messages_sent_over_smtp += getattr(transport, "transactions", 0)
                    self.round_trips += getattr(transport, "round_trips", 0)
                transport.close()

    def _serve(self, sender: StepSender | OneAtATime) -> None:
        """Take deliveries in order until `close()`; each is sent with the previous body when that waits."""
        while True:
            if sender.awaiting:
                delivery = self._waiting_delivery()
                if delivery is None or delivery is _DONE or not self._due_now(delivery):
                    self._settle_waiting_body(sender)  # nothing to go with
                    if delivery is None:
                        continue
            else:
                delivery = self._next_delivery()
            if delivery is _DONE:
                return
            if not self._ready_to_send(delivery) or not self._begin(delivery):
                self._give_back(delivery)
                continue
            self._finished(sender.start(delivery))

    def _finished(self, results: list[tuple[Delivery, Any]]) -> None:
        """Hand the results to the slice; each delivery stops being outstanding."""
        for delivery, result in results:
            self.results.put(result)
            with self._lock:
                self._sending.pop(id(delivery), None)
                self._outstanding -= 1
                low = self._outstanding <= self.low_water
            if low:
                self._wake.set()
