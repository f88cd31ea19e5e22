"""Claim, record, release: how a slice takes recipients and writes back what became of them.

A claim marks up to a batch of pending recipients `sending` for one job; `record_batch` records a
batch's outcomes, releases its untried claims, adds to the counters, beats the heartbeat and
claims the next batch, in one transaction. Every recipient UPDATE is guarded by
`status = 'sending' AND claimed_by = this job` and the counters grow by the rows actually changed,
so recording the same outcomes again after a failed commit changes nothing twice.

The record itself is a `BatchRecorder`: on PostgreSQL one statement (`OneStatementRecorder`), on
SQLite the same writes statement by statement (`StatementByStatementRecorder`); both give the same
rows (tests/test_delivery_recorders.py runs them side by side on PostgreSQL).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import String, bindparam, case, func, select, text, update

from mailadmin.extensions import db
from mailadmin.models import Campaign, CampaignQueue, Recipient
from mailadmin.models.campaign import RecipientStatus
from mailadmin.models.suppression import REASON_HARD_BOUNCE, SOURCE_SMTP
from mailadmin.models.types import UTCDateTime
from mailadmin.services.delivery.values import Claim, ClaimedBatch, Outcome, RecordedBatch, SendCounts
from mailadmin.services.events.payloads import record_recipients_failed
from mailadmin.services.suppressions import suppress, suppressed_among
from mailadmin.services.transaction import in_transaction

R_PENDING, R_SENDING = RecipientStatus.PENDING, RecipientStatus.SENDING
_campaigns = Campaign.__table__
_recipients = Recipient.__table__
_queues = CampaignQueue.__table__

# --- statements, built once (SQLAlchemy then only looks them up in its cache) -----------------

# The claim. A MATERIALIZED CTE runs exactly once: as `id IN (SELECT ... LIMIT n FOR UPDATE SKIP
# LOCKED)` PostgreSQL may plan a semi-join that re-runs the subquery per row and claims far more
# than n. SQLite ignores FOR UPDATE: its writers are serialized anyway.
_CLAIM_CANDIDATES = (
    select(_recipients.c.id)
    .where(
        _recipients.c.campaign_id == bindparam("b_campaign"),
        _recipients.c.status == R_PENDING,
        _recipients.c.id > bindparam("b_after"),
    )
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


def _released(which):
    """UPDATE: this job's claims (`b_token`) still `sending` and matching `which` back to pending."""
    return (
        update(_recipients)
        .where(which, _recipients.c.claimed_by == bindparam("b_token"), _recipients.c.status == R_SENDING)
        .values(status=R_PENDING, claimed_by=None, claimed_at=None, updated_at=bindparam("b_now", type_=UTCDateTime()))
    )


_RELEASE_UNTRIED = _released(_recipients.c.id.in_(bindparam("b_ids", expanding=True)))
# Every claim of this job still `sending` (run after its outcomes are recorded): see `record_batch`.
_RELEASE_ALL_OF_JOB = _released(_recipients.c.campaign_id == bindparam("b_campaign"))
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


# --- claims and outcomes -------------------------------------------------------------------------


@in_transaction
def claim_recipients(
    campaign_id: int, claimed_by: str, limit: int, now: datetime, *, after: int = 0
) -> list[Claim]:
    """Atomically mark up to `limit` pending recipients `sending` for `claimed_by`; sorted by id.

    Concurrent callers never get the same recipient: PostgreSQL skips rows another claim has
    locked (FOR UPDATE SKIP LOCKED), SQLite serializes the writers. `after` is the highest id the
    caller claimed so far: the claim looks above it first, so it does not walk every recipient
    already sent (a campaign's claims would cost O(n²)), and below it only when that comes up
    short (released and retried recipients). Inside `record_batch` it joins that transaction: the
    next batch is claimed in the transaction that records this one.
    """
    rows = _claim_rows(campaign_id, claimed_by, limit, now, after)
    if len(rows) < limit and after:
        rows += _claim_rows(campaign_id, claimed_by, limit - len(rows), now, 0)
    return sorted((Claim(row.id, row.email, row.name, row.fields) for row in rows), key=lambda claim: claim.id)


def _claim_rows(campaign_id: int, claimed_by: str, limit: int, now: datetime, after: int) -> list:
    params = {"b_campaign": campaign_id, "b_limit": limit, "b_token": claimed_by, "b_now": now, "b_after": after}
    return db.session.execute(_CLAIM_BATCH, params).all()


def _claim_batch(campaign_id: int, claimed_by: str, limit: int, now: datetime, after: int = 0) -> ClaimedBatch:
    """Claim in the session; suppressed addresses are set apart (the slice records them skipped)."""
    claims = claim_recipients(campaign_id, claimed_by, limit, now, after=after)
    suppressed = suppressed_among(claim.email for claim in claims) if claims else set()
    batch = ClaimedBatch()
    for claim in claims:
        (batch.suppressed if claim.email.strip().lower() in suppressed else batch.to_send).append(claim)
    return batch


