"""What the slice and its SMTP connection threads share (`HandOver`): the deliveries queued in order,
the results and the deliveries given back untried, the stop / hold / warm-up flags, and the count of
deliveries outstanding and handed over. Every change to the counts happens under one lock, the
lock `stop()` takes, so that a delivery is either handed over before a stop or never written
(connections.py's docstring: "Hand-over"). The slice's side is `connections.SmtpConnections`, a
connection's side is `connection_thread.ConnectionThread`."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

from mailadmin.mail.senders import Delivery

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
