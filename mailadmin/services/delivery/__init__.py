"""The send loop's and the recovery sweep's writes to campaigns, recipients and campaign_queue.

Its modules, in the order a slice meets them:

* `values.py` — what the send loop and the sweep exchange with these services: Claim, Outcome,
  ClaimedBatch, SendCounts / RecordedBatch, SliceCampaign, SliceStart, JobClaims;
* `transitions.py` — a slice begins (or is refused), defer (each reason), count a transient error /
  trip the breaker, finish;
* `claims.py` — claim a batch, record its outcomes (counters, heartbeat, hard-bounce suppressions)
  and release untried claims: one `BatchRecorder`, a PostgreSQL and a statement-by-statement one;
* `probe.py` — the send loop's status probe (the campaign's status and the global switch, read
  once per batch);
* `sweep.py` — the recovery sweep: a dead job's claims never handed over go back to `pending`, stale
  claims become `unknown`, stalled and overdue campaigns.
* `counting.py` — what the send path counts for `/metrics` (each outcome, deferral, pause, breaker trip).

Each public function is one `with transaction():` (`services/transaction.py`): it commits once, and
on any failure rolls back and raises, so the caller (`mailadmin.jobs.send`, `mailadmin.jobs.recovery`)
still holds the outcomes it passed in and knows they were not recorded; stop signals, continuations
and their log records follow the commit. No caller relies on another function's commit.
What people's actions share with these transitions is `mailadmin.services.transitions`.
"""

from mailadmin.services.delivery.claims import (
    claim_batch,
    claim_recipients,
    record_accepted_of_stopped_job,
    record_batch,
)
from mailadmin.services.delivery.probe import probe_slice_state
from mailadmin.services.delivery.sweep import (
    HANDED_WITHOUT_RECORD,
    OVERDUE_GRACE,
    campaigns_to_check,
    campaigns_with_claims,
    claims_by_job,
    has_pending_recipients,
    mark_stale_claims_unknown,
    note_handed_over_without_record,
    note_reenqueued,
    release_claims_never_handed_over,
)
from mailadmin.services.delivery.transitions import (
    begin_slice,
    defer_campaign,
    defer_for_global_pause,
    defer_for_rate_limit,
    finish_campaign_if_done,
    pause_missed_schedule,
    record_transient_error,
    transient_retry_at,
    trip_circuit_breaker,
)
from mailadmin.services.delivery.values import (
    Claim,
    ClaimedBatch,
    JobClaims,
    Outcome,
    RecordedBatch,
    SendCounts,
    SliceCampaign,
    SliceRefusal,
    SliceStart,
)

__all__ = [
    "probe_slice_state",
    "HANDED_WITHOUT_RECORD",
    "OVERDUE_GRACE",
    "Claim",
    "ClaimedBatch",
    "JobClaims",
    "Outcome",
    "RecordedBatch",
    "SendCounts",
    "SliceCampaign",
    "SliceRefusal",
    "SliceStart",
    "begin_slice",
    "campaigns_to_check",
    "campaigns_with_claims",
    "claim_batch",
    "claim_recipients",
    "claims_by_job",
    "defer_campaign",
    "defer_for_global_pause",
    "defer_for_rate_limit",
    "finish_campaign_if_done",
    "has_pending_recipients",
    "mark_stale_claims_unknown",
    "note_handed_over_without_record",
    "note_reenqueued",
    "release_claims_never_handed_over",
    "pause_missed_schedule",
    "record_accepted_of_stopped_job",
    "record_batch",
    "record_transient_error",
    "transient_retry_at",
    "trip_circuit_breaker",
]
