"""The send loop: one RQ job (`send_campaign_slice`) sends one bounded slice of a campaign.

A slice works for at most MAILER_SEND_SLICE_SECONDS, then hands over to a fresh job (its
continuation), so a platform SIGTERM never catches a long job and several workers share a big
campaign. The slice's own thread does every database and Redis call; MAILER_SMTP_CONNECTIONS
connection threads (`mail.connections`, pipelined: `mail.pipelining`) render and send. Per claim
batch (MAILER_SEND_BATCH_SIZE recipients):

1. **claim** pending recipients atomically — one statement, `WITH claim_batch AS MATERIALIZED
   (SELECT id ... LIMIT n FOR UPDATE SKIP LOCKED) UPDATE recipients ... FROM claim_batch WHERE
   status = 'pending' RETURNING ...` on PostgreSQL, the same single conditional UPDATE on SQLite
   (whose writers are serialized) — marking them `sending` with `claimed_by` (this job) and
   `claimed_at`;
2. take the batch's rate-limit tokens in one Redis call (`limits.send_pace`: hourly quota and, when
   set, per-second slots; fail-open) and hand the claims to the connections; a transient error on
   any connection, a refused quota, or a stop signal (`send_signals`: pause, cancel, deferral, the
   global switch) stops every connection before its next message;
3. when the connections run low: check the campaign's state (the safety net for a lost signal),
   **record** the outcomes so far (one statement on PostgreSQL, exact counters via `col = col + n`)
   and claim the next batch — one transaction.

Exactly-once intent: a recipient leaves `sending` only through this job's own records. A job
that dies (SIGKILL) leaves at most one batch plus the messages in flight in `sending`; the
recovery sweep turns those into `unknown` once older than MAILER_STALE_CLAIM_SECONDS — they are
shown, never silently re-sent.
On SIGTERM (RQ HerokuWorker: SIGRTMIN to the work horse) the loop stops before the next message,
records, releases what it did not try and enqueues its continuation: nothing becomes unknown.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from functools import partial

from loguru import logger
from redis import RedisError
from rq import Queue, Worker, get_current_job
from rq.exceptions import ShutDownImminentException
from rq.timeouts import JobTimeoutException
from sqlalchemy import String, bindparam, case, func, select, text, update
from sqlalchemy.engine import Connection

from mailadmin.extensions import SEND_QUEUE, db, get_redis, get_settings
from mailadmin.jobs import job_app_context
from mailadmin.jobs.scheduling import enqueue_send_slice, new_slice_job_id
from mailadmin.limits.send_pace import TokenBatch, reserve_send_tokens, settle_send_tokens
from mailadmin.logging import bind_context
from mailadmin.mail.connections import Delivery, SmtpConnections
from mailadmin.mail.message import InvalidAddressError, MessageBuilder, make_unsubscribe_token
from mailadmin.mail.pipelining import PipelinedSmtpTransport
from mailadmin.mail.templates import CampaignTemplates, recipient_fields
from mailadmin.mail.transport import PermanentSendError, SendError
from mailadmin.models import APP_STATE_ID, AppState, Campaign, CampaignQueue, Recipient
from mailadmin.models.campaign import (
    QUEUED,
    R_FAILED,
    R_PENDING,
    R_SENDING,
    R_SENT,
    R_SKIPPED,
    R_UNKNOWN,
    SENDING,
)
from mailadmin.models.suppression import REASON_HARD_BOUNCE
from mailadmin.models.types import UTCDateTime, utcnow
from mailadmin.pii import get_pii_log_fields
from mailadmin.send_signals import StopListener
from mailadmin.services import campaigns as campaign_service
from mailadmin.services.suppressions import suppress, suppressed_among

# A per-second slot a connection reaches later than this is not used: sent late, its message could
# land next to the following slot's on the provider's clock. It gets a fresh slot instead.
MAX_SLOT_LATENESS = 0.04
# When the rate limiter refuses without saying when a token frees (should not happen).
RATE_LIMIT_FALLBACK_DELAY = timedelta(seconds=60)
# 5xx replies that say "this mailbox does not exist": the address goes on the suppression list.
HARD_BOUNCE_CODES = frozenset({550, 551, 553})
HARD_BOUNCE_HINTS = (
    "5.1.0",
    "5.1.1",
    "5.1.2",
    "5.1.3",
    "5.1.6",
    "user unknown",
    "unknown user",
    "no such user",
    "unknown recipient",
    "mailbox unavailable",
    "mailbox not found",
    "does not exist",
    "invalid recipient",
    "recipient address rejected",
)
# Exceptions RQ raises inside the job to stop it: record what we know, then let them propagate.
JOB_STOPPING = (ShutDownImminentException, JobTimeoutException)

_recipients = Recipient.__table__
_campaigns = Campaign.__table__
_queues = CampaignQueue.__table__
_app_state = AppState.__table__

# The claim. A MATERIALIZED CTE runs exactly once: as `id IN (SELECT ... LIMIT n FOR UPDATE SKIP
# LOCKED)` PostgreSQL may plan a semi-join that re-runs the subquery per row and claims far more
# than n. SQLite ignores FOR UPDATE: its writers are serialized anyway.
_CLAIM_CANDIDATES = (
    select(_recipients.c.id)
    .where(_recipients.c.campaign_id == bindparam("b_campaign"), _recipients.c.status == R_PENDING)
    .order_by(_recipients.c.id)
    .limit(bindparam("b_limit"))
    .with_for_update(skip_locked=True)
    .cte("claim_batch")
    .prefix_with("MATERIALIZED")
)
_CLAIM_BATCH = (
    update(_recipients)
    .where(_recipients.c.id == _CLAIM_CANDIDATES.c.id, _recipients.c.status == R_PENDING)
    .values(
        status=R_SENDING,
        claimed_by=bindparam("b_token"),
        claimed_at=bindparam("b_now", type_=UTCDateTime()),
        updated_at=bindparam("b_now", type_=UTCDateTime()),
    )
    .returning(_recipients.c.id, _recipients.c.email, _recipients.c.name, _recipients.c.fields)
)

# Statements of the batch write, built once (SQLAlchemy then only looks them up in its cache).
_RECORD_OUTCOME = (
    update(_recipients)
    .where(
        _recipients.c.id == bindparam("b_id"),
        _recipients.c.claimed_by == bindparam("b_token"),
        _recipients.c.status == R_SENDING,
    )
    .values(
        status=bindparam("b_status"),
        attempts=_recipients.c.attempts + bindparam("b_inc"),
        smtp_code=bindparam("b_code"),
        smtp_message_id=bindparam("b_mid"),
        last_error=bindparam("b_err"),
        sent_at=bindparam("b_sent_at", type_=UTCDateTime()),
        claimed_by=bindparam("b_claimed_by"),
        updated_at=bindparam("b_now", type_=UTCDateTime()),
    )
)
# A transient failure: back to pending for a later retry, the attempt counted, the claim dropped.
_RELEASE_AFTER_ATTEMPT = _RECORD_OUTCOME.values(claimed_at=None)
_RELEASE_UNTRIED = (
    update(_recipients)
    .where(
        _recipients.c.id.in_(bindparam("b_ids", expanding=True)),
        _recipients.c.claimed_by == bindparam("b_token"),
        _recipients.c.status == R_SENDING,
    )
    .values(status=R_PENDING, claimed_by=None, claimed_at=None, updated_at=bindparam("b_now", type_=UTCDateTime()))
)
_ADD_TO_COUNTERS = (
    update(_campaigns)
    .where(_campaigns.c.id == bindparam("b_campaign"))
    .values(
        sent_count=_campaigns.c.sent_count + bindparam("b_sent"),
        failed_count=_campaigns.c.failed_count + bindparam("b_failed"),
        skipped_count=_campaigns.c.skipped_count + bindparam("b_skipped"),
        unknown_count=_campaigns.c.unknown_count + bindparam("b_unknown"),
        updated_at=bindparam("b_now", type_=UTCDateTime()),
    )
)
_QUEUE_HEARTBEAT = (
    update(_queues)
    .where(_queues.c.campaign_id == bindparam("b_campaign"))
    .values(
        heartbeat_at=bindparam("b_now", type_=UTCDateTime()),
        # A success resets the circuit breaker's count.
        consecutive_transient_errors=case(
            (bindparam("b_sent") > 0, 0), else_=_queues.c.consecutive_transient_errors
        ),
        current_job_id=func.coalesce(bindparam("b_next_job", type_=String()), _queues.c.current_job_id),
    )
)

# PostgreSQL: every outcome of a batch in ONE statement (arrays zipped by unnest), instead of one
# UPDATE per recipient; the same guard as _RECORD_OUTCOME, and the counts per status come back.
_RECORD_OUTCOMES_PG = text("""
    UPDATE recipients AS r SET
        status = v.status,
        attempts = r.attempts + v.inc,
        smtp_code = v.code,
        smtp_message_id = v.mid,
        last_error = v.err,
        sent_at = v.sent_at,
        claimed_by = v.claimed_by,
        claimed_at = CASE WHEN v.status = 'pending' THEN NULL ELSE r.claimed_at END,
        updated_at = :now
    FROM (
        SELECT unnest(CAST(:ids AS integer[])) AS id, unnest(CAST(:statuses AS text[])) AS status,
               unnest(CAST(:incs AS integer[])) AS inc, unnest(CAST(:codes AS integer[])) AS code,
               unnest(CAST(:mids AS text[])) AS mid, unnest(CAST(:errs AS text[])) AS err,
               unnest(CAST(:sent_ats AS timestamptz[])) AS sent_at, unnest(CAST(:claimed_bys AS text[])) AS claimed_by
    ) AS v
    WHERE r.id = v.id AND r.claimed_by = :token AND r.status = 'sending'
    RETURNING v.status
