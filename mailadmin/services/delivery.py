"""The send loop's and the recovery sweep's writes to campaigns, recipients and campaign_queue.

One function per step — begin a slice, claim a batch, record a batch's outcomes (counters,
heartbeat, hard-bounce suppressions) and release untried claims, defer (each reason), count a
transient error / trip the breaker, finish, mark stale claims unknown, note a re-enqueue. Each
owns its transaction: it commits once, and on any failure rolls back and raises, so the caller
(`mailadmin.jobs.send`, `mailadmin.jobs.recovery`) still holds the outcomes it passed in and
knows they were not recorded. No caller relies on another function's commit.

Every recipient UPDATE is guarded by `status = 'sending' AND claimed_by = this job` and the
counters grow by the rows actually changed, so recording the same outcomes again after a failed
commit changes nothing twice.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from loguru import logger
from sqlalchemy import String, and_, bindparam, case, exists, func, or_, select, text, update

from mailadmin.extensions import db, get_redis, get_settings
from mailadmin.limits.waiting_line import leave_waiting_line
from mailadmin.models import APP_STATE_ID, AppState, Campaign, CampaignQueue, Recipient
from mailadmin.models.campaign import (
    ACTIVE_STATUSES,
    CANCELLED,
    DEFERRED,
    FINISHED,
    PAUSED,
    QUEUED,
    R_FAILED,
    R_PENDING,
    R_SENDING,
    R_SENT,
    R_SKIPPED,
    R_UNKNOWN,
    SENDING,
)
from mailadmin.models.reasons import Reason, is_due_sql, reason_of
from mailadmin.models.suppression import REASON_HARD_BOUNCE, SOURCE_SMTP
from mailadmin.models.types import UTCDateTime, utcnow
from mailadmin.queue.dispatch import safe_cancel_continuation
from mailadmin.queue.outages import is_database_outage
from mailadmin.queue.signals import announce_send_stop
from mailadmin.services.audit import record_audit
from mailadmin.services.campaign_state import (
    PauseNote,
    current_status,
    due_deferral,
    hold_queue,
    owns_transaction,
    schedule_after_commit,
    sending_paused,
    set_status,
)
from mailadmin.services.suppressions import suppress, suppressed_among

_campaigns = Campaign.__table__
_recipients = Recipient.__table__
_queues = CampaignQueue.__table__
_app_state = AppState.__table__


def _update_queue(campaign_id: int, *returning, **values):
    """UPDATE the campaign's queue row (in the session) with `values`; the result, RETURNING `returning`."""
    statement = update(_queues).where(_queues.c.campaign_id == campaign_id).values(**values)
    return db.session.execute(statement.returning(*returning) if returning else statement)

# A deferred campaign whose continuation is this late and not scheduled is re-enqueued.
OVERDUE_GRACE = timedelta(seconds=60)
# Cancelled campaigns are checked for stale claims for this long after they were cancelled.
CANCELLED_RECOVERY_WINDOW = timedelta(days=1)

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


# --- values ------------------------------------------------------------------------------------


@dataclass(slots=True)
class Claim:
    """A recipient a slice has claimed (status `sending`)."""

    id: int
    email: str
    name: str | None
    fields: dict | None


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


@dataclass(slots=True)
class ClaimedBatch:
    """A freshly claimed batch: the claims to send, and those whose address is suppressed."""

    to_send: list[Claim] = field(default_factory=list)
    suppressed: list[Claim] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.to_send or self.suppressed)


@dataclass(slots=True)
class SendCounts:
    """Recipients by what became of them (rows actually updated): sent, failed, skipped, unknown,
    pending again after a transient error, and untried claims released."""

    sent: int = 0
    failed: int = 0
    skipped: int = 0
    unknown: int = 0
    transient: int = 0
    released: int = 0

    def add(self, other: SendCounts) -> None:
        for name in SendCounts.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(slots=True)
class RecordedBatch(SendCounts):
    """What `record_batch` changed, and the next batch if one was claimed."""

    next_batch: ClaimedBatch = field(default_factory=ClaimedBatch)


@dataclass(frozen=True, slots=True)
class SliceCampaign:
    """What a send slice needs of its campaign, read once when the slice begins."""

    id: int
    queue_id: int
    subject: str
    body_text: str
    body_html: str | None
    name: str = ""  # the List-Id's description


