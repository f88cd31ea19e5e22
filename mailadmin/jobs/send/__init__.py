"""The send loop: one RQ job (`send_campaign_slice`) sends one bounded slice of a campaign.

A slice works for at most MAILER_SEND_SLICE_SECONDS, then hands over to a fresh job (its
continuation), so a platform SIGTERM never catches a long job and several workers share a big
campaign. Per claim batch (MAILER_SEND_BATCH_SIZE recipients) it claims pending recipients
atomically (`services.delivery`), takes their rate-limit tokens in one Redis call (hourly quota,
its waiting line, per-second slots; fail-open), hands them to MAILER_SMTP_CONNECTIONS connection
threads, and when those run low checks the campaign's state, records the outcomes and claims the
next batch in one commit. A transient error, a refused quota, or a stop signal (`queue/signals.py`:
pause, cancel, a deferral, the global switch) stops every connection before its next message.

Exactly-once intent: a recipient leaves `sending` only through this job's own records. A job
that dies (SIGKILL) leaves at most one batch plus the messages in flight (one per connection) in
`sending`; the recovery sweep turns those into `unknown` — they are shown, never silently re-sent.
On SIGTERM (RQ HerokuWorker: SIGRTMIN to the work horse) every connection stops before its next
message, the slice records, releases what it did not try and enqueues its continuation.

The modules, in the order a slice runs through them:

- this one: the RQ entry, and how many slices a campaign starts with;
- `loop.py`: the slice as a state machine (`SendSlice`): each step returns how the slice ends, or None;
- `tokens.py`: the claims in hand, handed to the connections with their rate-limit tokens (the token
  books), collected back as outcomes and recorded;
- `outcomes.py`: one message on its connection: build, send, and which status each failure means;
- `endings.py`: each way a slice ends, carried out; the slice's report.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from redis import RedisError
from rq import Queue, Worker, get_current_job

from mailadmin.extensions import SEND_QUEUE, get_redis, get_settings
from mailadmin.jobs import job_app_context
from mailadmin.jobs.send.endings import SliceEnd, SliceOutcome, SliceReport, request_slice_stop
from mailadmin.jobs.send.loop import SendSlice

__all__ = [
    "SliceEnd", "SliceOutcome", "SliceReport", "parallel_slices", "request_slice_stop", "run_send_slice",
    "send_campaign_slice",
]

# With MAILER_SEND_PARALLEL_SLICES=0, one slice per worker on the send queue, up to this many.
MAX_AUTO_PARALLEL_SLICES = 16


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
