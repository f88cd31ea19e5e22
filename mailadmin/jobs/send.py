"""The send loop: one RQ job (`send_campaign_slice`) sends one bounded slice of a campaign.

A slice works for at most MAILER_SEND_SLICE_SECONDS, then hands over to a fresh job (its
continuation), so a platform SIGTERM never catches a long job and several workers share a big
campaign. The slice's own thread makes every database and Redis call (through `services.delivery`
and `limits.send_pace`); MAILER_SMTP_CONNECTIONS connection threads (`mail.connections`, each with
a pipelining transport) render and send. Per claim batch (MAILER_SEND_BATCH_SIZE recipients):

1. **claim** pending recipients atomically (`delivery.claim_batch` / `record_batch`: one
   statement, `FOR UPDATE SKIP LOCKED` on PostgreSQL), marking them `sending` for this job;
2. take the batch's rate-limit tokens in one Redis call (hourly quota and, when set, per-second
   slots; fail-open) and hand the claims to the connections; a transient error on any connection,
   a refused quota, or a stop signal (`jobs/signals.py`: pause, cancel, a deferral, the global
   switch) stops every connection before its next message;
3. when the connections run low: check the campaign's state (the safety net for a lost signal),
   then `delivery.record_batch` records the outcomes, releases untried claims and claims the next
   batch — one transaction.

Exactly-once intent: a recipient leaves `sending` only through this job's own records. A job
that dies (SIGKILL) leaves at most one batch plus the messages in flight (one per connection) in
`sending`; the recovery sweep turns those into `unknown` once older than
MAILER_STALE_CLAIM_SECONDS — they are shown, never silently re-sent. On SIGTERM (RQ HerokuWorker:
SIGRTMIN to the work horse) every connection stops before its next message, the slice records,
releases what it did not try and enqueues its continuation: nothing becomes unknown.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from functools import partial

from loguru import logger
from redis import RedisError
from rq import Queue, Worker, get_current_job
from rq.exceptions import ShutDownImminentException
from rq.timeouts import JobTimeoutException
from sqlalchemy.engine import Connection

from mailadmin.extensions import SEND_QUEUE, db, get_redis, get_settings
from mailadmin.jobs import job_app_context
from mailadmin.jobs.dispatch import enqueue_send_slice, new_slice_job_id, slice_job_timeout
from mailadmin.jobs.resilience import Service, call_through_outage, is_database_outage
from mailadmin.jobs.signals import StopListener
from mailadmin.limits.send_pace import TokenBatch, reserve_send_tokens, settle_send_tokens
from mailadmin.logging import bind_context
from mailadmin.mail.bounces import is_hard_bounce, verp_return_path_for
from mailadmin.mail.connections import Delivery, SendSteps, SmtpConnections
from mailadmin.mail.message import BuiltMessage, InvalidAddressError, MessageBuilder
from mailadmin.mail.templates import CampaignTemplates, TemplateBudgetExceeded, recipient_fields
from mailadmin.mail.transports import PermanentSendError, SendError, SendOutcome, Transport, transport_from_url
from mailadmin.mail.unsubscribe import unsubscribe_url_for
from mailadmin.models import APP_STATE_ID
from mailadmin.models.campaign import DEFERRED, QUEUED, R_FAILED, R_PENDING, R_SENT, R_SKIPPED, R_UNKNOWN, SENDING
from mailadmin.models.reasons import Reason
from mailadmin.models.types import utcnow
from mailadmin.pii import get_pii_log_fields
from mailadmin.services import delivery
from mailadmin.services.delivery import Claim, ClaimedBatch, Outcome, SendCounts, SliceCampaign

# A per-second slot a connection reaches later than this is not used: sent late, its message could
# land next to the following slot's on the provider's clock. It gets a fresh slot instead.
MAX_SLOT_LATENESS = 0.04
# The loop looks at the clock (hand-over time) at least this often while its connections send.
WAKE_AT_LEAST_EVERY = 0.25
# With MAILER_SEND_PARALLEL_SLICES=0, one slice per worker on the send queue, up to this many.
MAX_AUTO_PARALLEL_SLICES = 16
# When the rate limiter refuses without saying when a token frees (should not happen).
RATE_LIMIT_FALLBACK_DELAY = timedelta(seconds=60)
# Exceptions RQ raises inside the job to stop it: record what we know, then let them propagate.
JOB_STOPPING = (ShutDownImminentException, JobTimeoutException)
# Waiting out an outage inside a job stops this long before RQ's job timeout would kill it.
JOB_DEADLINE_MARGIN_SECONDS = 5

_stop_requested = threading.Event()

# The state query (see SendSlice._probe_state); `{placeholder}` is the driver's paramstyle.
PROBE_SQL = (
    "SELECT status, (SELECT sending_paused FROM app_state WHERE id = {app_state_id}) "
    "FROM campaigns WHERE id = {placeholder}"
)


def request_slice_stop() -> None:
    """Ask the running slice to stop before its next message (called from the SIGTERM path)."""
    # Only an Event.set(): this runs in a signal handler, which must not wait for a lock the
    # interrupted code may hold. Each connection reads the event before its next message.
    _stop_requested.set()


class SliceEnd(StrEnum):
    """How a slice ended."""

    STARTED = "started"  # still running (the report's initial value)
    SKIPPED = "skipped"  # did not begin: `reason` says why (a campaign status, a Reason, `not_due`)
    FINISHED = "finished"  # nothing left: the campaign is finished
    DRAINED = "drained"  # nothing left to claim, live claims of other slices remain
    HANDED_OVER = "handed_over"  # time budget used: a fresh slice continues
    STOPPED = "stopped"  # SIGTERM (no reason), or the campaign left `sending` (reason: its status)
    DEFERRED = "deferred"  # the campaign waits for `reason`
    PAUSED = "paused"  # the campaign was paused for `reason` (the circuit breaker)


@dataclass(frozen=True, slots=True)
class SliceOutcome:
    """A slice's outcome: how it ended and, for some endings, why."""

    end: SliceEnd
    reason: str | None = None

    def __str__(self) -> str:
        """The form logs and `rq info` show: `finished`, `deferred:rate_limit`, `stopped:paused`."""
        return f"{self.end}:{self.reason}" if self.reason else str(self.end)


