"""The claims a slice holds, around its connections, and their rate-limit tokens — the books in one place.

`TokenBooks` keeps the slice's tokens: one reservation per hand-out, never more than a claim batch
(campaigns short of quota take it in turns, batch by batch, through the quota's waiting line), and
on a paced relay only for the connections free right now. A token comes back when its message was
refused by the relay or never sent (see `limits/send_pace.py`); once the hourly quota refused, the
books ask again only after a refused message gave its token back.

`ClaimsInHand` holds what the slice claimed until `delivery.record_batch` has committed it: the
claims not tried yet, and the outcomes not recorded yet (a failed record loses nothing: they are
written again, idempotently). It hands claims to the connections with their tokens, collects what
they finished, takes back what they gave back unsent, and records.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta

from redis import Redis
from rq.exceptions import ShutDownImminentException
from rq.timeouts import JobTimeoutException

from mailadmin.limits.handover import Accepted, HandOver
from mailadmin.limits.send_pace import TokenBatch, reserve_send_tokens, settle_send_token_batches
from mailadmin.mail.connections import Delivery, SmtpConnections
from mailadmin.models.campaign import R_FAILED, R_PENDING, R_SENT, R_SKIPPED, R_UNKNOWN
from mailadmin.services import delivery
from mailadmin.services.delivery import Claim, ClaimedBatch, Outcome, SendCounts
from mailadmin.services.delivery.counting import count_outcome
from mailadmin.settings import Settings

# When the rate limiter refuses without saying when a token frees (should not happen).
RATE_LIMIT_FALLBACK_DELAY = timedelta(seconds=60)
# Exceptions RQ raises inside the job to stop it: record what we know, then let them propagate.
JOB_STOPPING = (ShutDownImminentException, JobTimeoutException)
# Messages in flight get this many SMTP timeouts to finish when the slice ends.
IN_FLIGHT_TIMEOUTS = 3
# The connections are handed at most this many deliveries each at a time: one awaiting its verdict,
# one whose envelope goes out with that body, and two queued behind, so that a connection still finds
# its next message queued while the slice records and claims (with one queued behind, a busy machine
# measured 1.11 round trips per message instead of 1.02). Only what was handed out may end `unknown`
# after a crash (`limits/handover.py`). The slice tops up once a connection's worth has room.
HANDED_OUT_PER_CONNECTION = 4
# ... and topped up once this many per connection have room (one reservation per hand-out); with
# few connections, never less than TOP_UP_AT_LEAST at a time (one connection: a reservation per 4
# messages, not per message).
TOP_UP_PER_CONNECTION = 1
TOP_UP_AT_LEAST = 4


def _top_up(connections: int) -> int:
    return max(TOP_UP_PER_CONNECTION * connections, TOP_UP_AT_LEAST)


def top_up_size(connections: int, batch_size: int) -> int:
    """How many deliveries a hand-out waits to have room for (never more than the connections may hold)."""
    return min(_top_up(connections), most_handed_out(connections, batch_size))


def most_handed_out(connections: int, batch_size: int) -> int:
    """The most deliveries the connections hold at once: HANDED_OUT_PER_CONNECTION each (and room for
    one top-up beyond what keeps them busy), but never more than a batch beyond one per connection:
    with small batches, what may end `unknown` after a crash stays within the bound it had before
    the hand-over record."""
    return min(max(HANDED_OUT_PER_CONNECTION * connections, 2 * _top_up(connections)), batch_size + connections)


class TokenBooks:
    """The slice's rate-limit tokens: what it reserved, what it gives back, and a refusal of the hourly quota."""

    def __init__(
        self, redis: Redis, settings: Settings, campaign_id: int, clock: Callable[[], datetime], *,
        injected_clock: bool = False,
    ) -> None:
        self.redis = redis
        self.settings = settings
        self.campaign_id = campaign_id
        self.clock = clock
        self.injected_clock = injected_clock  # then Redis is told "now" too (tests drive time)
        self.batches: list[TokenBatch] = []  # reserved, not settled yet
        self.refused_until: datetime | None = None  # when a token frees, once the hourly quota refused
        self.refusals_given_back = False  # since that refusal, a token of a message the relay refused went back

    def wanted(self, waiting: int, free_connections: int, room: int) -> int:
        """Tokens to ask for: one claim batch at most, no more than the connections have `room` for
        (what is handed out is what may end `unknown` after a crash) and, when paced, only for the
        connections free now (a late send next to an on-time one would put more than the cap into one second)."""
        wanted = min(waiting, self.settings.send_batch_size, room)
        if self.settings.smtp_max_per_second:
            wanted = min(wanted, free_connections)
        return max(0, wanted)

    def reserve(self, claims: list[Claim], job_id: str, accepted: list[Accepted] | None = None) -> TokenBatch | None:
        """Take a token for each of `claims` (up to as many as granted) in one Redis call, which also adds
        those granted, and the messages `accepted` since the last call, to the job's hand-over record;
        None when the hourly quota refused (remembered)."""
        batch = reserve_send_tokens(
            self.redis, len(claims), self.settings.smtp_max_per_hour, self.settings.smtp_max_per_second,
            campaign_id=self.campaign_id, batch_size=self.settings.send_batch_size,
            now=self.clock().timestamp() if self.injected_clock else None,
            handing_over=HandOver(job_id, [claim.id for claim in claims], accepted or []),
        )
        if batch.granted == 0:
            self.refused_until = batch.next_free_at or self.clock() + RATE_LIMIT_FALLBACK_DELAY
            self.refusals_given_back = False
            return None
        self.batches.append(batch)
        return batch

    def may_ask_again(self) -> bool:
        """After a refusal, with nothing in flight: settle, and forget the refusal when a refused message
        gave its token back since (then the quota may have room again)."""
        self.settle(finished_only=True)
        if self.refusals_given_back:
            self.refused_until = None
        return self.refused_until is None

    def settle(self, *, finished_only: bool) -> None:
        """Give back each (finished) batch's unused and refused tokens and date its used ones: one round trip."""
        keep, done = [], []
        for batch in self.batches:
            (keep if finished_only and batch.pending else done).append(batch)
        settle_send_token_batches(self.redis, done)
        for batch in done:
            self.refusals_given_back |= not all(batch.counted)
        self.batches = keep