@dataclass(frozen=True, slots=True)
class SliceStart:
    """Answer of `begin_slice`: go ahead (with the campaign), or the reason not to."""

    proceed: bool
    reason: str  # `sending`, a Reason, `not_due`, a campaign status or `missing`
    campaign: SliceCampaign | None = None
    # True for the slice that moved the campaign into `sending` from `queued` (a start or a resume),
    # not from a due deferral: only then are sibling slices fanned out, so that a retry cycle is
    # one slice, not a new fan-out.
    fan_out: bool = False


# --- a slice begins ------------------------------------------------------------------------------


def begin_slice(campaign_id: int, job_id: str, now: datetime) -> SliceStart:
    """Move the campaign into `sending` for a slice, unless it is paused, cancelled, finished or not due."""
    if sending_paused():
        defer_for_global_pause(campaign_id, now)
        return SliceStart(False, Reason.GLOBAL_PAUSE)
    if pause_missed_schedule(campaign_id, now):
        return SliceStart(False, Reason.MISSED_SCHEDULE)
    return _begin_slice(campaign_id, job_id, now)


@owns_transaction
def _begin_slice(campaign_id: int, job_id: str, now: datetime) -> SliceStart:
    fan_out = set_status(campaign_id, (QUEUED,), SENDING)
    started = fan_out or db.session.execute(
        update(_campaigns).where(_campaigns.c.id == campaign_id, due_deferral(now)).values(status=SENDING, updated_at=now)
    ).rowcount == 1
    if not started:
        status = current_status(campaign_id)
        if status != SENDING:
            db.session.commit()
            return SliceStart(False, "not_due" if status == DEFERRED else (status or "missing"))
    values = {"current_job_id": job_id, "heartbeat_at": now, "updated_at": now}
    if started:
        values.update(defer_reason=None, deferred_until=None)
    _update_queue(campaign_id, **values)
    row = db.session.execute(
        select(_campaigns.c.subject, _campaigns.c.body_text, _campaigns.c.body_html, _campaigns.c.name, _queues.c.id)
        .join(_queues, _queues.c.campaign_id == _campaigns.c.id)
        .where(_campaigns.c.id == campaign_id)
    ).one()
    db.session.commit()
    campaign = SliceCampaign(campaign_id, row.id, row.subject, row.body_text or "", row.body_html, row.name or "")
    return SliceStart(True, SENDING, campaign, fan_out=fan_out)


@owns_transaction
def pause_missed_schedule(campaign_id: int, now: datetime) -> bool:
    """A scheduled start found more than MAILER_SCHEDULE_MAX_LATE_MINUTES late (everything was
    down when it came) is not sent by surprise: the campaign pauses with `missed_schedule` until
    its owner or an admin resumes it (commits when it pauses)."""
    max_late = get_settings().schedule_max_late_minutes
    scheduled_at = db.session.scalar(
        select(_queues.c.deferred_until).where(
            _queues.c.campaign_id == campaign_id,
            _queues.c.defer_reason == Reason.SCHEDULED,
            _queues.c.deferred_until < now - timedelta(minutes=max_late),
        )
    )
    if scheduled_at is None or not set_status(campaign_id, (DEFERRED,), PAUSED):
        db.session.commit()
        return False
    queue_id = hold_queue(campaign_id, Reason.MISSED_SCHEDULE, now, PauseNote(now))
    db.session.commit()
    logger.bind(
        campaign_id=campaign_id,
        queue_id=queue_id,
        scheduled_at=scheduled_at.isoformat(),
        late_minutes=round((now - scheduled_at).total_seconds() / 60, 1),
        max_late_minutes=max_late,
    ).warning("Scheduled start missed; campaign paused")
    return True


# --- claims and outcomes -------------------------------------------------------------------------