""")


def _record_outcomes_in_one_statement(rows: list[dict], token: str, now: datetime) -> dict[str, int]:
    """Write the batch's outcomes (the `_RECORD_OUTCOME` parameter rows) in one UPDATE; rows changed per status."""
    if not rows:
        return {}
    changed = db.session.execute(
        _RECORD_OUTCOMES_PG,
        {
            "ids": [row["b_id"] for row in rows],
            "statuses": [row["b_status"] for row in rows],
            "incs": [row["b_inc"] for row in rows],
            "codes": [row["b_code"] for row in rows],
            "mids": [row["b_mid"] for row in rows],
            "errs": [row["b_err"] for row in rows],
            "sent_ats": [row["b_sent_at"] for row in rows],
            "claimed_bys": [row["b_claimed_by"] for row in rows],
            "token": token,
            "now": now,
        },
    ).scalars().all()
    counts: dict[str, int] = {}
    for status in changed:
        counts[status] = counts.get(status, 0) + 1
    return counts


_stop_requested = threading.Event()
# The loop looks at the clock (hand-over time) at least this often while its connections send.
WAKE_AT_LEAST_EVERY = 0.25

# The per-message state query (see SendSlice._probe_state); `{placeholder}` is the driver's paramstyle.
PROBE_SQL = (
    "SELECT status, (SELECT sending_paused FROM app_state WHERE id = {app_state_id}) "
    "FROM campaigns WHERE id = {placeholder}"
)