@dataclass(kw_only=True)
class SliceReport(SendCounts):
    """What one slice did — the counts add up its recorded batches; also the RQ job's result (`rq info`, tests)."""

    campaign_id: int
    job_id: str
    outcome: SliceOutcome = field(default_factory=lambda: SliceOutcome(SliceEnd.STARTED))
    siblings: int = 0

    def as_record(self) -> dict:
        """The report as plain values (the RQ job's result and the "Send slice ended" log fields)."""
        return {**asdict(self), "outcome": str(self.outcome)}


def send_campaign_slice(campaign_id: int) -> dict:
    """RQ job: send the next bounded slice of a campaign, then hand over to a fresh job."""
    job = get_current_job()
    with job_app_context():
        report = run_send_slice(campaign_id, job_id=job.id if job else None, siblings=parallel_slices() - 1)
    return report.as_record()


def parallel_slices() -> int:
    """Slices one campaign starts with: MAILER_SEND_PARALLEL_SLICES, or (0) one per worker on the send queue.

    Each slice runs on its own worker with its own MAILER_SMTP_CONNECTIONS connections, so on a slow
    relay N workers send about N times as fast as one.
    """
    configured = get_settings().send_parallel_slices
    if configured:
        return configured
    try:
        workers = Worker.count(connection=get_redis(), queue=Queue(SEND_QUEUE, connection=get_redis()))
    except RedisError:
        return 1
    return max(1, min(workers, MAX_AUTO_PARALLEL_SLICES))