@owns_transaction
def claim_recipients(
    campaign_id: int, claimed_by: str, limit: int, now: datetime, *, after: int = 0, commit: bool = True
) -> list[Claim]:
    """Atomically mark up to `limit` pending recipients `sending` for `claimed_by`; sorted by id.

    Concurrent callers never get the same recipient: PostgreSQL skips rows another claim has
    locked (FOR UPDATE SKIP LOCKED), SQLite serializes the writers. `after` is the highest id the
    caller claimed so far: the claim looks above it first, so it does not walk every recipient
    already sent (a campaign's claims would cost O(n²)), and below it only when that comes up
    short (released and retried recipients). `commit=False` is for `record_batch`, which claims
    the next batch in the transaction that records this one.
    """
    rows = _claim_rows(campaign_id, claimed_by, limit, now, after)
    if len(rows) < limit and after:
        rows += _claim_rows(campaign_id, claimed_by, limit - len(rows), now, 0)
    if commit:
        db.session.commit()
    return sorted((Claim(row.id, row.email, row.name, row.fields) for row in rows), key=lambda claim: claim.id)


def _claim_rows(campaign_id: int, claimed_by: str, limit: int, now: datetime, after: int) -> list:
    params = {"b_campaign": campaign_id, "b_limit": limit, "b_token": claimed_by, "b_now": now, "b_after": after}
    return db.session.execute(_CLAIM_BATCH, params).all()


def _claim_batch(campaign_id: int, claimed_by: str, limit: int, now: datetime, after: int = 0) -> ClaimedBatch:
    """Claim in the session; suppressed addresses are set apart (the slice records them skipped)."""
    claims = claim_recipients(campaign_id, claimed_by, limit, now, after=after, commit=False)
    suppressed = suppressed_among(claim.email for claim in claims) if claims else set()
    batch = ClaimedBatch()
    for claim in claims:
        (batch.suppressed if claim.email.strip().lower() in suppressed else batch.to_send).append(claim)
    return batch


@owns_transaction
def claim_batch(campaign_id: int, claimed_by: str, limit: int, now: datetime) -> ClaimedBatch:
    """A slice's first claim (commits); later batches are claimed by `record_batch`."""
    batch = _claim_batch(campaign_id, claimed_by, limit, now)
    db.session.commit()
    return batch


def _outcome_rows(outcomes: Iterable[Outcome], job_id: str, now: datetime) -> dict[str, list[dict]]:
    """The outcomes as bound parameters, grouped by recipient status (one executemany each)."""
    groups: dict[str, list[dict]] = {}
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


def _record_in_one_statement(
    campaign_id: int, job_id: str, outcomes: Sequence[Outcome], untried: Sequence[Claim], now: datetime,
    next_job_id: str | None,
) -> dict[str, int]:
    """PostgreSQL: `_RECORD_BATCH_PG`; rows changed per status and `released`."""
    rows = [
        {
            "id": outcome.claim.id,
            "status": outcome.status,
            "inc": 1 if outcome.attempted else 0,
            "code": outcome.smtp_code,
            "mid": outcome.message_id,
            "err": outcome.error,
            "sent_at": outcome.sent_at.isoformat() if outcome.sent_at is not None else None,
            "claimed_by": job_id if outcome.status != R_PENDING else None,
        }
        for outcome in outcomes
    ]
    row = db.session.execute(
        _RECORD_BATCH_PG,
        {"outcomes": json.dumps(rows), "untried": [claim.id for claim in untried], "token": job_id, "now": now,
         "campaign": campaign_id, "next_job": next_job_id},
    ).one()
    return {R_SENT: row.sent, R_FAILED: row.failed, R_SKIPPED: row.skipped, R_UNKNOWN: row.unknown,
            R_PENDING: row.pending, "released": row.released}