def request_slice_stop() -> None:
    """Ask the running slice to stop before its next message (called from the SIGTERM path)."""
    # Only an Event.set(): this runs in a signal handler, which must not wait for a lock the
    # interrupted code may hold. Each connection reads the event before its next message.
    _stop_requested.set()


def slice_stop_requested() -> bool:
    """Has this process been asked to stop sending?"""
    return _stop_requested.is_set()


def is_hard_bounce(smtp_code: int | None, text: str) -> bool:
    """A permanent "no such mailbox" reply (550/551/553 with a user-unknown reason)."""
    if smtp_code not in HARD_BOUNCE_CODES:
        return False
    lowered = text.lower()
    return any(hint in lowered for hint in HARD_BOUNCE_HINTS)


@dataclass(slots=True)
class Claim:
    """A recipient this slice has claimed (status `sending`)."""

    id: int
    email: str
    name: str | None
    fields: dict | None


def claim_recipients(
    campaign_id: int, claimed_by: str, limit: int, now: datetime, *, commit: bool = True
) -> list[Claim]:
    """Atomically mark up to `limit` pending recipients `sending` for `claimed_by`; sorted by id.

    Concurrent callers never get the same recipient: PostgreSQL skips rows another claim has
    locked (FOR UPDATE SKIP LOCKED), SQLite serializes the writers.
    """
    rows = db.session.execute(
        _CLAIM_BATCH,
        {"b_campaign": campaign_id, "b_limit": limit, "b_token": claimed_by, "b_now": now},
    ).all()
    if commit:
        db.session.commit()
    return sorted((Claim(row.id, row.email, row.name, row.fields) for row in rows), key=lambda claim: claim.id)


