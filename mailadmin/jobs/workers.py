"""The RQ worker class of the product: graceful SIGTERM for the send loop, and survival of
Redis outages in the worker and in its work horse.

RQ 3's stock worker dies when Redis goes away while a job runs: `monitor_work_horse` raises from
the heartbeat or from `job.get_status`, `work()` quits on the error and `register_death` raises
again. `SendWorker` wraps each of RQ's Redis touch points the loop depends on:

* worker side — `heartbeat`, `maintain_heartbeats`, `set_state`, `run_maintenance_tasks`: an
  outage is recorded and skipped (the worker key only needs to be refreshed before its TTL);
  `check_for_suspension`, `register_birth`, `prepare_execution`, the dequeue and the bookkeeping
  after the horse exits wait for Redis to return (capped backoff with jitter);
* horse side — `prepare_job_execution` and the success/failure bookkeeping wait for Redis, so a
  slice that ran through an outage still finishes as a job — as long as its worker lives: a horse
  whose worker exited stops its slice and exits (`jobs.lifeline`);
* RQ's own per-attempt "could not connect to Redis" lines are replaced by one outage record at
  the start and one at the end (`queue.outages`).

After Redis returns empty (a restart without persistence) the worker registers itself again, so
the recovery sweep still sees it as alive.

With every registration and heartbeat the worker also publishes the limits it runs with
(`mailadmin.settings_in_effect`), so the doctor shows what the workers really use.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from typing import TypeVar

from flask import Flask
from loguru import logger
from rq import worker_registration
from rq.exceptions import InvalidJobOperation, StopRequested
from rq.job import Job, JobStatus
from rq.queue import Queue
from rq.utils import now
from rq.worker import HerokuWorker

from mailadmin.counters import flush as flush_counters
from mailadmin.extensions import db
from mailadmin.jobs.send import request_slice_stop
from mailadmin.queue.lifeline import hold_parent
from mailadmin.queue.outages import (
    REDIS_DOWN,
    Service,
    call_through_outage,
    outage_tracker,
    set_process_name,
)
from mailadmin.settings import Settings
from mailadmin.settings_in_effect import WORKER, publish_settings, withdraw_settings

T = TypeVar("T")

# RQ logs this on every failed dequeue / pubsub attempt; the outage tracker reports instead.
_RQ_RETRY_LINE = "could not connect to Redis instance"
# Seconds between two attempts at most while Redis is down (RQ's own default is 60).
REDIS_RETRY_CAP_SECONDS = 2.0
HORSE_PROCESS = "horse"
# What the kernel sends a work horse when its worker dies (prctl PR_SET_PDEATHSIG): not SIGRTMIN,
# whose second arrival means "stop now" to RQ's horse.
WORKER_GONE_SIGNAL = signal.SIGRTMIN + 1
# How often the worker beats (and re-registers after an outage) while its horse runs a job; the
# recovery sweep counts a worker silent for LIVE_WORKER_HEARTBEAT_SECONDS as dead.
JOB_MONITORING_INTERVAL = 5


class _DropRqRetryLines(logging.Filter):
    """Drops RQ's per-attempt connection errors: one outage record replaces them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return _RQ_RETRY_LINE not in str(record.msg)


_RETRY_FILTER = _DropRqRetryLines()


