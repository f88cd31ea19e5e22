"""`ContinuationScheduler`: the rq-scheduler the `scheduler` process runs.

When a continuation is due it enqueues a *fresh* slice job and deletes the stable one, so a
running slice that defers again never re-creates the job it is itself running as. It also runs
the recovery sweep (`mailadmin.jobs.recovery`) when it starts and every `recovery_interval`
seconds. Its loop (rq-scheduler's, rewritten) lives through outages: heartbeat, lock, dispatch and
sweep wait out Redis with a capped, jittered backoff instead of exiting, and an unreachable
database only postpones the sweep.
It also declares the product's periodic jobs (the bounce mailbox) when it starts, sweeps for due
event deliveries every EVENTS_SWEEP_SECONDS (`mailadmin.jobs.events`: a lost request for a run, a
retry whose time has come), and publishes the limits it runs with alongside its heartbeat
(`mailadmin.settings_in_effect`).
"""

from __future__ import annotations

import time
from contextlib import nullcontext

from flask import Flask
from loguru import logger
from redis import WatchError
from rq.job import Job
from rq_scheduler import Scheduler

from mailadmin.jobs.events import sweep_due_events
from mailadmin.jobs.recovery import run_recovery_sweep_through_outages
from mailadmin.queue.dispatch import campaign_id_of_continuation, enqueue_send_slice, schedule_bounce_mailbox
from mailadmin.queue.outages import REDIS_DOWN, Backoff, Service, call_through_outage, outage_tracker
from mailadmin.settings import Settings
from mailadmin.settings_in_effect import SCHEDULER, publish_settings, withdraw_settings

# Each scheduled continuation carries a fresh token in its meta; dispatch compares the job hash's
# raw `meta` field so that it removes exactly the version it fetched, never a re-scheduled one.
SCHEDULE_META_FIELD = "meta"
# Seconds between two attempts at most while Redis is down.
SCHEDULER_RETRY_CAP_SECONDS = 2.0
# The scheduler beats every `interval` (1 s); its settings publication is refreshed at most this often
# and lives this long without a refresh.
SETTINGS_PUBLICATION_INTERVAL_SECONDS = 5.0
SETTINGS_PUBLICATION_TTL_SECONDS = 60
# Seconds between two sweeps for due event deliveries (retries and runs whose request was lost).
EVENTS_SWEEP_SECONDS = 5.0


class ContinuationScheduler(Scheduler):
    """rq-scheduler that dispatches continuations as fresh slice jobs and runs the recovery sweep."""

    def __init__(self, *args, recovery_interval: float | None = 60.0, settings: Settings | None = None,
                 app: Flask | None = None, events_interval: float | None = EVENTS_SWEEP_SECONDS, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.events_interval = events_interval
        self._last_events_sweep = 0.0
        # The app whose context `run()` runs in (`flask scheduler` passes its own); tests that drive
        # single ticks (`enqueue_jobs()`) run them in their own app context.
        self.app = app
        self.recovery_interval = recovery_interval
        self._last_recovery = 0.0
        self.settings_in_effect = settings
        self._last_publication = 0.0

    def heartbeat(self) -> None:
        """rq-scheduler's heartbeat, and the limits this scheduler runs with published (every few seconds)."""
        super().heartbeat()
        if self.settings_in_effect is None:
            return
        if time.monotonic() - self._last_publication >= SETTINGS_PUBLICATION_INTERVAL_SECONDS:
            ttl = max(SETTINGS_PUBLICATION_TTL_SECONDS, int(self._interval) + 10)
            publish_settings(self.connection, SCHEDULER, self.name, self.settings_in_effect, ttl)
            self._last_publication = time.monotonic()

    def declare_periodic_jobs(self, settings: Settings) -> None:
        """Declare the periodic jobs under their stable ids (idempotent: a restart replaces, never adds)."""
        if schedule_bounce_mailbox(settings, connection=self.connection):
            logger.bind(interval=settings.bounce_poll_seconds).info("Bounce mailbox job scheduled")

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
        self._maybe_sweep_events()
        return jobs

    def _maybe_sweep_events(self) -> None:
        if self.events_interval is None or time.monotonic() - self._last_events_sweep < self.events_interval:
            return
        self._last_events_sweep = time.monotonic()
        if not sweep_due_events():
            self._last_events_sweep = 0.0

    def _maybe_recover(self) -> None:
        if self.recovery_interval is None:
            return
        if time.monotonic() - self._last_recovery < self.recovery_interval:
            return
        self._last_recovery = time.monotonic()
        # Dispatching continuations does not need the database: while it is down, only the sweep
        # waits, and it runs again as soon as the database answers.
        if not run_recovery_sweep_through_outages():
            self._last_recovery = 0.0

    # --- the loop, living through outages -----------------------------------------------------

    def run(self, burst: bool = False) -> None:
        """rq-scheduler's loop, in the app context of `app` when one was given."""
        with self.app.app_context() if self.app is not None else nullcontext():
            self._run_through_outages(burst)

    def _run_through_outages(self, burst: bool) -> None:
        """rq-scheduler's loop (heartbeat, lock, due continuations, sweep) that waits out Redis
        outages with a capped, jittered backoff instead of exiting, and sweeps as soon as Redis is back."""
        redis_outage = outage_tracker(Service.REDIS)
        redis_outage.on_recovery.append(self._after_redis_outage)
        call_through_outage(self.register_birth)
        self._install_signal_handlers()
        backoff = Backoff(cap=SCHEDULER_RETRY_CAP_SECONDS)
        try:
            while True:
                started = time.monotonic()
                try:
                    done = self._tick(burst)
                except REDIS_DOWN as exc:
                    redis_outage.failed(exc)
                    self._lock_acquired = False
                    time.sleep(backoff.next_delay())
                    continue
                redis_outage.succeeded()
                backoff.reset()
                if done:
                    break
                time.sleep(max(0.0, self._interval - (time.monotonic() - started)))
        finally:
            self.remove_lock()
            self.register_death()

    def _tick(self, burst: bool) -> bool:
        """One pass of rq-scheduler's loop; True when a burst run is done."""
        self.heartbeat()
        if not self.acquire_lock():
            self.log.warning("Lock already taken - skipping run")
            return False
        self.enqueue_jobs()
        self.heartbeat()
        self.remove_lock()
        if burst:
            self.log.info("RQ scheduler done, quitting")
        return burst

    def _after_redis_outage(self, _seconds: float) -> None:
        """Redis is back (maybe empty after a restart): register again, publish again and sweep at once."""
        self._last_recovery = 0.0
        self._last_publication = 0.0
        self._last_events_sweep = 0.0
        try:
            with self.connection.pipeline() as pipe:
                pipe.hset(self.key, "birth", time.time())
                pipe.expire(self.key, int(self._interval) + 10)
                pipe.execute()
        except REDIS_DOWN as exc:
            outage_tracker(Service.REDIS).failed(exc)

    def remove_lock(self) -> None:
        """rq-scheduler's; during an outage the lock simply expires by itself."""
        try:
            super().remove_lock()
        except REDIS_DOWN:
            self._lock_acquired = False

    def register_death(self) -> None:
        """rq-scheduler's, and the settings publication withdrawn; during an outage both simply expire."""
        try:
            super().register_death()
            if self.settings_in_effect is not None:
                withdraw_settings(self.connection, SCHEDULER, self.name)
        except REDIS_DOWN:
            pass
