"""Jobs run in the app context their process was handed: the worker's app around each job, the
scheduler's around its loop; a job with no app context is refused with how to start a worker."""

from __future__ import annotations

import contextvars
import signal
from datetime import UTC, datetime, timedelta

import pytest
from rq import Queue

from mailadmin.extensions import DEFAULT_QUEUE, SEND_QUEUE
from mailadmin.jobs import job_app_context
from mailadmin.jobs.continuations import ContinuationScheduler
from mailadmin.jobs.workers import SendWorker
from mailadmin.queue.dispatch import schedule_continuation
from tests.support.jobs import id_of_current_app, preserved_rq_loggers, rq_connection


def without_app_context(call):
    """Run `call` as a work horse or a bare process would: with no app context pushed."""
    return contextvars.Context().run(call)


def test_a_job_without_an_app_context_is_refused_with_how_to_start_a_worker():
    with pytest.raises(RuntimeError, match="python worker.py"):
        without_app_context(job_app_context)


def test_the_send_worker_runs_each_job_in_the_app_it_was_given(app, app_env):
    connection = rq_connection(app_env["REDIS_URL"])
    queue = Queue(DEFAULT_QUEUE, connection=connection)
    job = queue.enqueue(id_of_current_app)
    worker = SendWorker([queue], connection=connection, app=app)

    with preserved_rq_loggers():  # what the work horse does with a job, here in this process
        without_app_context(lambda: worker.perform_job(job, queue, worker.prepare_execution(job)))

    assert job.return_value() == id(app)
    connection.close()


def test_the_scheduler_runs_its_loop_in_the_app_it_was_given(app, app_env):
    connection = rq_connection(app_env["REDIS_URL"])
    schedule_continuation(7, datetime.now(UTC) - timedelta(seconds=1))
    scheduler = ContinuationScheduler(queue_name=SEND_QUEUE, connection=connection, recovery_interval=None, app=app)
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        without_app_context(lambda: scheduler.run(burst=True))  # a due continuation needs the settings
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)

    assert Queue(SEND_QUEUE, connection=connection).count == 1
    connection.close()
