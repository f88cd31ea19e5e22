"""One SMTP connection of `connections.SmtpConnections` (`ConnectionThread`): its own thread and
transport, taking the deliveries in order from the hand-over, waiting for each one's slot, sending it
— with the previous message's body when that waits for company — and reporting what came of it.
connections.py's docstring says why threads, and how overlap, stop and hand-over work."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from mailadmin.mail.handover import DONE, HandOver
from mailadmin.mail.senders import Delivery, OneAtATime, SendSteps, StepSender
from mailadmin.mail.transports.base import Transport


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