@dataclass(slots=True)
class Outcome:
    """What happened to one claimed recipient, waiting to be recorded with its batch."""

    claim: Claim
    status: str  # sent | failed | skipped | unknown | pending (transient: retry later)
    smtp_code: int | None = None
    message_id: str | None = None
    error: str | None = None
    sent_at: datetime | None = None
    attempted: bool = True
    hard_bounce: bool = False


@dataclass
class SliceReport:
    """What one slice did; also the RQ job's result (`rq info`, tests)."""

    campaign_id: int
    job_id: str
    outcome: str = "started"
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    unknown: int = 0
    transient: int = 0
    released: int = 0
    siblings: int = 0


def send_campaign_slice(campaign_id: int) -> dict:
    """RQ job: send the next bounded slice of a campaign, then hand over to a fresh job."""
    job = get_current_job()
    with job_app_context():
        report = run_send_slice(campaign_id, job_id=job.id if job else None, siblings=parallel_slices() - 1)
    return asdict(report)


# With MAILER_SEND_PARALLEL_SLICES=0, one slice per worker on the send queue, up to this many.
MAX_AUTO_PARALLEL_SLICES = 16


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
        self.report = SliceReport(campaign_id, self.job_id)
        self.queue_id: int | None = None
        self.unclaimed: list[Claim] = []  # claimed, not tried yet
        self.outcomes: list[Outcome] = []  # tried, not recorded yet
        self.uncommitted_outcomes: list[Outcome] = []  # written by _record, not committed yet
        self.uncommitted_released: list[Claim] = []
        self.uncommitted_counts: tuple[int, ...] = (0,) * 6
        self.connections: SmtpConnections | None = None
        self.listener: StopListener | None = None
        self.stop_signal = threading.Event()  # set by the listener thread, handled by the loop
        self.transient_outcome: Outcome | None = None
        self.quota_refusal: datetime | None = None  # when a token frees, once the hourly quota refused
        self.token_batches: list[TokenBatch] = []
        self.probe: Connection | None = None

    # --- the slice ---------------------------------------------------------------------------

    def run(self) -> SliceReport:
        with bind_context(campaign_id=self.campaign_id, job_id=self.job_id):
            start = campaign_service.begin_slice(self.campaign_id, self.job_id, self.clock())
            if not start.proceed:
                self.report.outcome = f"skipped:{start.reason}"
                logger.bind(reason=start.reason).debug("Send slice skipped")
                return self.report
            self.queue_id = start.campaign.queue_id
            if start.started_campaign and self.siblings:
                self._start_siblings()
            try:
                self._loop(start.campaign)
            except BaseException as exc:
                self._abandon(exc)
                raise
            finally:
                self._close()
            logger.bind(**asdict(self.report)).info("Send slice ended")
        return self.report

    def _loop(self, campaign: campaign_service.SliceCampaign) -> None:
        """Claim, hand the claims to the connections, collect outcomes, record and claim again per batch."""
        builder = self._builder(campaign)
        self._open_probe()
        deadline = time.monotonic() + self.settings.send_slice_seconds
        more = self._claim_batch()
        db.session.commit()
        if not more:
            return self._drained()
        low_water = self.settings.smtp_connections
        paced = bool(self.settings.smtp_max_per_second)
        self.connections = SmtpConnections(
            self.settings.smtp_connections, self._new_transport, partial(self._send, builder), clock=self._now,
            max_lateness=MAX_SLOT_LATENESS if paced else None, low_water=low_water, wake_when_free=paced,
            also_stop_on=_stop_requested,
        )
        self.listener = StopListener(self.redis, self.campaign_id, self._on_stop_signal).start()
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
            if more and self.connections.outstanding <= low_water:
                # The safety net for a lost stop signal, then outcomes and the next claim in one commit.
                if (ending := self._ending_for_state()) is not None:
                    return ending()
                self._record()
                more = self._claim_batch()
                self._commit()
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
        if status not in (SENDING, QUEUED):
            return lambda: self._stop(status)
        return None

    def _on_stop_signal(self) -> None:
        """Listener thread: hold every connection before its next message; the loop checks the database."""
        self.stop_signal.set()
        if self.connections is not None:
            self.connections.hold()
            self.connections.wake()

    def _open_probe(self) -> None:
        self.probe = db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        driver = self.probe.connection.driver_connection
        self.probe_cursor = driver.cursor()
        placeholder = "?" if self.probe.dialect.paramstyle == "qmark" else "%s"
        self.probe_sql = PROBE_SQL.format(placeholder=placeholder, app_state_id=APP_STATE_ID)

    def _new_transport(self) -> PipelinedSmtpTransport:
        return PipelinedSmtpTransport.from_url(self.settings.smtp_url, timeout=self.settings.smtp_timeout_seconds)

    def _now(self) -> float:
        return self.clock().timestamp()

    # --- tokens and connections --------------------------------------------------------------

    def _submit_with_tokens(self) -> Callable[[], None] | None:
        """Reserve tokens for the claimed recipients (one Redis call) and hand them to the connections.

        Returns the rate-limit deferral when the hourly quota is used up and nothing is left in flight.
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
        self.connections.submit(
            [Delivery((claim, batch), slot=slot, token=index) for index, (claim, slot) in enumerate(zip(granted, batch.slots, strict=True))]
        )
        return None

    def _take_back_late(self) -> None:
        """Deliveries whose slot passed before a connection could use it: their token is unused, they go again."""
        late = []
        while not self.connections.untried.empty():
            delivery = self.connections.untried.get_nowait()
            claim, batch = delivery.payload
            batch.finish(delivery.token, None)
            late.append(claim)
        if late:
            self.unclaimed = sorted(late + self.unclaimed, key=lambda claim: claim.id)

    def _collect(self, timeout: float) -> None:
        """Move finished sends to `outcomes` (waiting up to `timeout` for the first)."""
        try:
            result = self.connections.results.get(timeout=timeout)
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

    def _time_to_hand_over(self, deadline: float) -> bool:
        return _stop_requested.is_set() or time.monotonic() >= deadline

    def _builder(self, campaign: campaign_service.SliceCampaign) -> MessageBuilder:
        templates = CampaignTemplates(campaign.subject, campaign.body_text, campaign.body_html)
        secret, base = self.settings.secret_key, self.settings.public_url
        campaign_id = campaign.id

        def unsubscribe_url_for(recipient_id: int) -> str:
            return f"{base}/u/{make_unsubscribe_token(secret, campaign_id, recipient_id)}"

        return MessageBuilder(campaign_id, self.settings.mail_from, templates, unsubscribe_url_for)

    def _start_siblings(self) -> None:
        for _ in range(self.siblings):
            try:
                enqueue_send_slice(self.campaign_id)
                self.report.siblings += 1
            except RedisError as exc:
                logger.bind(error_type=type(exc).__name__).error("Could not start a sibling slice (Redis unavailable)")
                return

    # --- claims --------------------------------------------------------------------------

    def _claim_batch(self) -> bool:
        """Claim the next batch (the caller commits); suppressed addresses are set aside as skipped."""
        claims = claim_recipients(
            self.campaign_id, self.job_id, self.settings.send_batch_size, self.clock(), commit=False
        )
        if not claims:
            return False
        suppressed = suppressed_among(claim.email for claim in claims)
        for claim in claims:
            if claim.email.strip().lower() in suppressed:
                self.outcomes.append(Outcome(claim, R_SKIPPED, error="suppressed", attempted=False))
            else:
                self.unclaimed.append(claim)
        return True

    def _probe_state(self) -> tuple[str | None, bool]:
        """The campaign's status and the global switch: the one query per message.

        Runs on an AUTOCOMMIT connection (so it sees other commits at once, also on SQLite) and
        straight on the driver: it is the hottest statement of the product.
        """
        row = self.probe_cursor.execute(self.probe_sql, (self.campaign_id,)).fetchone()
        if row is None:
            return None, False
        return row[0], bool(row[1])

    # --- one message ---------------------------------------------------------------------

    def _send(self, builder: MessageBuilder, transport: PipelinedSmtpTransport, delivery: Delivery) -> Outcome:
        """One connection thread: build and send one message; the outcome, never an exception for SMTP trouble."""
        claim, batch = delivery.payload
        try:
            fields = recipient_fields(claim.email, claim.name, claim.fields)
            built = builder.build(claim.id, claim.email, fields)
        except InvalidAddressError as exc:
            batch.finish(delivery.token, None)
            return self._failed(claim, R_SKIPPED, None, f"invalid address: {exc}", attempted=False)
        except Exception as exc:  # a template error on this recipient's data fails only this recipient
            batch.finish(delivery.token, None)
            return self._failed(claim, R_FAILED, None, f"could not build the message: {type(exc).__name__}: {exc}",
                                attempted=False)
        batch.finish(delivery.token, self._now())
        try:
            result = transport.send(builder.envelope_from, built.envelope_to, built.data)
        except PermanentSendError as exc:
            return self._failed(claim, R_FAILED, exc.smtp_code, exc.message, error_class="permanent",
                                hard_bounce=is_hard_bounce(exc.smtp_code, exc.message))
        except SendError as exc:
            # A transient error ends the slice: no connection, this one included, starts another message.
            self.connections.stop()
            # The whole message went out and the verdict was lost: it may have been delivered.
            status = R_UNKNOWN if exc.outcome_unknown else R_PENDING
            return self._failed(claim, status, exc.smtp_code, exc.message, error_class="transient")
        outcome = Outcome(claim, R_SENT, result.smtp_code, built.message_id, sent_at=self.clock())
        logger.bind(
            campaign_id=self.campaign_id,
            queue_id=self.queue_id,
            recipient_id=claim.id,
            **get_pii_log_fields(claim.email, "INFO"),
            smtp_message_id=built.message_id,
            provider=transport.provider,
            took_ms=round(result.took_ms, 1),
            rate_limit_count=batch.current_count,
        ).info("Email sent successfully")
        return outcome

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
            campaign_id=self.campaign_id,
            queue_id=self.queue_id,
            recipient_id=claim.id,
            **get_pii_log_fields(claim.email, "ERROR"),
            smtp_code=smtp_code,
            error_class=error_class,
            error=error,
            recipient_status=status,
        ).error("Failed to send email")
        return Outcome(claim, status, smtp_code, error=error[:500], attempted=attempted, hard_bounce=hard_bounce)

    # --- recording -----------------------------------------------------------------------

    def _record(self, *, next_job_id: str | None = None) -> None:
        """Write the outcomes so far and release the untried claims, in the session (see `_commit`).

        Every UPDATE is guarded by `status = 'sending' AND claimed_by = this job`, and the
        counters grow by the rows actually changed, so writing the same outcomes twice (after a
        rolled-back commit) changes nothing.
        """
        self.uncommitted_outcomes += self.outcomes
        self.uncommitted_released += self.unclaimed
        self.outcomes, self.unclaimed = [], []
        now = self.clock()
        groups: dict[str, list[dict]] = {}
        suppress_emails: list[str] = []
        for outcome in self.uncommitted_outcomes:
            terminal = outcome.status != R_PENDING
            groups.setdefault(outcome.status, []).append(
                {
                    "b_id": outcome.claim.id,
                    "b_token": self.job_id,
                    "b_status": outcome.status,
                    "b_inc": 1 if outcome.attempted else 0,
                    "b_code": outcome.smtp_code,
                    "b_mid": outcome.message_id,
                    "b_err": outcome.error,
                    "b_sent_at": outcome.sent_at,
                    "b_claimed_by": self.job_id if terminal else None,
                    "b_now": now,
                }
            )
            if outcome.hard_bounce:
                suppress_emails.append(outcome.claim.email)
        if db.session.get_bind().dialect.name == "postgresql":
            counts = _record_outcomes_in_one_statement([row for rows in groups.values() for row in rows], self.job_id, now)
        else:
            counts = {
                status: db.session.execute(
                    _RELEASE_AFTER_ATTEMPT if status == R_PENDING else _RECORD_OUTCOME, rows
                ).rowcount or 0
                for status, rows in groups.items()
            }
        released = 0
        if self.uncommitted_released:
            released = db.session.execute(
                _RELEASE_UNTRIED,
                {"b_ids": [claim.id for claim in self.uncommitted_released], "b_token": self.job_id, "b_now": now},
            ).rowcount
        for email in suppress_emails:
            suppress(email, REASON_HARD_BOUNCE, self.campaign_id, commit=False)
        sent, failed = counts.get(R_SENT, 0), counts.get(R_FAILED, 0)
        skipped, unknown = counts.get(R_SKIPPED, 0), counts.get(R_UNKNOWN, 0)
        if sent or failed or skipped or unknown:
            db.session.execute(
                _ADD_TO_COUNTERS,
                {"b_campaign": self.campaign_id, "b_sent": sent, "b_failed": failed, "b_skipped": skipped,
                 "b_unknown": unknown, "b_now": now},
            )
        db.session.execute(
            _QUEUE_HEARTBEAT,
            {"b_campaign": self.campaign_id, "b_now": now, "b_sent": sent, "b_next_job": next_job_id},
        )
        self.uncommitted_counts = (sent, failed, skipped, unknown, counts.get(R_PENDING, 0), released)

    def _commit(self) -> None:
        """Commit the session; what `_record` wrote now counts in the report."""
        db.session.commit()
        sent, failed, skipped, unknown, transient, released = self.uncommitted_counts
        self.report.sent += sent
        self.report.failed += failed
        self.report.skipped += skipped
        self.report.unknown += unknown
        self.report.transient += transient
        self.report.released += released
        self.uncommitted_counts = (0,) * 6
        self.uncommitted_outcomes, self.uncommitted_released = [], []

    def _record_and_commit(self, *, next_job_id: str | None = None) -> None:
        self._record(next_job_id=next_job_id)
        self._commit()

    # --- ways a slice ends ---------------------------------------------------------------

    def _hand_over(self) -> None:
        """Time budget used (or SIGTERM): record, release, and enqueue the continuation."""
        self._quiesce()
        next_job_id = new_slice_job_id(self.campaign_id)
        self._record_and_commit(next_job_id=next_job_id)
        self.report.outcome = "stopped" if _stop_requested.is_set() else "handed_over"
        self._enqueue_continuation(next_job_id)

    def _enqueue_continuation(self, job_id: str) -> None:
        try:
            enqueue_send_slice(self.campaign_id, job_id=job_id)
        except RedisError as exc:
            # Nothing is lost: the recipients are pending again and the recovery sweep
            # re-enqueues a campaign nobody works on once Redis is back.
            logger.bind(error_type=type(exc).__name__).error(
                "Could not enqueue the next slice (Redis unavailable); the recovery sweep will"
            )

    def _drained(self) -> None:
        """Nothing left to claim: stale claims become unknown, and the campaign finishes if nothing is left."""
        self._quiesce()
        self._record_and_commit()
        now = self.clock()
        from mailadmin.jobs.scheduling import mark_stale_claims_unknown

        mark_stale_claims_unknown(self.campaign_id, now - timedelta(seconds=self.settings.stale_claim_seconds), now=now)
        finished = campaign_service.finish_campaign_if_done(self.campaign_id, now=now)
        self.report.outcome = "finished" if finished else "drained"

    def _stop(self, status: str | None) -> None:
        """Paused, cancelled or deferred elsewhere: record, release, no continuation."""
        self._quiesce()
        self._record_and_commit()
        self.report.outcome = f"stopped:{status}"
        logger.bind(campaign_status=status).info("Send slice stopped: campaign no longer sending")

    def _stop_for_global_pause(self) -> None:
        self._quiesce()
        self._record_and_commit()
        if campaign_service.defer_for_global_pause(self.campaign_id, self.clock()):
            self.report.outcome = "deferred:global_pause"
        else:
            self.report.outcome = "stopped:global_pause"

    def _defer_for_rate_limit(self, next_free_at: datetime | None) -> None:
        self._quiesce()
        now = self.clock()
        until = next_free_at or now + RATE_LIMIT_FALLBACK_DELAY
        self._record()
        campaign_service.defer_for_rate_limit(self.campaign_id, until, now=now)  # commits the session
        self._commit()
        self.report.outcome = "deferred:rate_limit"

    def _transient_error(self, outcome: Outcome) -> None:
        self._quiesce()
        now = self.clock()
        self._record()
        reason = campaign_service.record_transient_error(self.campaign_id, outcome.error or "transient error", now=now)
        self._commit()  # already committed by the service: this only settles the report
        self.report.outcome = f"deferred:{reason}" if reason != "circuit_breaker" else "paused:circuit_breaker"

    def _abandon(self, exc: BaseException) -> None:
        """The job is being stopped (SIGTERM deadline, RQ timeout) or failed: record what is known.

        The message in flight, if any, becomes `unknown`; untried claims go back to `pending`.
        If even this fails, the claims stay `sending` and the recovery sweep marks them unknown.
        """
        try:
            db.session.rollback()
            # Whatever was written but not committed is written again (the writes are idempotent).
            self.outcomes = self.uncommitted_outcomes + self.outcomes
            self.unclaimed = self.uncommitted_released + self.unclaimed
            self.uncommitted_outcomes, self.uncommitted_released = [], []
            self.uncommitted_counts = (0,) * 6
            self._take_in_flight_as_unknown(exc)
            self._record_and_commit()
            if isinstance(exc, JOB_STOPPING):
                self._enqueue_continuation(new_slice_job_id(self.campaign_id))
        except Exception:
            db.session.rollback()
            logger.opt(exception=True).error("Could not record the stopped slice; its claims will become unknown")
        logger.bind(error_type=type(exc).__name__).warning("Send slice stopped by an exception")

    def _take_in_flight_as_unknown(self, exc: BaseException) -> None:
        """Stop the connections; what they were sending becomes `unknown`, what they had not begun, untried."""
        if self.connections is None:
            return
        self.connections.stop()
        queued = self.connections.take_back_queued()
        in_flight = self.connections.in_flight()
        try:
            self._collect(timeout=0)
        except BaseException:  # already failing: the claims of a crashed send become unknown below
            pass
        recorded = {outcome.claim.id for outcome in self.outcomes}
        for delivery in in_flight:
            claim = delivery.payload[0]
            if claim.id not in recorded:
                self.outcomes.append(Outcome(claim, R_UNKNOWN, error=f"job stopped while sending ({type(exc).__name__})"))
        while not self.connections.untried.empty():
            queued.append(self.connections.untried.get_nowait())
        self.unclaimed += [delivery.payload[0] for delivery in queued]

    def _close(self) -> None:
        if self.listener is not None:
            self.listener.close()
        if self.connections is not None:
            self.connections.close(timeout=self.settings.smtp_timeout_seconds)
        if self.probe is not None:
            self.probe_cursor.close()
            self.probe.close()