def run_send_slice(
    campaign_id: int,
    *,
    job_id: str | None = None,
    clock: Callable[[], datetime] | None = None,
    siblings: int = 0,
) -> SliceReport:
    """Run one slice in the current app context. `clock` injects "now" (tests drive time with it)."""
    return SendSlice(campaign_id, job_id=job_id, clock=clock, siblings=siblings).run()


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
        self.injected_clock = clock is not None
        self.siblings = siblings
        self.redis = get_redis()
        self.report = SliceReport(campaign_id=campaign_id, job_id=self.job_id)
        self.queue_id: int | None = None
        # Until `delivery.record_batch` has committed them, outcomes and untried claims stay here:
        # a failed record loses nothing, the next attempt (or `_abandon`) writes them again.
        self.unclaimed: list[Claim] = []  # claimed, not tried yet
        self.outcomes: list[Outcome] = []  # tried, not recorded yet
        self.claimed_up_to = 0  # the highest recipient id claimed so far: the next claim looks above it first
        self.connections: SmtpConnections | None = None
        self.listener: StopListener | None = None
        self.stop_signal = threading.Event()  # set by the listener thread, handled by the loop
        self.transient_outcome: Outcome | None = None
        self.quota_refusal: datetime | None = None  # when a token frees, once the hourly quota refused
        self.token_batches: list[TokenBatch] = []
        self.probe: Connection | None = None
        self.job_deadline = time.monotonic() + slice_job_timeout(self.settings) - JOB_DEADLINE_MARGIN_SECONDS

    # --- the slice ---------------------------------------------------------------------------

    def run(self) -> SliceReport:
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
            self.queue_id = start.campaign.queue_id
            if start.fan_out and self.siblings:
                self._start_siblings()
            try:
                self._loop(start.campaign)
            except Exception as exc:
                if not (is_database_outage(exc) and self._hand_over_after_database_outage()):
                    self._abandon(exc)
                    raise
            except BaseException as exc:
                self._abandon(exc)
                raise
            finally:
                self._close()
            logger.bind(**self.report.as_record()).info("Send slice ended")
        return self.report

    def _open(self, campaign: SliceCampaign) -> MessageBuilder:
        """The slice's message builder, SMTP connections, stop-signal listener and state probe."""
        builder = self._builder(campaign)
        self.probe = db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        driver = self.probe.connection.driver_connection
        self.probe_cursor = driver.cursor()
        placeholder = "?" if self.probe.dialect.paramstyle == "qmark" else "%s"
        self.probe_sql = PROBE_SQL.format(placeholder=placeholder, app_state_id=APP_STATE_ID)
        paced = bool(self.settings.smtp_max_per_second)
        self.connections = SmtpConnections(
            self.settings.smtp_connections, self._new_transport, SendSteps(partial(self._prepare, builder), self._conclude),
            clock=self._now,
            max_lateness=MAX_SLOT_LATENESS if paced else None, low_water=self.settings.smtp_connections,
            wake_when_free=paced, also_stop_on=_stop_requested,
        )
        self.listener = StopListener(self.redis, self.campaign_id, self._on_stop_signal).start()
        return builder

    def _loop(self, campaign: SliceCampaign) -> None:
        """Claim, hand the claims to the connections, collect outcomes, record and claim again per batch."""
        batch = delivery.claim_batch(self.campaign_id, self.job_id, self.settings.send_batch_size, self.clock())
        if not self._take(batch):
            return self._drained()
        self._open(campaign)
        deadline = time.monotonic() + self.settings.send_slice_seconds
        more = True
        while True:
            if (ending := self._submit_with_tokens()) is not None:
                return ending()
            # Taken before collecting: a connection puts its result on the queue before it counts
            # as done, so when nothing was outstanding here, every result is collected below.
            idle = self.connections.outstanding == 0
            if not idle:
                self.connections.wait(timeout=WAKE_AT_LEAST_EVERY)
            self._collect(timeout=0)
            if (ending := self._ending(deadline)) is not None:
                return ending()
            if more and self.connections.outstanding <= self.connections.low_water:
                # The safety net for a lost stop signal, then outcomes and the next claim in one commit.
                if (ending := self._ending_for_state()) is not None:
                    return ending()
                more = self._take(self._record(claim_next=True))
                self._settle_tokens(finished_only=True)
            if not more and not self.unclaimed and idle:
                return self._drained()

    def _ending(self, deadline: float) -> Callable[[], None] | None:
        """How the slice ends now, if it does: a transient error, SIGTERM / time budget, or a stop signal."""
        if self.transient_outcome is not None:
            outcome = self.transient_outcome
            return lambda: self._transient_error(outcome)
        if self._time_to_hand_over(deadline):
            return self._hand_over
        if self.stop_signal.is_set():
            self.stop_signal.clear()
            ending = self._ending_for_state()
            if ending is None:
                self.connections.release()  # not for us, or already resumed: carry on
            return ending
        return None

    def _ending_for_state(self) -> Callable[[], None] | None:
        status, switched_off = self._probe_state()
        if switched_off:
            return self._stop_for_global_pause
        if status == DEFERRED:
            return lambda: self._send_what_is_held_then_stop(status)
        if status not in (SENDING, QUEUED):
            return lambda: self._stop(status)
        return None

    def _send_what_is_held_then_stop(self, status: str) -> None:
        """Deferred by another slice (the hourly quota, a transient error): what this slice's connections
        hold was claimed before and has its tokens, so they send it; then the slice stops. (A pause, a
        cancel or the switch stops them before their next message instead.)"""
        self.connections.release()
        deadline = time.monotonic() + self.settings.smtp_timeout_seconds * 3
        while self.connections.outstanding and not self.connections.stopped and time.monotonic() < deadline:
            self.connections.wait(timeout=WAKE_AT_LEAST_EVERY)
            self._collect(timeout=0)
        self._stop(status)

    def _on_stop_signal(self) -> None:
        """Listener thread: hold every connection before its next message; the loop checks the database."""
        self.stop_signal.set()
        if self.connections is not None:
            self.connections.hold()
            self.connections.wake()

    def _new_transport(self) -> Transport:
        return transport_from_url(self.settings.smtp_url, timeout=self.settings.smtp_timeout_seconds)

    def _now(self) -> float:
        return self.clock().timestamp()

    def _time_to_hand_over(self, deadline: float) -> bool:
        return _stop_requested.is_set() or time.monotonic() >= deadline

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

    # --- claims --------------------------------------------------------------------------

    def _take(self, batch: ClaimedBatch) -> bool:
        """Work on a claimed batch: suppressed addresses become skipped outcomes; False when it is empty."""
        for claim in batch.suppressed:
            self.outcomes.append(Outcome(claim, R_SKIPPED, error="suppressed", attempted=False))
        self.unclaimed.extend(batch.to_send)
        self.claimed_up_to = max((claim.id for claim in (*batch.to_send, *batch.suppressed)), default=self.claimed_up_to)
        return bool(batch)

    def _probe_state(self) -> tuple[str | None, bool]:
        """The campaign's status and the global switch: the one query per message.

        Runs on an AUTOCOMMIT connection (so it sees other commits at once, also on SQLite) and
        straight on the driver: it is the hottest statement of the product. It only reads.
        """
        row = self.probe_cursor.execute(self.probe_sql, (self.campaign_id,)).fetchone()
        if row is None:
            return None, False
        return row[0], bool(row[1])

    # --- tokens and connections --------------------------------------------------------------

    def _submit_with_tokens(self) -> Callable[[], None] | None:
        """Reserve tokens for the claimed recipients (one Redis call) and hand them to the connections.

        Returns the rate-limit deferral once the hourly quota refused and nothing is left in flight.
        """
        if self.connections.stopped:
            return None
        self._take_back_late()
        if not self.unclaimed:
            return None
        if self.quota_refusal is not None:
            # Asked once: the quota is used up. Defer when the connections have sent what they hold.
            if self.connections.outstanding == 0:
                until = self.quota_refusal
                return lambda: self._defer_for_rate_limit(until)
            return None
        wanted = len(self.unclaimed)
        if self.settings.smtp_max_per_second:
            # Paced: tokens only for connections free right now, so no slot is spent late (a late
            # send next to an on-time one would put more than the cap into one second).
            wanted = min(wanted, self.connections.free)
            if wanted == 0:
                return None
        now = self._now() if self.injected_clock else None
        batch = reserve_send_tokens(
            self.redis, wanted, self.settings.smtp_max_per_hour, self.settings.smtp_max_per_second,
            campaign_id=self.campaign_id, now=now,
        )
        if batch.granted == 0:
            self.quota_refusal = batch.next_free_at or self.clock() + RATE_LIMIT_FALLBACK_DELAY
            return self._submit_with_tokens()
        self.token_batches.append(batch)
        granted, self.unclaimed = self.unclaimed[: batch.granted], self.unclaimed[batch.granted :]
        self.connections.submit([
            Delivery((claim, batch), slot=slot, token=index)
            for index, (claim, slot) in enumerate(zip(granted, batch.slots, strict=True))
        ])
        return None

    def _take_back_late(self) -> None:
        """Deliveries a connection gave back (slot passed, or stopped): their token is unused, they wait again."""
        late = []
        while not self.connections.untried.empty():
            delivery_ = self.connections.untried.get_nowait()
            claim, batch = delivery_.payload
            batch.finish(delivery_.token, None)
            late.append(claim)
        if late:
            self.unclaimed = sorted(late + self.unclaimed, key=lambda claim: claim.id)

    def _collect(self, timeout: float) -> None:
        """Move finished sends to `outcomes` (waiting up to `timeout` for the first)."""
        try:
            result = self.connections.results.get(timeout=timeout) if timeout else self.connections.results.get_nowait()
        except queue.Empty:
            return
        while True:
            self._take_result(result)
            try:
                result = self.connections.results.get_nowait()
            except queue.Empty:
                return

    def _take_result(self, result: Outcome | BaseException) -> None:
        if isinstance(result, BaseException):
            raise result  # a bug in the send path: the job fails (RQ records it), claims become unknown
        self.outcomes.append(result)
        if result.status in (R_SENT, R_FAILED) and result.attempted:
            self.connections.warm_up()  # the relay answers: use every connection
        if result.status in (R_PENDING, R_UNKNOWN) and result.attempted and self.transient_outcome is None:
            # A transient error ends the slice for every connection, before their next message.
            self.transient_outcome = result
            self.connections.stop()

    def _quiesce(self) -> None:
        """Stop every connection before its next message, wait for those in flight, take back the untried."""
        if self.connections is None:
            return
        self.connections.stop()
        deadline = time.monotonic() + self.settings.smtp_timeout_seconds * 3
        while self.connections.outstanding and time.monotonic() < deadline:
            self._collect(timeout=0.05)
        self._collect(timeout=0)
        self._take_back_late()
        self._settle_tokens(finished_only=False)

    def _settle_tokens(self, *, finished_only: bool) -> None:
        """Give back each finished token batch's unused tokens and date its used ones (one call per batch)."""
        keep = []
        for batch in self.token_batches:
            if finished_only and batch.pending:
                keep.append(batch)
            else:
                settle_send_tokens(self.redis, batch)
        self.token_batches = keep

    # --- one message ---------------------------------------------------------------------

    def _prepare(self, builder: MessageBuilder, delivery_: Delivery) -> BuiltMessage | Outcome:
        """One connection thread: build one message; the outcome instead when there is nothing to send."""
        claim, batch = delivery_.payload
        try:
            fields = recipient_fields(claim.email, claim.name, claim.fields)
            built = builder.build(claim.id, claim.email, fields)
        except InvalidAddressError as exc:
            batch.finish(delivery_.token, None)
            return self._failed(claim, R_SKIPPED, None, f"invalid address: {exc}", attempted=False)
        except TemplateBudgetExceeded as exc:  # fails this recipient within the budget's fraction of a second
            batch.finish(delivery_.token, None)
            return self._failed(claim, R_FAILED, None, str(exc), attempted=False)
        except Exception as exc:  # a template error on this recipient's data fails only this recipient
            batch.finish(delivery_.token, None)
            return self._failed(claim, R_FAILED, None, f"could not build the message: {type(exc).__name__}: {exc}",
                                attempted=False)
        batch.finish(delivery_.token, self._now())
        return built

    def _conclude(
        self, transport: Transport, delivery_: Delivery, built: BuiltMessage, verdict: SendOutcome | SendError
    ) -> Outcome:
        """One connection thread: the outcome of a sent message's verdict, never an exception for SMTP trouble."""
        claim, batch = delivery_.payload
        if isinstance(verdict, PermanentSendError):
            return self._failed(claim, R_FAILED, verdict.smtp_code, verdict.message, error_class="permanent",
                                hard_bounce=is_hard_bounce(verdict.smtp_code, verdict.message))
        if isinstance(verdict, SendError):
            # A transient error ends the slice: no connection, this one included, starts another message.
            self.connections.stop()
            # The whole message went out and the verdict was lost: it may have been delivered.
            status = R_UNKNOWN if verdict.outcome_unknown else R_PENDING
            return self._failed(claim, status, verdict.smtp_code, verdict.message, error_class="transient")
        outcome = Outcome(claim, R_SENT, verdict.smtp_code, built.message_id, sent_at=self.clock())
        logger.bind(
            **self._about(claim, "INFO"),
            smtp_message_id=built.message_id,
            provider=transport.provider,
            took_ms=round(verdict.took_ms, 1),
            rate_limit_count=batch.current_count,
        ).info("Email sent successfully")
        return outcome

    def _about(self, claim: Claim, level: str) -> dict:
        """The fields every per-recipient record carries: ids and the address as `level` may show it."""
        return {"campaign_id": self.campaign_id, "queue_id": self.queue_id, "recipient_id": claim.id,
                **get_pii_log_fields(claim.email, level)}

    def _failed(
        self,
        claim: Claim,
        status: str,
        smtp_code: int | None,
        error: str,
        *,
        error_class: str = "permanent",
        attempted: bool = True,
        hard_bounce: bool = False,
    ) -> Outcome:
        logger.bind(
            **self._about(claim, "ERROR"),
            smtp_code=smtp_code,
            error_class=error_class,
            error=error,
            recipient_status=status,
        ).error("Failed to send email")
        return Outcome(claim, status, smtp_code, error=error[:500], attempted=attempted, hard_bounce=hard_bounce)

    # --- recording -----------------------------------------------------------------------

    def _record(
        self, *, next_job_id: str | None = None, claim_next: bool = False, release_the_rest: bool = False
    ) -> ClaimedBatch:
        """Have `delivery.record_batch` record the outcomes so far and release the untried claims
        (one commit); only then are they dropped here and counted in the report. Returns the next
        batch when `claim_next`."""
        recorded = delivery.record_batch(
            self.campaign_id,
            self.job_id,
            self.outcomes,
            self.unclaimed,
            self.clock(),
            next_job_id=next_job_id,
            claim_next=self.settings.send_batch_size if claim_next else 0,
            # Untried claims released here come first again (paced sending leaves some).
            claim_after=min(claim.id for claim in self.unclaimed) - 1 if self.unclaimed else self.claimed_up_to,
            release_the_rest=release_the_rest,
        )
        self.outcomes, self.unclaimed = [], []
        self.report.add(recorded)
        return recorded.next_batch

    # --- ways a slice ends ---------------------------------------------------------------

    def _hand_over(self) -> None:
        """Time budget used (or SIGTERM): record, release, and enqueue the continuation."""
        self._quiesce()
        next_job_id = new_slice_job_id(self.campaign_id)
        self._record(next_job_id=next_job_id)
        self.report.outcome = SliceOutcome(SliceEnd.STOPPED if _stop_requested.is_set() else SliceEnd.HANDED_OVER)
        self._enqueue_continuation(next_job_id)

    def _enqueue_continuation(self, job_id: str) -> None:
        """Enqueue the next slice, waiting a moment (within the job's time) while Redis is down."""
        deadline = min(self.job_deadline, time.monotonic() + self.settings.smtp_timeout_seconds)
        try:
            call_through_outage(lambda: enqueue_send_slice(self.campaign_id, job_id=job_id), deadline=deadline)
        except RedisError as exc:
            # Nothing is lost: the recipients are pending again and the recovery sweep
            # re-enqueues a campaign nobody works on once Redis is back.
            logger.bind(error_type=type(exc).__name__).error(
                "Could not enqueue the next slice (Redis unavailable); the recovery sweep will retry"
            )

    def _hand_over_after_database_outage(self) -> bool:
        """The database went away mid-slice: wait for it (within the job's time), record what this
        slice did, release the rest and hand over. False when it did not return in time."""
        self._close()  # the connections finish their messages in flight; the results stay queued
        self.probe = None
        try:
            call_through_outage(
                self._record_what_is_known, services=(Service.DATABASE,), deadline=self.job_deadline,
                before_retry=db.session.rollback,
            )
        except Exception:  # still down at the deadline: the claims stay for the recovery sweep
            return False
        self.report.outcome = SliceOutcome(SliceEnd.HANDED_OVER)
        self._enqueue_continuation(new_slice_job_id(self.campaign_id))
        return True

    def _record_what_is_known(self, exc: BaseException | None = None) -> None:
        """Record every outcome still held here and release the untried claims (the writes are
        idempotent); messages still in flight, if any, become `unknown`. Claims this slice never
        saw (a claim committed while its answer was lost) go back to pending too."""
        self._take_in_flight_as_unknown(exc)
        self._record(release_the_rest=True)

    def _drained(self) -> None:
        """Nothing left to claim: stale claims become unknown, and the campaign finishes if nothing is left."""
        self._quiesce()
        self._record()
        now = self.clock()
        cutoff = now - timedelta(seconds=self.settings.stale_claim_seconds)
        delivery.mark_stale_claims_unknown(self.campaign_id, cutoff, now=now)
        finished = delivery.finish_campaign_if_done(self.campaign_id, now=now)
        self.report.outcome = SliceOutcome(SliceEnd.FINISHED if finished else SliceEnd.DRAINED)

    def _stop(self, status: str | None) -> None:
        """Paused, cancelled or deferred elsewhere: record, release, no continuation."""
        self._quiesce()
        self._record()
        self.report.outcome = SliceOutcome(SliceEnd.STOPPED, status)
        logger.bind(campaign_status=status).info("Send slice stopped: campaign no longer sending")

    def _stop_for_global_pause(self) -> None:
        self._quiesce()
        self._record()
        deferred = delivery.defer_for_global_pause(self.campaign_id, self.clock())
        self.report.outcome = SliceOutcome(SliceEnd.DEFERRED if deferred else SliceEnd.STOPPED, Reason.GLOBAL_PAUSE)

    def _defer_for_rate_limit(self, next_free_at: datetime) -> None:
        self._quiesce()
        now = self.clock()
        self._record()
        delivery.defer_for_rate_limit(self.campaign_id, next_free_at, now=now)
        self.report.outcome = SliceOutcome(SliceEnd.DEFERRED, Reason.RATE_LIMIT)

    def _transient_error(self, outcome: Outcome) -> None:
        self._quiesce()
        now = self.clock()
        self._record()
        reason = delivery.record_transient_error(self.campaign_id, outcome.error or "transient error", now=now)
        end = SliceEnd.PAUSED if reason is Reason.CIRCUIT_BREAKER else SliceEnd.DEFERRED
        self.report.outcome = SliceOutcome(end, reason)

    def _abandon(self, exc: BaseException) -> None:
        """The job is being stopped (SIGTERM deadline, RQ timeout) or failed: record what is known.

        The message in flight, if any, becomes `unknown`; untried claims go back to `pending`.
        Outcomes whose record failed are still held here and are written again (idempotently).
        If even this fails, the claims stay `sending` and the recovery sweep marks them unknown.
        """
        try:
            self._record_what_is_known(exc)
            if isinstance(exc, JOB_STOPPING):
                self._enqueue_continuation(new_slice_job_id(self.campaign_id))
        except Exception:
            logger.opt(exception=True).error("Could not record the stopped slice; its claims will become unknown")
        logger.bind(error_type=type(exc).__name__).warning("Send slice stopped by an exception")

    def _take_in_flight_as_unknown(self, exc: BaseException | None) -> None:
        """Stop the connections; what they were sending becomes `unknown`, what they had not begun, untried.

        On a failure that is not RQ stopping the job, the connections first send what they hold.
        """
        if self.connections is None:
            return
        if not isinstance(exc, JOB_STOPPING):
            # Not a stop but a failure (a database blip, a bug): what the connections hold was claimed
            # and has its tokens; let them send it (bounded by the SMTP timeout) so it can be recorded.
            deadline = time.monotonic() + self.settings.smtp_timeout_seconds * 3
            while self.connections.outstanding and time.monotonic() < deadline:
                try:
                    self._collect(timeout=0.05)
                except BaseException:  # already failing; what is still in flight becomes unknown below
                    break
        self.connections.stop()
        queued = self.connections.take_back_queued()
        in_flight = self.connections.in_flight()
        try:
            self._collect(timeout=0)
        except BaseException:  # already failing: the claims of a crashed send become unknown below
            pass
        recorded = {outcome.claim.id for outcome in self.outcomes}
        for delivery_ in in_flight:
            claim = delivery_.payload[0]
            if claim.id not in recorded:
                reason = type(exc).__name__ if exc is not None else "an outage"
                self.outcomes.append(Outcome(claim, R_UNKNOWN, error=f"job stopped while sending ({reason})"))
        while not self.connections.untried.empty():
            queued.append(self.connections.untried.get_nowait())
        self.unclaimed += [delivery_.payload[0] for delivery_ in queued]

    def _close(self) -> None:
        if self.listener is not None:
            self.listener.close()
        if self.connections is not None:
            self.connections.close(timeout=self.settings.smtp_timeout_seconds)
        if self.probe is not None:
            try:
                self.probe_cursor.close()
                self.probe.close()
            except Exception as exc:  # a probe connection the database dropped: nothing to release
                if not is_database_outage(exc):
                    raise
