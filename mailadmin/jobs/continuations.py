"""`ContinuationScheduler`: the rq-scheduler the `scheduler` process runs.

When a continuation is due it enqueues a *fresh* slice job and deletes the stable one, so a
running slice that defers again never re-creates the job it is itself running as. It also runs
the recovery sweep (`mailadmin.jobs.recovery`) every `recovery_interval` seconds.
"""

from __future__ import annotations

import time

from loguru import logger
from redis import WatchError
from rq.job import Job
from rq_scheduler import Scheduler

from mailadmin.jobs.dispatch import campaign_id_of_continuation, enqueue_send_slice
from mailadmin.jobs.recovery import run_recovery_sweep_logging_failures

# Each scheduled continuation carries a fresh token in its meta; dispatch compares the job hash's
# raw `meta` field so that it removes exactly the version it fetched, never a re-scheduled one.
SCHEDULE_META_FIELD = "meta"


class ContinuationScheduler(Scheduler):
    """rq-scheduler that dispatches continuations as fresh slice jobs and runs the recovery sweep."""

    def __init__(self, *args, recovery_interval: float | None = 60.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.recovery_interval = recovery_interval
        self._last_recovery = 0.0

    def enqueue_job(self, job: Job) -> None:
        """Move a due job to its queue; a continuation becomes a fresh slice job."""
        campaign_id = campaign_id_of_continuation(job.id)
        if campaign_id is None:
            super().enqueue_job(job)
            return
        if self._take_continuation(job):
            slice_id = enqueue_send_slice(campaign_id, connection=self.connection)
            logger.bind(campaign_id=campaign_id, job_id=slice_id).info("Continuation enqueued")

    def _take_continuation(self, job: Job) -> bool:
        """Atomically remove the stable job we fetched; False when it was re-scheduled meanwhile."""
        key = job.key
        with self.connection.pipeline() as pipe:
            try:
                pipe.watch(key)
                token = pipe.hget(key, SCHEDULE_META_FIELD)
                fetched = getattr(job, "_mailadmin_token", token)
                if token != fetched or pipe.zscore(self.scheduled_jobs_key, job.id) is None:
                    return False
                pipe.multi()
                pipe.zrem(self.scheduled_jobs_key, job.id)
                pipe.delete(key)
                pipe.execute()
                return True
            except WatchError:
                return False

    def get_jobs(self, until=None, with_times=False, offset=None, length=None):
        """rq-scheduler's due jobs, each remembering the version of its hash that was read."""
        for item in super().get_jobs(until=until, with_times=with_times, offset=offset, length=length):
            job = item[0] if with_times else item
            # Remember which version of the stable job we fetched (see _take_continuation).
            job._mailadmin_token = self.connection.hget(job.key, SCHEDULE_META_FIELD)
            yield item

    def enqueue_jobs(self):
        """One scheduler tick: dispatch what is due, then the recovery sweep when its interval is up."""
        jobs = list(super().enqueue_jobs())
        self._maybe_recover()
        return jobs

    def _maybe_recover(self) -> None:
        if self.recovery_interval is None:
            return
        if time.monotonic() - self._last_recovery < self.recovery_interval:
            return
        self._last_recovery = time.monotonic()
        # Dispatching continuations does not need the database: a failed sweep is logged and retried.
        run_recovery_sweep_logging_failures()