class ClaimsInHand:
    """What the slice claimed and has not recorded yet, and the connections it hands the claims to."""

    def __init__(self, books: TokenBooks, job_id: str, counts: SendCounts) -> None:
        self.books = books
        self.settings = books.settings
        self.campaign_id = books.campaign_id
        self.job_id = job_id
        self.clock = books.clock
        self.counts = counts  # what the recorded batches changed, added up
        self.connections: SmtpConnections | None = None  # open once there is something to send
        self.unclaimed: list[Claim] = []  # claimed, not tried yet
        self.outcomes: list[Outcome] = []  # tried, not recorded yet
        self.accepted: list[Accepted] = []  # sent, in neither the database nor the hand-over record yet
        self.claimed_up_to = 0  # the highest recipient id claimed so far: the next claim looks above it first
        self.transient: Outcome | None = None  # the transient failure that ends the slice

    def take(self, batch: ClaimedBatch) -> bool:
        """Work on a claimed batch: suppressed addresses become skipped outcomes; False when it is empty."""
        for claim in batch.suppressed:
            self.outcomes.append(Outcome(claim, R_SKIPPED, error="suppressed", attempted=False))
        self.unclaimed.extend(batch.to_send)
        self.claimed_up_to = max((claim.id for claim in (*batch.to_send, *batch.suppressed)), default=self.claimed_up_to)
        return bool(batch)

    def record(
        self, *, next_job_id: str | None = None, claim_next: bool = False, release_the_rest: bool = False
    ) -> ClaimedBatch:
        """Have `delivery.record_batch` record the outcomes so far and release the untried claims (one
        commit); only then are they dropped here and counted. Returns the next batch when `claim_next`."""
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
        self.outcomes, self.unclaimed, self.accepted = [], [], []
        self.counts.add(recorded)
        return recorded.next_batch

    def hand_out(self) -> datetime | None:
        """Reserve tokens for the claims waiting (one Redis call) and hand them to the connections.

        Returns when a token frees once the hourly quota refused and nothing is left in flight: the
        slice then defers until that moment.
        """
        connections = self.connections
        if connections.stopped:
            return None
        self.take_back_untried()
        if not self.unclaimed:
            return None
        if self.books.refused_until is not None:
            # Asked once: the quota is used up. Defer when the connections have sent what they hold,
            # unless the relay refused some of those messages: their tokens went back, so ask again.
            if connections.outstanding:
                return None
            return self.hand_out() if self.books.may_ask_again() else self.books.refused_until
        count, batch_size = self.settings.smtp_connections, self.settings.send_batch_size
        room = most_handed_out(count, batch_size) - connections.outstanding
        if room < top_up_size(count, batch_size) and room < len(self.unclaimed):
            return None  # topped up once there is room for a few each: one Redis call per few messages
        wanted = self.books.wanted(len(self.unclaimed), connections.free, room)
        if wanted == 0:
            return None
        tokens = self.books.reserve(self.unclaimed[:wanted], self.job_id, self.accepted)
        if tokens is None or tokens.backend_available:
            self.accepted = []  # Redis answered: in the hand-over record now
        if tokens is None:
            return self.hand_out()
        granted, self.unclaimed = self.unclaimed[: tokens.granted], self.unclaimed[tokens.granted :]
        held = self._note_handed_over_without_record(granted, tokens) if not tokens.backend_available else None
        connections.submit([
            Delivery((claim, tokens), slot=slot, token=index)
            for index, (claim, slot) in enumerate(zip(granted, tokens.slots, strict=True))
            if held is None or claim.id in held
        ])
        return None

    def _note_handed_over_without_record(self, granted: list[Claim], tokens: TokenBatch) -> set[int]:
        """Redis is unreachable, so the hand-over record was not written: mark these claims as handed over
        in the database first (one commit). Only the claims this job still holds are handed out; the
        tokens of the others are not used. The database down too: the exception ends the slice, and
        the claims, never handed over, are recorded untried or become `unknown`."""
        try:
            held = delivery.note_handed_over_without_record(self.campaign_id, self.job_id,
                                                            [claim.id for claim in granted], self.clock())
        except BaseException:
            self.unclaimed = granted + self.unclaimed
            for index in range(len(granted)):
                tokens.finish(index, None)
            raise
        for index, claim in enumerate(granted):
            if claim.id not in held:
                tokens.finish(index, None)
        return held

    def take_back_untried(self) -> None:
        """Deliveries a connection gave back (slot passed, or stopped): their token is unused, they wait again."""
        late = []
        for given_back in self.connections.take_untried():
            claim, tokens = given_back.payload
            tokens.finish(given_back.token, None)
            late.append(claim)
        if late:
            self.unclaimed = sorted(late + self.unclaimed, key=lambda claim: claim.id)

    def collect(self, timeout: float = 0) -> None:
        """Move finished sends to `outcomes` (waiting up to `timeout` for the first); a transient failure
        stops every connection before its next message."""
        for result in self.connections.finished(timeout):
            if isinstance(result, BaseException):
                raise result  # a bug in the send path: the job fails (RQ records it), claims become unknown
            self.outcomes.append(result)
            count_outcome(result)  # /metrics: written with the next token settle (no round trip of its own)
            if result.status == R_SENT:
                self.accepted.append(Accepted(result.claim.id, result.smtp_code, result.message_id,
                                              result.sent_at.timestamp() if result.sent_at else time.time()))
            if result.status in (R_SENT, R_FAILED) and result.attempted:
                self.connections.warm_up()  # the relay answers: use every connection
            if result.status in (R_PENDING, R_UNKNOWN) and result.attempted and self.transient is None:
                self.transient = result
                self.connections.stop()

    def collect_in_flight(self, *, until_stopped: bool = False) -> None:
        """Collect while the connections send what they hold, for up to IN_FLIGHT_TIMEOUTS × the SMTP
        timeout (`until_stopped`: or until they are stopped)."""
        deadline = time.monotonic() + self.settings.smtp_timeout_seconds * IN_FLIGHT_TIMEOUTS
        while self.connections.outstanding and time.monotonic() < deadline:
            if until_stopped and self.connections.stopped:
                return
            self.collect(timeout=0.05)

    def quiesce(self) -> None:
        """Stop every connection before its next message, wait for those in flight, take back the untried
        and settle every token batch."""
        if self.connections is None:
            return
        self.connections.stop()
        self.collect_in_flight()
        self.collect()
        self.take_back_untried()
        self.books.settle(finished_only=False)

    def take_in_flight_as_unknown(self, exc: BaseException | None) -> None:
        """Stop the connections; what they were sending becomes `unknown`, what they had not begun, untried.

        On a failure that is not RQ stopping the job, the connections first send what they hold.
        """
        if self.connections is None:
            return
        if not isinstance(exc, JOB_STOPPING):
            # Not a stop but a failure (a database blip, a bug): what the connections hold was claimed
            # and has its tokens; let them send it (bounded by the SMTP timeout) so it can be recorded.
            try:
                self.collect_in_flight()
            except BaseException:  # already failing; what is still in flight becomes unknown below
                pass
        self.connections.stop()
        queued = self.connections.take_back_queued()
        in_flight = self.connections.in_flight()
        try:
            self.collect()
        except BaseException:  # already failing: the claims of a crashed send become unknown below
            pass
        recorded = {outcome.claim.id for outcome in self.outcomes}
        reason = type(exc).__name__ if exc is not None else "an outage"
        for sending in in_flight:
            claim = sending.payload[0]
            if claim.id not in recorded:
                self.outcomes.append(Outcome(claim, R_UNKNOWN, error=f"job stopped while sending ({reason})"))
        queued += self.connections.take_untried()
        self.unclaimed += [delivery_.payload[0] for delivery_ in queued]