def _record_statement_by_statement(
    campaign_id: int, job_id: str, outcomes: Sequence[Outcome], untried: Sequence[Claim], now: datetime,
    next_job_id: str | None,
) -> dict[str, int]:
    """SQLite: the outcomes (one executemany per status), the released claims, the counters and the
    heartbeat; rows changed per status and `released`."""
    counts = {
        status: db.session.execute(_RELEASE_AFTER_ATTEMPT if status == R_PENDING else _RECORD_OUTCOME, rows).rowcount or 0
        for status, rows in _outcome_rows(outcomes, job_id, now).items()
    }
    counts["released"] = 0
    if untried:
        counts["released"] = db.session.execute(
            _RELEASE_UNTRIED, {"b_ids": [claim.id for claim in untried], "b_token": job_id, "b_now": now}
        ).rowcount
    sent = counts.get(R_SENT, 0)
    if sent or counts.get(R_FAILED) or counts.get(R_SKIPPED) or counts.get(R_UNKNOWN):
        db.session.execute(
            _ADD_TO_COUNTERS,
            {"b_campaign": campaign_id, "b_sent": sent, "b_failed": counts.get(R_FAILED, 0),
             "b_skipped": counts.get(R_SKIPPED, 0), "b_unknown": counts.get(R_UNKNOWN, 0), "b_now": now},
        )
    db.session.execute(
        _QUEUE_HEARTBEAT, {"b_campaign": campaign_id, "b_now": now, "b_sent": sent, "b_next_job": next_job_id}
    )
    return counts


@owns_transaction
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
    record = (_record_in_one_statement if db.session.get_bind().dialect.name == "postgresql"
              else _record_statement_by_statement)
    counts = record(campaign_id, job_id, outcomes, untried, now, next_job_id)
    for outcome in outcomes:
        if outcome.hard_bounce:
            suppress(outcome.claim.email, REASON_HARD_BOUNCE, campaign_id, source=SOURCE_SMTP, commit=False)
    if release_the_rest:
        counts["released"] += db.session.execute(
            _RELEASE_ALL_OF_JOB, {"b_campaign": campaign_id, "b_token": job_id, "b_now": now}
        ).rowcount
    next_batch = _claim_batch(campaign_id, job_id, claim_next, now, claim_after) if claim_next else ClaimedBatch()
    db.session.commit()
    return RecordedBatch(counts.get(R_SENT, 0), counts.get(R_FAILED, 0), counts.get(R_SKIPPED, 0),
                         counts.get(R_UNKNOWN, 0), counts.get(R_PENDING, 0), counts["released"], next_batch=next_batch)


# --- deferrals, the breaker, the end -------------------------------------------------------------


def _log_deferral(campaign_id: int, queue_id: int, reason: Reason, until: datetime | None, errors: int | None) -> None:
    logger.bind(
        campaign_id=campaign_id,
        queue_id=queue_id,
        defer_reason=str(reason),
        deferred_until=until.isoformat() if until is not None else None,
        consecutive_errors=errors,
    ).log(reason.info.log_level, "Campaign deferred")


@owns_transaction
def defer_campaign(
    campaign_id: int,
    reason: Reason,
    until: datetime | None,
    *,
    now: datetime | None = None,
    consecutive_errors: int | None = None,
) -> bool:
    """Defer an active campaign until `until` and schedule its continuation then (commits).

    Returns False when the campaign is no longer active (paused, cancelled, finished meanwhile).
    """
    reason = Reason(reason)
    now = now or utcnow()
    if not set_status(campaign_id, ACTIVE_STATUSES, DEFERRED):
        db.session.commit()
        return False
    queue_id, current_errors = _update_queue(
        campaign_id, _queues.c.id, _queues.c.consecutive_transient_errors,
        defer_reason=reason, deferred_until=until, current_job_id=None, updated_at=now,
    ).one()
    db.session.commit()
    announce_send_stop(get_redis(), campaign_id)  # the campaign's other slices stop too
    if until is not None:
        schedule_after_commit(campaign_id, until)
    _log_deferral(campaign_id, queue_id, reason, until, current_errors if consecutive_errors is None else consecutive_errors)
    return True


def defer_for_rate_limit(campaign_id: int, next_free_at: datetime, *, now: datetime | None = None) -> bool:
    """The hourly quota is used up: defer (`rate_limit`) until the moment a token frees."""
    return defer_campaign(campaign_id, Reason.RATE_LIMIT, next_free_at, now=now)