class SendWorker(HerokuWorker):
    """HerokuWorker (SIGTERM -> SIGRTMIN to the work horse -> ShutDownImminentException 6 s later)
    whose horse runs each job in the app context of `app`, also asks the running send slice to
    stop before its next message, and which lives through Redis outages (see the module docstring)."""

    max_connection_wait_time = REDIS_RETRY_CAP_SECONDS

    def __init__(self, *args, app: Flask, job_monitoring_interval: int = JOB_MONITORING_INTERVAL,
                 settings: Settings | None = None, **kwargs) -> None:
        super().__init__(*args, job_monitoring_interval=job_monitoring_interval, **kwargs)
        self.app = app
        # Published with each heartbeat when given (worker.py gives the app's settings).
        self.settings_in_effect = settings
        logging.getLogger("rq.worker").addFilter(_RETRY_FILTER)
        self.stop_signalled = False
        self.worker_pid = os.getpid()  # what each forked horse holds on to (jobs.lifeline)
        self._redis = outage_tracker(Service.REDIS)
        self._redis.on_recovery.append(lambda _seconds: self._register_again())

    # --- helpers -----------------------------------------------------------------------------

    def _wait_for_redis(self, call: Callable[[], T]) -> T:
        """Run a Redis call, waiting for Redis while it is down; a stop request ends the wait."""
        return call_through_outage(call, cap=REDIS_RETRY_CAP_SECONDS, before_retry=self._raise_if_stopping)

    def _raise_if_stopping(self) -> None:
        if self._stop_requested and not self.is_horse:
            raise StopRequested()

    def _skip_during_outage(self, call: Callable[[], T]) -> T | None:
        """Run a Redis call that may be skipped while Redis is down (it is redone later anyway)."""
        try:
            result = call()
        except REDIS_DOWN as exc:
            self._redis.failed(exc)
            return None
        self._redis.succeeded()
        return result

    def _publish_settings(self, pipeline=None) -> None:
        """Publish the limits this worker runs with; they expire with its RQ registration."""
        if self.settings_in_effect is not None:
            publish_settings(pipeline if pipeline is not None else self.connection, WORKER, self.name,
                             self.settings_in_effect, self.worker_ttl + 60)

    def _register_again(self) -> None:
        """After an outage: put this worker back in RQ's registry (a restarted Redis is empty)."""
        if self.is_horse:
            return
        try:
            ttl = self.worker_ttl + 60
            with self.connection.pipeline() as pipeline:
                pipeline.hset(self.key, mapping=self.serialize())
                worker_registration.register(self, pipeline)
                pipeline.expire(self.key, ttl)
                self._publish_settings(pipeline)
                # The running job too: the recovery sweep must see that its claims are held.
                for execution in list(self.executions.values()):
                    execution.save(ttl=ttl, pipeline=pipeline)
                    pipeline.sadd(execution.worker_executions_key, execution.composite_key)
                    pipeline.expire(execution.worker_executions_key, ttl)
                pipeline.execute()
        except REDIS_DOWN as exc:
            self._redis.failed(exc)

    # --- worker side ---------------------------------------------------------------------------

    def request_stop(self, signum, frame) -> None:
        """RQ's SIGTERM/SIGINT handler, remembering that a stop was asked for."""
        self.stop_signalled = True
        super().request_stop(signum, frame)

    def register_birth(self) -> None:
        """RQ's, waiting for Redis: a worker started during an outage registers when it returns."""
        self._wait_for_redis(super().register_birth)
        self._skip_during_outage(self._publish_settings)

    def register_death(self) -> None:
        """RQ's, and the settings publication withdrawn; during an outage both simply expire."""
        self._skip_during_outage(super().register_death)
        if self.settings_in_effect is not None:
            self._skip_during_outage(lambda: withdraw_settings(self.connection, WORKER, self.name))

    def subscribe(self) -> None:
        """RQ's command channel, subscribed once Redis answers."""
        self._wait_for_redis(super().subscribe)

    def unsubscribe(self) -> None:
        """RQ's; nothing to undo on a Redis that is gone."""
        self._skip_during_outage(super().unsubscribe)

    def heartbeat(self, timeout=None, pipeline=None) -> None:
        """RQ's heartbeat, skipped (and the outage recorded) while Redis is down."""
        if pipeline is not None:  # buffered: the pipeline's execute() is where Redis is reached
            # Published on its own: RQ reads some pipelines' replies by position.
            self._skip_during_outage(self._publish_settings)
            return super().heartbeat(timeout, pipeline=pipeline)
        self._skip_during_outage(lambda: super(SendWorker, self).heartbeat(timeout))
        self._skip_during_outage(self._publish_settings)

    def maintain_heartbeats(self, job: Job, execution) -> None:
        """The horse monitor's heartbeats, skipped while Redis is down: the horse keeps working."""
        self._skip_during_outage(lambda: super(SendWorker, self).maintain_heartbeats(job, execution))

    def set_state(self, state: str, pipeline=None) -> None:
        """RQ's; the state is kept locally and written again at the next chance."""
        if pipeline is not None:
            return super().set_state(state, pipeline=pipeline)
        self._state = state
        self._skip_during_outage(lambda: super(SendWorker, self).set_state(state))

    def set_shutdown_requested_date(self) -> None:
        """RQ's (SIGTERM path); a shutdown during an outage still proceeds."""
        self._skip_during_outage(super().set_shutdown_requested_date)

    def run_maintenance_tasks(self) -> None:
        """RQ's registry cleaning, skipped while Redis is down (it runs again later)."""
        self._skip_during_outage(super().run_maintenance_tasks)

    def check_for_suspension(self, burst: bool) -> None:
        """RQ's `rq suspend` check, waiting for Redis."""
        self._wait_for_redis(lambda: super(SendWorker, self).check_for_suspension(burst))

    def dequeue_job_and_maintain_ttl(self, timeout, max_idle_time=None):
        """RQ's dequeue, entered once Redis answers."""
        # Wait (with our backoff and one outage record) before RQ's own retry loop sees the outage.
        self._wait_for_redis(self.connection.ping)
        return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)

    def prepare_execution(self, job: Job):
        """RQ's execution record, written once Redis answers (before the horse is forked)."""
        return self._wait_for_redis(lambda: super(SendWorker, self).prepare_execution(job))

    def monitor_work_horse(self, job: Job, queue: Queue, execution) -> None:
        """RQ's monitor; when Redis is down as the horse ends, settle the job once it is back."""
        try:
            super().monitor_work_horse(job, queue, execution)
        except REDIS_DOWN as exc:
            self._redis.failed(exc)
            self._horse_pid = 0
            self.executions.pop(execution.id, None)
            self._wait_for_redis(lambda: self._settle_abnormal_exit(job, queue, execution))

    def _settle_abnormal_exit(self, job: Job, queue: Queue, execution) -> None:
        """What RQ does after a horse exited abnormally: fail the job unless it already ended."""
        try:
            status = job.get_status()
        except InvalidJobOperation:
            return
        if status not in (JobStatus.FINISHED, JobStatus.FAILED):
            job.ended_at = now()
            self.handle_job_failure(job, queue=queue, exc_string="Work-horse ended during a Redis outage",
                                    execution=execution)

    def handle_job_failure(self, job: Job, queue: Queue, *args, **kwargs) -> None:
        """RQ's failure bookkeeping (worker or horse), written once Redis answers."""
        self._wait_for_redis(lambda: super(SendWorker, self).handle_job_failure(job, queue, *args, **kwargs))

    # --- horse side ------------------------------------------------------------------------------

    def request_stop_sigrtmin(self, signum, frame):
        """In the horse, on SIGRTMIN: stop the slice between messages, and arm RQ's hard deadline."""
        request_slice_stop()
        super().request_stop_sigrtmin(signum, frame)

    def setup_work_horse_signals(self) -> None:
        """HerokuWorker's horse signals, plus the lifeline to the worker: the horse lives in a
        process group of its own and ignores SIGTERM, so when the worker dies the kernel sends it
        WORKER_GONE_SIGNAL (a warm stop: the slice records and hands over), and its Redis waits give
        up (`jobs.lifeline`)."""
        super().setup_work_horse_signals()
        signal.signal(WORKER_GONE_SIGNAL, self._worker_gone)
        hold_parent(self.worker_pid, WORKER_GONE_SIGNAL)

    def _worker_gone(self, signum, frame) -> None:
        """In the horse, once its worker died: the warm stop SIGRTMIN starts, unless one already runs."""
        # The kernel signals once per thread of the horse: act on the first only. A second
        # SIGRTMIN would cut the slice short (ShutDownImminentException) before it recorded.
        signal.signal(WORKER_GONE_SIGNAL, signal.SIG_IGN)
        if signal.getsignal(signal.SIGRTMIN) == self.request_stop_sigrtmin:
            self.request_stop_sigrtmin(signum, frame)

    def main_work_horse(self, job: Job, queue: Queue) -> None:
        """Run the job in the forked horse, on fresh database connections and fresh outage trackers."""
        set_process_name(HORSE_PROCESS)
        self._redis = outage_tracker(Service.REDIS)
        # The forked horse must not reuse the parent's pooled DB sockets (SQLAlchemy's fork recipe).
        db.engine.dispose(close=False)
        super().main_work_horse(job, queue)

    def perform_job(self, job: Job, queue: Queue, execution) -> bool:
        """In the horse: RQ's run of one job and its bookkeeping, inside the app context of `app`; then the
        metrics the job counted and no call of its own carried yet, in one round trip."""
        with self.app.app_context():
            try:
                return super().perform_job(job, queue, execution)
            finally:
                flush_counters(self.connection)

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        """In the horse: RQ's start-of-job bookkeeping, written once Redis answers."""
        self._wait_for_redis(
            lambda: super(SendWorker, self).prepare_job_execution(job, remove_from_intermediate_queue)
        )

    def handle_execution_ended(self, job: Job, queue: Queue, heartbeat_ttl: int) -> None:
        """In the horse: RQ's end-of-job heartbeat, written once Redis answers."""
        self._wait_for_redis(lambda: super(SendWorker, self).handle_execution_ended(job, queue, heartbeat_ttl))

    def handle_job_success(self, job: Job, queue: Queue, started_job_registry, execution) -> None:
        """In the horse: RQ's success bookkeeping, written once Redis answers (the job finishes)."""
        self._wait_for_redis(
            lambda: super(SendWorker, self).handle_job_success(job, queue, started_job_registry, execution)
        )


def run_worker_forever(worker: SendWorker, *, burst: bool) -> None:
    """`worker.work()`, started again if RQ's loop quits on an error while no stop was asked for."""
    while True:
        worker.work(burst=burst, logging_level="INFO")
        if burst or worker.stop_signalled:
            return
        logger.bind(worker=worker.name).error("Worker loop ended unexpectedly; starting it again")
        time.sleep(1.0)
        # A death RQ could not register during an outage would block the new birth.
        worker._skip_during_outage(lambda: worker.connection.delete(worker.key))
