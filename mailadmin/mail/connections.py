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

In two pieces: this module (the slice's side) and connection_thread.py (one connection's side: the
hand-over it shares with the slice, its loop, and how it sends).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from loguru import logger

from mailadmin.mail.connection_thread import DONE, ConnectionThread, Delivery, HandOver, SendSteps
from mailadmin.mail.transports.base import Transport

__all__ = ["Delivery", "SendSteps", "SmtpConnections"]


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
        # The slice sleeps in `wait()` until there is something to do: outstanding deliveries down to
        # `low_water` (time to record and claim), a connection free (paced sending), or a stop.
        # `on_hand_over` is called on the connection's thread as each delivery is handed over.
        self._hand = HandOver(clock=clock, low_water=low_water, wake_when_free=wake_when_free,
                              also_stop_on=also_stop_on, on_hand_over=on_hand_over)
        self.results: queue.Queue = self._hand.results
        self.untried: queue.Queue[Delivery] = self._hand.untried
        self._connections = [ConnectionThread(number, self._hand, make_transport, send, max_lateness)
                             for number in range(count)]
        for connection in self._connections:
            connection.thread.start()

    @property
    def low_water(self) -> int:
        return self._hand.low_water

    def submit(self, deliveries: list[Delivery]) -> None:
        """Queue deliveries; connections take them in this order."""
        self._hand.submit(deliveries)

    @property
    def outstanding(self) -> int:
        """Deliveries submitted and not yet finished (queued, waiting for a slot, or in flight)."""
        with self._hand.lock:
            return self._hand.outstanding

    @property
    def free(self) -> int:
        """Connections that would start a delivery at once if one were submitted now."""
        with self._hand.lock:
            return max(0, self._hand.waiting_for_work - self._hand.work.qsize())

    def wait(self, timeout: float) -> None:
        """Sleep until the slice has something to do (see `__init__`), at most `timeout` seconds."""
        self._hand.wake.wait(timeout)
        self._hand.wake.clear()

    def wake(self) -> None:
        """Wake the slice now (a stop signal arrived, SIGTERM, ...)."""
        self._hand.wake.set()

    def in_flight(self) -> list[Delivery]:
        """The deliveries handed to a connection and not finished: their bytes may be on the way."""
        with self._hand.lock:
            return list(self._hand.sending.values())

    @property
    def stopped(self) -> bool:
        return self._hand.stopped.is_set()

    def stop(self) -> None:
        """Every connection stops before its next message; what it would have sent goes to `untried`.

        Once this returns, `in_flight()` lists every message that may still go out (see `HandOver.begin`)."""
        self._hand.stop()

    def take_back_queued(self) -> list[Delivery]:
        """Remove the deliveries no connection has taken yet (after `stop()`, when there is no time to wait)."""
        return self._hand.take_back_queued()

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
        if not self._hand.warm.is_set():  # called for every message sent: setting takes the event's lock
            self._hand.warm.set()

    def hold(self) -> None:
        """Connections wait before their next message until `release()` or `stop()`."""
        self._hand.released.clear()

    def release(self) -> None:
        self._hand.released.set()

    def close(self, timeout: float = 60) -> None:
        """Stop taking work, let messages in flight finish, close every transport."""
        self.stop()
        for _ in self._connections:
            self._hand.work.put(DONE)
        for connection in self._connections:
            connection.thread.join(timeout)
        sent, round_trips = self._hand.messages_sent_over_smtp, self._hand.round_trips
        if sent:
            logger.bind(
                connections=len(self._connections), messages=sent, round_trips=round_trips,
                round_trips_per_message=round(round_trips / sent, 3),
            ).info("SMTP connections closed")
