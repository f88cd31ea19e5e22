"""How a slice ends: the loop decides an `Ending` (a value), `end_slice` carries it out and says how
the slice ended (`SliceOutcome`, the report's and the logs' form).

Every ending first stops the connections before their next message, lets those in flight finish,
and records what the slice did (one commit); then, by its cause: hand over to a fresh job, finish
the campaign, stop, or defer / pause the campaign. `abandon` is the ending of a job that fails or
that RQ stops: it records what is known, and what was in flight becomes `unknown`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from loguru import logger
from redis import RedisError

from mailadmin.jobs.send.tokens import JOB_STOPPING, ClaimsInHand
from mailadmin.limits.waiting_line import keep_place_in_line
from mailadmin.logging.policy import LOGGER_NAME_FIELD
from mailadmin.models.reasons import Reason
from mailadmin.queue.dispatch import enqueue_send_slice, new_slice_job_id
from mailadmin.queue.lifeline import ParentGone
from mailadmin.queue.outages import call_through_outage
from mailadmin.services import delivery
from mailadmin.services.delivery import Outcome, SendCounts

# The send loop's records keep the package's name as their `logger` (playbook/OBSERVABILITY.md).
logger = logger.bind(**{LOGGER_NAME_FIELD: __package__})

# Set by the SIGTERM path (`request_slice_stop`): the running slice hands over before its next message.
SHUTDOWN_REQUESTED = threading.Event()


def request_slice_stop() -> None:
    """Ask the running slice to stop before its next message (called from the SIGTERM path)."""
    # Only an Event.set(): this runs in a signal handler, which must not wait for a lock the
    # interrupted code may hold. Each connection reads the event before its next message.
    SHUTDOWN_REQUESTED.set()


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


class Cause(StrEnum):
    """What ends a running slice."""

    NOTHING_LEFT = "nothing_left"  # nothing to claim, nothing in hand
    HAND_OVER = "hand_over"  # the time budget is used, or SIGTERM
    TRANSIENT_ERROR = "transient_error"  # a message failed transiently (`outcome`)
    RATE_LIMIT = "rate_limit"  # the hourly quota is used up until `until`
    GLOBAL_PAUSE = "global_pause"  # sending was switched off
    DEFERRED_ELSEWHERE = "deferred_elsewhere"  # another slice deferred the campaign (`status`)
    LEFT_SENDING = "left_sending"  # paused, cancelled or finished elsewhere (`status`)


@dataclass(frozen=True, slots=True)
class Ending:
    """How the running slice ends, as the loop decided it."""

    cause: Cause
    status: str | None = None
    until: datetime | None = None
    outcome: Outcome | None = None


def end_slice(ending: Ending, hand: ClaimsInHand, job_deadline: float) -> SliceOutcome:
    """Carry out `ending`: stop and record, then hand over, finish, stop, defer or pause."""
    if ending.cause is Cause.DEFERRED_ELSEWHERE:
        # Deferred by another slice (the hourly quota, a transient error): what the connections hold
        # was claimed and has its tokens, so they send it first. (A pause, a cancel or the switch
        # stops them before their next message instead.)
        hand.connections.release()
        hand.collect_in_flight(until_stopped=True)
    hand.quiesce()
    if ending.cause is Cause.HAND_OVER:
        next_job_id = new_slice_job_id(hand.campaign_id)
        hand.record(next_job_id=next_job_id)
        handed_over = SliceOutcome(SliceEnd.STOPPED if SHUTDOWN_REQUESTED.is_set() else SliceEnd.HANDED_OVER)
        enqueue_continuation(hand.campaign_id, next_job_id, hand.settings.smtp_timeout_seconds, job_deadline)
        return handed_over
    now = hand.clock()
    hand.record()
    match ending.cause:
        case Cause.NOTHING_LEFT:
            return _drained(hand)
        case Cause.TRANSIENT_ERROR:
            return _transient_error(hand, ending.outcome, now)
        case Cause.RATE_LIMIT:
            delivery.defer_for_rate_limit(hand.campaign_id, ending.until, now=now)
            return SliceOutcome(SliceEnd.DEFERRED, Reason.RATE_LIMIT)
        case Cause.GLOBAL_PAUSE:
            deferred = delivery.defer_for_global_pause(hand.campaign_id, hand.clock())
            return SliceOutcome(SliceEnd.DEFERRED if deferred else SliceEnd.STOPPED, Reason.GLOBAL_PAUSE)
    logger.bind(campaign_status=ending.status).info("Send slice stopped: campaign no longer sending")
    return SliceOutcome(SliceEnd.STOPPED, ending.status)


def _drained(hand: ClaimsInHand) -> SliceOutcome:
    """Nothing left to claim: stale claims become unknown, and the campaign finishes if nothing is left."""
    now = hand.clock()
    cutoff = now - timedelta(seconds=hand.settings.stale_claim_seconds)
    delivery.mark_stale_claims_unknown(hand.campaign_id, cutoff, now=now)
    finished = delivery.finish_campaign_if_done(hand.campaign_id, now=now)
    return SliceOutcome(SliceEnd.FINISHED if finished else SliceEnd.DRAINED)


def _transient_error(hand: ClaimsInHand, outcome: Outcome, now: datetime) -> SliceOutcome:
    """Count the failure towards the breaker and defer the campaign, or pause it at the threshold."""
    reason = delivery.record_transient_error(hand.campaign_id, outcome.error or "transient error", now=now)
    if reason is Reason.TRANSIENT_ERROR:
        # Still in the middle of its send: its place in the quota's line waits for its retry.
        keep_place_in_line(hand.books.redis, hand.campaign_id, delivery.transient_retry_at(now),
                           now=now.timestamp() if hand.books.injected_clock else None)
    return SliceOutcome(SliceEnd.PAUSED if reason is Reason.CIRCUIT_BREAKER else SliceEnd.DEFERRED, reason)


def enqueue_continuation(campaign_id: int, job_id: str, wait_seconds: float, job_deadline: float) -> None:
    """Enqueue the next slice, waiting up to `wait_seconds` (within the job's time) while Redis is down."""
    deadline = min(job_deadline, time.monotonic() + wait_seconds)
    try:
        call_through_outage(lambda: enqueue_send_slice(campaign_id, job_id=job_id), deadline=deadline)
    except (RedisError, ParentGone) as exc:
        # Nothing is lost: the recipients are pending again and the recovery sweep
        # re-enqueues a campaign nobody works on once Redis is back.
        logger.bind(error_type=type(exc).__name__).error(
            "Could not enqueue the next slice (Redis unavailable); the recovery sweep will retry"
        )


def record_what_is_known(hand: ClaimsInHand, exc: BaseException | None = None) -> None:
    """Record every outcome still held and release the untried claims (the writes are idempotent);
    messages still in flight, if any, become `unknown`. Claims this slice never saw (a claim
    committed while its answer was lost) go back to pending too."""
    hand.take_in_flight_as_unknown(exc)
    hand.record(release_the_rest=True)


def abandon(hand: ClaimsInHand, exc: BaseException, job_deadline: float) -> None:
    """The job is being stopped (SIGTERM deadline, RQ timeout) or failed: record what is known.

    The message in flight, if any, becomes `unknown`; untried claims go back to `pending`.
    Outcomes whose record failed are still held here and are written again (idempotently).
    If even this fails, the claims stay `sending` and the recovery sweep marks them unknown.
    """
    try:
        record_what_is_known(hand, exc)
        if isinstance(exc, JOB_STOPPING):
            enqueue_continuation(hand.campaign_id, new_slice_job_id(hand.campaign_id),
                                 hand.settings.smtp_timeout_seconds, job_deadline)
    except Exception:
        logger.opt(exception=True).error("Could not record the stopped slice; its claims will become unknown")
    logger.bind(error_type=type(exc).__name__).warning("Send slice stopped by an exception")
