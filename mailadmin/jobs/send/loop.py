"""The slice as a state machine: begin, claim, then one `_step` after another until one returns an `Ending`.

A step hands the claims waiting to the connections with their tokens (`tokens.ClaimsInHand`),
sleeps until the connections have something to say, collects what they finished, and decides:

- a transient failure, the time budget or SIGTERM, or a stop signal whose campaign left `sending`
  → that ending;
- the claims not handed out yet run low (right after a hand-out, fewer than
  CLAIM_WHEN_FEWER_PER_CONNECTION per connection) → check the campaign's state
  (`delivery.probe_slice_state`: the safety net for a lost stop signal), then record the outcomes
  and claim the next batch in one commit, without waiting: the connections' queue is full now;
- nothing left to claim, to hand out or in flight → `NOTHING_LEFT`;
- else → None: another step.

`endings.end_slice` then carries the ending out. The slice's own thread makes every database and
Redis call; the connection threads (`mail/connection_thread.py`, driven through `mail/connections.py`) only render and send (`outcomes.py`).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from datetime import datetime

from loguru import logger
from redis import RedisError

from mailadmin.extensions import db, get_redis, get_settings
from mailadmin.jobs.send.endings import (
    SHUTDOWN_REQUESTED,
    Cause,
    Ending,
    SliceEnd,
    SliceOutcome,
    SliceReport,
    abandon,
    end_slice,
    enqueue_continuation,
    record_what_is_known,
)
from mailadmin.jobs.send.outcomes import MessageSender
from mailadmin.jobs.send.tokens import ClaimsInHand, TokenBooks, most_handed_out, top_up_size
from mailadmin.limits.handover import forget_handover_record
from mailadmin.logging import bind_context
from mailadmin.logging.policy import LOGGER_NAME_FIELD
from mailadmin.mail.bounces import verp_return_path_for
from mailadmin.mail.connections import SmtpConnections
from mailadmin.mail.message import MessageBuilder
from mailadmin.mail.templates import CampaignTemplates
from mailadmin.mail.transports import Transport, transport_from_url
from mailadmin.mail.unsubscribe import unsubscribe_url_for
from mailadmin.models.campaign import DEFERRED, QUEUED, SENDING
from mailadmin.models.types import utcnow
from mailadmin.queue.dispatch import enqueue_send_slice, new_slice_job_id, slice_job_timeout
from mailadmin.queue.outages import Service, call_through_outage, is_database_outage
from mailadmin.queue.signals import StopListener
from mailadmin.services import delivery
from mailadmin.services.delivery import SliceCampaign

# The send loop's records keep the package's name as their `logger` (playbook/OBSERVABILITY.md).
logger = logger.bind(**{LOGGER_NAME_FIELD: __package__})

# A per-second slot a connection reaches later than this is not used: sent late, its message could
# land next to the following slot's on the provider's clock. It gets a fresh slot instead.
MAX_SLOT_LATENESS = 0.04
# The loop looks at the clock (hand-over time) at least this often while its connections send.
WAKE_AT_LEAST_EVERY = 0.25
# The next batch is claimed, right after a hand-out, once fewer than this many claims per connection
# are left to hand out: the claim's commit then overlaps the messages the connections hold, and every
# connection still has its next message queued when its body goes out (one round trip per message).
# What is claimed but never handed to a connection goes back to `pending` after a crash
# (`limits/handover.py`), so claiming ahead does not widen the crash bound.
CLAIM_WHEN_FEWER_PER_CONNECTION = 1
# Waiting out an outage inside a job stops this long before RQ's job timeout would kill it.
JOB_DEADLINE_MARGIN_SECONDS = 5


class SendSlice:
    """One slice of the send loop for one campaign (see the module docstring)."""

    def __init__(
        self,
        campaign_id: int,
        *,
        job_id: str | None = None,
        clock: Callable[[], datetime] | None = None,
        siblings: int = 0,
    ) -> None:
        self.settings = get_settings()
        self.campaign_id = campaign_id
        self.job_id = (job_id or f"inline-{uuid.uuid4().hex[:12]}")[:64]
        self.clock = clock or utcnow
        self.siblings = siblings
        self.redis = get_redis()
        self.report = SliceReport(campaign_id=campaign_id, job_id=self.job_id)
        books = TokenBooks(self.redis, self.settings, campaign_id, self.clock, injected_clock=clock is not None)
        self.hand = ClaimsInHand(books, self.job_id, self.report)
        self.more_to_claim = True
        self.stop_signal = threading.Event()  # set by the listener thread, handled by the loop
        self.read_state: Callable[[], tuple[str | None, bool]] | None = None
        self.opened = ExitStack()  # the state probe, the connections and the stop-signal listener
        self.job_deadline = time.monotonic() + slice_job_timeout(self.settings) - JOB_DEADLINE_MARGIN_SECONDS

    def run(self) -> SliceReport:
        """Begin the slice (or report why not), step until it ends, carry the ending out."""
        with bind_context(campaign_id=self.campaign_id, job_id=self.job_id):
            # A database that is down as the slice begins is waited for (within the job's time).
            start = call_through_outage(
                lambda: delivery.begin_slice(self.campaign_id, self.job_id, self.clock()),
                services=(Service.DATABASE,), deadline=self.job_deadline, before_retry=db.session.rollback,
            )
            if not start.proceed:
                self.report.outcome = SliceOutcome(SliceEnd.SKIPPED, str(start.reason))
                logger.bind(reason=str(start.reason)).debug("Send slice skipped")
                return self.report
            if start.fan_out and self.siblings:
                self._start_siblings()
            try:
                self.report.outcome = end_slice(self._loop(start.campaign), self.hand, self.job_deadline)
                self._forget_handover_record()
            except Exception as exc:
                if not (is_database_outage(exc) and self._hand_over_after_database_outage()):
                    abandon(self.hand, exc, self.job_deadline)
                    raise
            except BaseException as exc:
                abandon(self.hand, exc, self.job_deadline)
                raise
            finally:
                self.opened.close()
            logger.bind(**self.report.as_record()).info("Send slice ended")
        return self.report

    def _loop(self, campaign: SliceCampaign) -> Ending:
        """Claim the first batch, open, then step until a step says how the slice ends."""
        batch = delivery.claim_batch(self.campaign_id, self.job_id, self.settings.send_batch_size, self.clock())
        if not self.hand.take(batch):
            return Ending(Cause.NOTHING_LEFT)
        self._open(campaign)
        deadline = time.monotonic() + self.settings.send_slice_seconds
        while (ending := self._step(deadline)) is None:
            pass
        return ending

    def _step(self, deadline: float) -> Ending | None:
        """One turn of the loop (see the module docstring): how the slice ends, or None to go on."""
        hand, connections = self.hand, self.hand.connections
        if (until := hand.hand_out()) is not None:
            return Ending(Cause.RATE_LIMIT, until=until)
        # The next hand-out would come up short: claim now, while the connections' queue is full.
        claim_due = self.more_to_claim and len(hand.unclaimed) < CLAIM_WHEN_FEWER_PER_CONNECTION * self.settings.smtp_connections
        # Taken before collecting: a connection puts its result on the queue before it counts
        # as done, so when nothing was outstanding here, every result is collected below.
        idle = connections.outstanding == 0
        if not idle and not claim_due:
            connections.wait(timeout=WAKE_AT_LEAST_EVERY)
        hand.collect()
        if (ending := self._ending(deadline)) is not None:
            return ending
        if claim_due:
            # The safety net for a lost stop signal, then outcomes and the next claim in one commit.
            if (ending := self._ending_for_state()) is not None:
                return ending
            self.more_to_claim = hand.take(hand.record(claim_next=True))
            hand.books.settle(finished_only=True)
        if not self.more_to_claim and not hand.unclaimed and idle:
            return Ending(Cause.NOTHING_LEFT)
        return None

    def _ending(self, deadline: float) -> Ending | None:
        """How the slice ends now, if it does: a transient error, SIGTERM / time budget, or a stop signal."""
        if self.hand.transient is not None:
            return Ending(Cause.TRANSIENT_ERROR, outcome=self.hand.transient)
        if SHUTDOWN_REQUESTED.is_set() or time.monotonic() >= deadline:
            return Ending(Cause.HAND_OVER)
        if self.stop_signal.is_set():
            self.stop_signal.clear()
            ending = self._ending_for_state()
            if ending is None:
                self.hand.connections.release()  # not for us, or already resumed: carry on
            return ending
        return None

    def _ending_for_state(self) -> Ending | None:
        """The ending the campaign's state and the global switch call for, if any."""
        status, switched_off = self.read_state()
        if switched_off:
            return Ending(Cause.GLOBAL_PAUSE)
        if status == DEFERRED:
            return Ending(Cause.DEFERRED_ELSEWHERE, status=status)
        if status not in (SENDING, QUEUED):
            return Ending(Cause.LEFT_SENDING, status=status)
        return None

    def _open(self, campaign: SliceCampaign) -> None:
        """The state probe, the SMTP connections (with the message sender) and the stop-signal listener."""
        self.read_state = self.opened.enter_context(delivery.probe_slice_state(self.campaign_id))
        sender = MessageSender(self._builder(campaign), self.campaign_id, campaign.queue_id, self.clock)
        paced = bool(self.settings.smtp_max_per_second)
        connections = SmtpConnections(
            self.settings.smtp_connections, self._new_transport, sender.steps, clock=lambda: self.clock().timestamp(),
            max_lateness=MAX_SLOT_LATENESS if paced else None,
            # Woken when a top-up has room (`tokens.most_handed_out`, `tokens.top_up_size`).
            low_water=most_handed_out(self.settings.smtp_connections, self.settings.send_batch_size)
            - top_up_size(self.settings.smtp_connections, self.settings.send_batch_size),
            wake_when_free=paced, also_stop_on=SHUTDOWN_REQUESTED,
        )
        self.opened.callback(connections.close, timeout=self.settings.smtp_timeout_seconds)
        sender.connections = self.hand.connections = connections
        listener = StopListener(self.redis, self.campaign_id, self._on_stop_signal).start()
        self.opened.callback(listener.close)

    def _on_stop_signal(self) -> None:
        """Listener thread: hold every connection before its next message; the loop checks the database."""
        self.stop_signal.set()
        if self.hand.connections is not None:
            self.hand.connections.hold()
            self.hand.connections.wake()

    def _new_transport(self) -> Transport:
        return transport_from_url(self.settings.smtp_url, timeout=self.settings.smtp_timeout_seconds)

    def _builder(self, campaign: SliceCampaign) -> MessageBuilder:
        templates = CampaignTemplates(campaign.subject, campaign.body_text, campaign.body_html)
        return MessageBuilder(
            campaign.id, self.settings.mail_from, templates, unsubscribe_url_for(self.settings, campaign.id),
            envelope_from_for=verp_return_path_for(self.settings, campaign.id), list_name=campaign.name,
        )

    def _start_siblings(self) -> None:
        for _ in range(self.siblings):
            try:
                enqueue_send_slice(self.campaign_id)
                self.report.siblings += 1
            except RedisError as exc:
                logger.bind(error_type=type(exc).__name__).error("Could not start a sibling slice (Redis unavailable)")
                return

    def _forget_handover_record(self) -> None:
        """Everything handed over is recorded (or `unknown`): the hand-over record is not needed any more."""
        try:
            forget_handover_record(self.redis, self.job_id)
        except RedisError:
            pass  # it expires (limits/handover.py)

    def _hand_over_after_database_outage(self) -> bool:
        """The database went away mid-slice: wait for it (within the job's time), record what this
        slice did, release the rest and hand over. False when it did not return in time."""
        self.opened.close()  # the connections finish their messages in flight; the results stay queued
        try:
            call_through_outage(
                lambda: record_what_is_known(self.hand), services=(Service.DATABASE,), deadline=self.job_deadline,
                before_retry=db.session.rollback,
            )
        except Exception:  # still down at the deadline: the claims stay for the recovery sweep
            return False
        self.report.outcome = SliceOutcome(SliceEnd.HANDED_OVER)
        self._forget_handover_record()
        enqueue_continuation(self.campaign_id, new_slice_job_id(self.campaign_id),
                             self.settings.smtp_timeout_seconds, self.job_deadline)
        return True