@in_transaction
def claim_batch(campaign_id: int, claimed_by: str, limit: int, now: datetime) -> ClaimedBatch:
    """A slice's first claim (its own transaction); later batches are claimed by `record_batch`."""
    return _claim_batch(campaign_id, claimed_by, limit, now)



# --- recording a batch ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BatchRecord:
    """One batch to record: its outcomes, its untried claims, and the job and moment that record them."""

    campaign_id: int
    job_id: str
    outcomes: Sequence[Outcome]
    untried: Sequence[Claim]
    now: datetime
    next_job_id: str | None = None


class BatchRecorder(Protocol):
    """Writes a batch's outcomes, releases its untried claims, adds to the counters and beats the
    heartbeat, in the session; returns the rows actually changed (`released` included)."""

    def record(self, batch: BatchRecord) -> SendCounts: ...


def _counts(by_status: dict[str, int], released: int) -> SendCounts:
    return SendCounts(
        sent=by_status.get(RecipientStatus.SENT, 0), failed=by_status.get(RecipientStatus.FAILED, 0),
        skipped=by_status.get(RecipientStatus.SKIPPED, 0), unknown=by_status.get(RecipientStatus.UNKNOWN, 0),
        transient=by_status.get(R_PENDING, 0), released=released,
    )


def _outcome_rows(outcomes: Iterable[Outcome], job_id: str, now: datetime) -> dict[RecipientStatus, list[dict]]:
    """The outcomes as bound parameters, grouped by recipient status (one executemany each)."""
    groups: dict[RecipientStatus, list[dict]] = {}
    for outcome in outcomes:
        terminal = outcome.status != R_PENDING
        groups.setdefault(outcome.status, []).append(
            {
                "b_id": outcome.claim.id,
                "b_token": job_id,
                "b_status": outcome.status,
                "b_inc": 1 if outcome.attempted else 0,
                "b_code": outcome.smtp_code,
                "b_mid": outcome.message_id,
                "b_err": outcome.error,
                "b_sent_at": outcome.sent_at,
                "b_claimed_by": job_id if terminal else None,
                "b_now": now,
            }
        )
    return groups


# PostgreSQL: a batch's whole record in ONE statement instead of five — every outcome (the rows come
# as one JSON document: far cheaper to pass than a parameter per row or an array per column), the
# untried claims released, the counters and the heartbeat. The same guards as the statements above;
# the rows actually changed per status come back, and the counters grow by exactly those.
_RECORD_BATCH_PG = text("""
    WITH v AS (
        SELECT * FROM json_to_recordset(CAST(:outcomes AS json)) AS v(
            id bigint, status text, inc integer, code integer, mid text, err text, sent_at timestamptz,
            claimed_by text)
    ), changed AS (
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
        FROM v
        WHERE r.id = v.id AND r.claimed_by = :token AND r.status = 'sending'
        RETURNING v.status
    ), released AS (
        UPDATE recipients SET status = 'pending', claimed_by = NULL, claimed_at = NULL, updated_at = :now
        WHERE id = ANY(CAST(:untried AS bigint[])) AND claimed_by = :token AND status = 'sending'
        RETURNING 1
    ), counts AS (
        SELECT count(*) FILTER (WHERE status = 'sent') AS sent, count(*) FILTER (WHERE status = 'failed') AS failed,
               count(*) FILTER (WHERE status = 'skipped') AS skipped,
               count(*) FILTER (WHERE status = 'unknown') AS unknown,
               count(*) FILTER (WHERE status = 'pending') AS pending
        FROM changed
    ), counters AS (
        UPDATE campaigns SET sent_count = sent_count + counts.sent, failed_count = failed_count + counts.failed,
            skipped_count = skipped_count + counts.skipped, unknown_count = unknown_count + counts.unknown,
            updated_at = :now
        FROM counts
        WHERE campaigns.id = :campaign AND counts.sent + counts.failed + counts.skipped + counts.unknown > 0
    ), heartbeat AS (
        UPDATE campaign_queue SET heartbeat_at = :now,
            -- A success resets the circuit breaker's count.
            consecutive_transient_errors = CASE WHEN counts.sent > 0 THEN 0
                                                ELSE campaign_queue.consecutive_transient_errors END,
            current_job_id = coalesce(CAST(:next_job AS text), campaign_queue.current_job_id)
        FROM counts
        WHERE campaign_queue.campaign_id = :campaign
    )
    SELECT sent, failed, skipped, unknown, pending, (SELECT count(*) FROM released) AS released FROM counts
""")


class OneStatementRecorder:
    """PostgreSQL: the whole record in `_RECORD_BATCH_PG`, one round trip."""

    def record(self, batch: BatchRecord) -> SendCounts:
        """Record `batch` in one statement; the rows changed."""
        rows = [
            {
                "id": outcome.claim.id,
                "status": outcome.status,
                "inc": 1 if outcome.attempted else 0,
                "code": outcome.smtp_code,
                "mid": outcome.message_id,
                "err": outcome.error,
                "sent_at": outcome.sent_at.isoformat() if outcome.sent_at is not None else None,
                "claimed_by": batch.job_id if outcome.status != R_PENDING else None,
            }
            for outcome in batch.outcomes
        ]
        row = db.session.execute(
            _RECORD_BATCH_PG,
            {"outcomes": json.dumps(rows), "untried": [claim.id for claim in batch.untried], "token": batch.job_id,
             "now": batch.now, "campaign": batch.campaign_id, "next_job": batch.next_job_id},
        ).one()
        return SendCounts(sent=row.sent, failed=row.failed, skipped=row.skipped, unknown=row.unknown,
                          transient=row.pending, released=row.released)