@owns_transaction
def defer_for_global_pause(campaign_id: int, now: datetime | None = None) -> bool:
    """Sending is switched off: the campaign waits (`global_pause`, no continuation) — but only if the
    switch is still off at this very statement (it holds a share lock on the switch row on PostgreSQL),
    so it can never miss `set_sending_paused(False)`'s re-enqueue."""
    now = now or utcnow()
    switch_off = exists(
        select(_app_state.c.id)
        .where(_app_state.c.id == APP_STATE_ID, _app_state.c.sending_paused.is_(True))
        .with_for_update(read=True)
    )
    # A deferral that is due (its continuation just fired) waits for the switch too; one that is
    # not due yet (a scheduled start tomorrow) keeps its time.
    deferred = db.session.execute(
        update(_campaigns)
        .where(_campaigns.c.id == campaign_id, or_(_campaigns.c.status.in_((QUEUED, SENDING)), due_deferral(now)), switch_off)
        .values(status=DEFERRED, updated_at=now)
    ).rowcount == 1
    if not deferred:
        db.session.commit()
        return False
    queue_id = hold_queue(campaign_id, Reason.GLOBAL_PAUSE, now)
    db.session.commit()
    safe_cancel_continuation(campaign_id)
    _log_deferral(campaign_id, queue_id, Reason.GLOBAL_PAUSE, None, None)
    return True


def record_transient_error(campaign_id: int, error: str, *, now: datetime | None = None) -> Reason:
    """Count one transient SMTP error: defer (`transient_error`) or, at the threshold, trip the breaker.

    Returns the reason the campaign now waits with.
    """
    settings = get_settings()
    now = now or utcnow()
    count = _count_transient_error(campaign_id, error, now)
    if count is None:  # a sibling slice already counted this retry cycle
        return _current_reason(campaign_id) or Reason.TRANSIENT_ERROR
    if count >= settings.circuit_breaker_threshold:
        trip_circuit_breaker(campaign_id, count, now=now)
        return Reason.CIRCUIT_BREAKER
    defer_campaign(campaign_id, Reason.TRANSIENT_ERROR, transient_retry_at(now), now=now, consecutive_errors=count)
    return Reason.TRANSIENT_ERROR


def transient_retry_at(now: datetime) -> datetime:
    """When a campaign deferred by a transient error at `now` retries (MAILER_TRANSIENT_RETRY_DELAY_MINUTES)."""
    return now + timedelta(minutes=get_settings().transient_retry_delay_minutes)


@owns_transaction
def _count_transient_error(campaign_id: int, error: str, now: datetime) -> int | None:
    """One more consecutive transient error on the campaign's queue row (commits); the new count.

    One count per failed retry cycle: only the slice that moves the campaign out of `sending`
    counts (None for the others: a sibling failing in the same cycle finds it deferred; the row
    lock orders them).
    """
    if not set_status(campaign_id, (QUEUED, SENDING), DEFERRED):
        db.session.commit()
        return None
    count = _update_queue(
        campaign_id, _queues.c.consecutive_transient_errors,
        consecutive_transient_errors=_queues.c.consecutive_transient_errors + 1, last_error=error[:500], updated_at=now,
    ).scalar_one()
    db.session.commit()
    return count


@owns_transaction
def _current_reason(campaign_id: int) -> Reason | None:
    """The reason the campaign waits with now, as stored (None when it does not wait)."""
    value = db.session.scalar(select(_queues.c.defer_reason).where(_queues.c.campaign_id == campaign_id))
    db.session.commit()
    return reason_of(value)


@owns_transaction
def trip_circuit_breaker(campaign_id: int, consecutive_errors: int, *, now: datetime | None = None) -> bool:
    """Pause the campaign (`circuit_breaker`) until an admin resumes it; audit with no actor (commits)."""
    settings = get_settings()
    now = now or utcnow()
    from_status = current_status(campaign_id)
    if not set_status(campaign_id, ACTIVE_STATUSES, PAUSED):
        db.session.commit()
        return False
    queue_id = _update_queue(
        campaign_id, _queues.c.id,
        defer_reason=Reason.CIRCUIT_BREAKER, deferred_until=None, breaker_tripped_at=now, current_job_id=None,
        updated_at=now, **PauseNote(now).queue_values(),
    ).scalar_one()
    record_audit(
        None,
        "circuit_breaker_tripped",
        campaign_id=campaign_id,
        from_status=from_status,
        to_status=PAUSED,
        details={"consecutive_errors": consecutive_errors, "threshold": settings.circuit_breaker_threshold},
    )
    db.session.commit()
    announce_send_stop(get_redis(), campaign_id)
    safe_cancel_continuation(campaign_id)
    leave_waiting_line(get_redis(), campaign_id)  # paused until a person resumes it: it waits for no token
    logger.bind(
        campaign_id=campaign_id,
        queue_id=queue_id,
        consecutive_errors=consecutive_errors,
        threshold=settings.circuit_breaker_threshold,
    ).log(Reason.CIRCUIT_BREAKER.info.log_level, "Circuit breaker tripped")
    return True


@owns_transaction
def finish_campaign_if_done(campaign_id: int, *, now: datetime | None = None) -> bool:
    """When no recipient is pending or being sent, the campaign becomes `finished` (commits).

    `finished_with_errors` is set when some recipients failed permanently. Only one caller
    wins the transition, so "Campaign finished" is logged once.
    """
    now = now or utcnow()
    left = db.session.scalar(
        select(_recipients.c.id)
        .where(_recipients.c.campaign_id == campaign_id, _recipients.c.status.in_((R_PENDING, R_SENDING)))
        .limit(1)
    )
    finished = left is None and set_status(
        campaign_id, (QUEUED, SENDING), FINISHED, finished_at=now, finished_with_errors=_campaigns.c.failed_count > 0
    )
    if not finished:
        db.session.commit()
        return False
    hold_queue(campaign_id, None, now)  # finished: no reason, no deadline, no job
    row = db.session.execute(
        select(
            _campaigns.c.sent_count,
            _campaigns.c.failed_count,
            _campaigns.c.recipients_total,
            _campaigns.c.finished_with_errors,
            _campaigns.c.started_at,
            _queues.c.id.label("queue_id"),
        )
        .join(_queues, _queues.c.campaign_id == _campaigns.c.id)
        .where(_campaigns.c.id == campaign_id)
    ).one()
    db.session.commit()
    safe_cancel_continuation(campaign_id)
    duration = (now - row.started_at).total_seconds() if row.started_at is not None else None
    logger.bind(
        campaign_id=campaign_id,
        queue_id=row.queue_id,
        campaign_status=FINISHED,
        totals={"sent": row.sent_count, "failed": row.failed_count, "total": row.recipients_total},
        duration_seconds=round(duration, 3) if duration is not None else None,
        finished_with_errors=bool(row.finished_with_errors),
    ).info("Campaign finished")
    return True


# --- the recovery sweep's reads and writes -------------------------------------------------------


@owns_transaction
def mark_stale_claims_unknown(
    campaign_id: int, cutoff: datetime | None, *, now: datetime | None = None, claimed_by: str | None = None
) -> int:
    """Recipients of the campaign still `sending`, claimed before `cutoff` (or by the dead job
    `claimed_by`), become `unknown` (commits)."""
    now = now or utcnow()
    conditions = [_recipients.c.campaign_id == campaign_id, _recipients.c.status == R_SENDING]
    if cutoff is not None:
        conditions.append(_recipients.c.claimed_at < cutoff)
    if claimed_by is not None:
        conditions.append(_recipients.c.claimed_by == claimed_by)
    result = db.session.execute(
        update(_recipients)
        .where(*conditions)
        .values(status=R_UNKNOWN, last_error="claimed by a job that stopped; SMTP outcome unknown", updated_at=now)
    )
    count = result.rowcount or 0
    if count:
        db.session.execute(
            update(_campaigns)
            .where(_campaigns.c.id == campaign_id)
            .values(unknown_count=_campaigns.c.unknown_count + count, updated_at=now)
        )
    db.session.commit()
    if count:
        logger.bind(campaign_id=campaign_id, unknown=count).warning(
            "Stale claims marked unknown (a send job stopped mid-batch)"
        )
    return count


def _may_hold_claims(now: datetime):
    """SQL condition: a campaign whose recipients may still be claimed (started, or cancelled within a day)."""
    return or_(
        _campaigns.c.status.in_((QUEUED, SENDING, DEFERRED, PAUSED)),
        and_(_campaigns.c.status == CANCELLED, _campaigns.c.finished_at > now - CANCELLED_RECOVERY_WINDOW),
    )