class StatementByStatementRecorder:
    """Any dialect (SQLite's recorder): the outcomes (one executemany per status), the released
    claims, the counters and the heartbeat, each its own statement."""

    def record(self, batch: BatchRecord) -> SendCounts:
        """Record `batch` statement by statement; the rows changed."""
        by_status = {
            status: db.session.execute(_RELEASE_AFTER_ATTEMPT if status == R_PENDING else _RECORD_OUTCOME, rows).rowcount or 0
            for status, rows in _outcome_rows(batch.outcomes, batch.job_id, batch.now).items()
        }
        released = 0
        if batch.untried:
            released = db.session.execute(
                _RELEASE_UNTRIED,
                {"b_ids": [claim.id for claim in batch.untried], "b_token": batch.job_id, "b_now": batch.now},
            ).rowcount
        counts = _counts(by_status, released)
        if counts.sent or counts.failed or counts.skipped or counts.unknown:
            db.session.execute(
                _ADD_TO_COUNTERS,
                {"b_campaign": batch.campaign_id, "b_sent": counts.sent, "b_failed": counts.failed,
                 "b_skipped": counts.skipped, "b_unknown": counts.unknown, "b_now": batch.now},
            )
        db.session.execute(
            _QUEUE_HEARTBEAT,
            {"b_campaign": batch.campaign_id, "b_now": batch.now, "b_sent": counts.sent, "b_next_job": batch.next_job_id},
        )
        return counts


@in_transaction
def record_accepted_of_stopped_job(campaign_id: int, job_id: str, accepted: Sequence[Outcome], now: datetime) -> int:
    """A dead job's messages the relay accepted, known from its hand-over record (`limits/handover.py`),
    not yet in the database: its claims still `sending` among them become `sent` and are counted (the
    heartbeat is left alone: nobody works on the campaign). Returns how many."""
    rows = _outcome_rows(accepted, job_id, now).get(RecipientStatus.SENT, [])
    if not rows:
        return 0
    sent = db.session.execute(_RECORD_OUTCOME, rows).rowcount or 0
    if sent:
        db.session.execute(
            _ADD_TO_COUNTERS,
            {"b_campaign": campaign_id, "b_sent": sent, "b_failed": 0, "b_skipped": 0, "b_unknown": 0, "b_now": now},
        )
    return sent


def recorder_for(dialect: str) -> BatchRecorder:
    """The recorder for a database dialect: one statement on PostgreSQL, statement by statement elsewhere."""
    return OneStatementRecorder() if dialect == "postgresql" else StatementByStatementRecorder()


@in_transaction
def record_batch(
    campaign_id: int,
    job_id: str,
    outcomes: Sequence[Outcome],
    untried: Sequence[Claim],
    now: datetime,
    *,
    next_job_id: str | None = None,
    claim_next: int = 0,
    claim_after: int = 0,
    release_the_rest: bool = False,
) -> RecordedBatch:
    """Record a batch's outcomes, release its untried claims, add to the counters, beat the heartbeat
    (and set the next job id) — and with `claim_next`, claim the next batch (above `claim_after`
    first, see `claim_recipients`): one commit for all.

    `release_the_rest` also releases every other claim of `job_id` still `sending`: for a slice
    that ends after an error, once everything it handed to SMTP is among `outcomes` (in flight
    counts as unknown). Such claims come from a commit that succeeded while its answer was lost
    (the database cut mid-commit): the slice never saw them, so nobody sent them.

    On failure nothing is recorded and the exception propagates; the caller may record the same
    outcomes again (the writes are idempotent) or abandon them (the recovery sweep then marks the
    claims unknown).
    """
    recorder = recorder_for(db.session.get_bind().dialect.name)
    counts = recorder.record(BatchRecord(campaign_id, job_id, outcomes, untried, now, next_job_id))
    for outcome in outcomes:
        if outcome.hard_bounce:
            suppress(outcome.claim.email, REASON_HARD_BOUNCE, campaign_id, source=SOURCE_SMTP)
    record_recipients_failed(campaign_id, [o.claim.id for o in outcomes if o.status == RecipientStatus.FAILED], now)
    if release_the_rest:
        counts.released += db.session.execute(
            _RELEASE_ALL_OF_JOB, {"b_campaign": campaign_id, "b_token": job_id, "b_now": now}
        ).rowcount
    next_batch = _claim_batch(campaign_id, job_id, claim_next, now, claim_after) if claim_next else ClaimedBatch()
    return RecordedBatch(counts.sent, counts.failed, counts.skipped, counts.unknown, counts.transient,
                         counts.released, next_batch=next_batch)