@owns_transaction
def campaigns_with_claims(now: datetime) -> list[int]:
    """Campaigns that may hold stale claims: started (or cancelled within a day) with recipients `sending`."""
    started = select(_campaigns.c.id).where(
        _may_hold_claims(now),
        exists().where(_recipients.c.campaign_id == _campaigns.c.id, _recipients.c.status == R_SENDING),
    )
    ids = list(db.session.scalars(started).all())
    db.session.commit()
    return ids


@dataclass(frozen=True, slots=True)
class JobClaims:
    """One job's claims on one campaign, with the campaign's last slice heartbeat."""

    campaign_id: int
    job_id: str
    heartbeat_at: datetime | None


@owns_transaction
def claims_by_job(now: datetime) -> list[JobClaims]:
    """Which jobs hold claims (recipients `sending`) on which campaigns, right now."""
    rows = db.session.execute(
        select(_recipients.c.campaign_id, _recipients.c.claimed_by, _queues.c.heartbeat_at)
        .join(_queues, _queues.c.campaign_id == _recipients.c.campaign_id)
        .where(
            _recipients.c.campaign_id.in_(select(_campaigns.c.id).where(_may_hold_claims(now))),
            _recipients.c.status == R_SENDING,
            _recipients.c.claimed_by.is_not(None),
        )
        .distinct()
    ).all()
    db.session.commit()
    return [JobClaims(*row) for row in rows]


@owns_transaction
def campaigns_to_check(now: datetime, quiet_since: datetime) -> list[tuple[int, str | None]]:
    """(campaign id, current job id) of sending campaigns no slice touched since `quiet_since`,
    and of overdue deferrals (the caller decides whether a job still works on them)."""
    stalled = db.session.execute(
        select(_campaigns.c.id, _queues.c.current_job_id)
        .join(_queues, _queues.c.campaign_id == _campaigns.c.id)
        .where(
            _campaigns.c.status.in_((QUEUED, SENDING)),
            or_(_queues.c.heartbeat_at.is_(None), _queues.c.heartbeat_at < quiet_since),
        )
    ).all()
    overdue = db.session.execute(
        select(_campaigns.c.id, _queues.c.current_job_id)
        .join(_queues, _queues.c.campaign_id == _campaigns.c.id)
        .where(
            _campaigns.c.status == DEFERRED,
            is_due_sql(_queues.c.defer_reason, _queues.c.deferred_until, now - OVERDUE_GRACE),
        )
    ).all()
    db.session.commit()
    return [(row[0], row[1]) for row in (*stalled, *overdue)]


@owns_transaction
def has_pending_recipients(campaign_id: int) -> bool:
    """Does the campaign still have a recipient waiting to be claimed?"""
    found = db.session.scalar(
        select(_recipients.c.id).where(_recipients.c.campaign_id == campaign_id, _recipients.c.status == R_PENDING).limit(1)
    )
    db.session.commit()
    return found is not None


@owns_transaction
def note_reenqueued(campaign_id: int, job_id: str, now: datetime) -> None:
    """The recovery sweep enqueued a stalled campaign: its queue row names the job and beats (commits)."""
    _update_queue(campaign_id, current_job_id=job_id, heartbeat_at=now)
    db.session.commit()


@contextmanager
def probe_slice_state(campaign_id: int) -> Iterator[Callable[[], tuple[str | None, bool]]]:
    """Yield a read of the campaign's status (None once it is gone) and of the global switch (True: sending is off).

    A running slice reads it once per claim batch, and when a stop signal arrives: one statement on a
    connection of its own in AUTOCOMMIT, so each read sees other commits at once (also on SQLite),
    holds no transaction and never touches the slice's session. It only reads. Closing a connection
    the database already dropped is not an error.
    """
    switched_off = select(_app_state.c.sending_paused).where(_app_state.c.id == APP_STATE_ID).scalar_subquery()
    statement = select(_campaigns.c.status, switched_off).where(_campaigns.c.id == campaign_id)
    connection = db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")

    def read() -> tuple[str | None, bool]:
        row = connection.execute(statement).first()
        return (None, False) if row is None else (row[0], bool(row[1]))

    try:
        yield read
    finally:
        try:
            connection.close()
        except Exception as exc:  # nothing to release on a connection the database dropped
            if not is_database_outage(exc):
                raise
