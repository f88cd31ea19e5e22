"""`python worker.py`: the RQ worker process (Procfile `worker`).

Builds the app, sets up logging, and runs `SendWorker` (a HerokuWorker) on the send, default and
events queues, in that order (`--queue NAME`, repeatable: only those, e.g. a worker of its own for
events out), handing it the app: each job runs in that app's context. SIGTERM is graceful: the running send slice stops before its next message, records what
it did and enqueues its continuation; the worker then exits. `--burst` exits when the queues are
empty (tests, one-off runs).
"""

from __future__ import annotations

import argparse
import sys

import redis
from loguru import logger
from redis.backoff import NoBackoff
from redis.retry import Retry
from rq import Queue


def main(argv: list[str] | None = None) -> int:
    """Run the worker until SIGTERM (or until the queues are empty with --burst)."""
    parser = argparse.ArgumentParser(prog="python worker.py", description="mailadmin RQ worker")
    parser.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    parser.add_argument("--name", default=None, help="worker name (default: RQ's random name)")
    parser.add_argument("--queue", action="append", dest="queues", metavar="NAME",
                        help="take jobs from this queue only (repeatable; default: every queue, the send queue first)")
    args = parser.parse_args(argv)

    from mailadmin import create_app
    from mailadmin.extensions import QUEUE_NAMES, db
    from mailadmin.jobs.recovery import recover_at_start
    from mailadmin.jobs.workers import SendWorker, run_worker_forever
    from mailadmin.logging import report_startup_failure
    from mailadmin.queue.dispatch import slice_job_timeout
    from mailadmin.queue.outages import set_process_name
    from mailadmin.settings import SettingsError

    set_process_name("worker")
    if unknown := sorted(set(args.queues or ()) - set(QUEUE_NAMES)):
        parser.error(f"unknown queue {unknown[0]!r}; the queues are {', '.join(QUEUE_NAMES)}")
    try:
        app = create_app()  # validates the settings and sets up logging
    except SettingsError as exc:
        # Every bad variable at once, one line each: the operator fixes them all in one round.
        print(report_startup_failure([f"worker: invalid configuration: {line}" for line in exc.problems]),
              file=sys.stderr)
        return 2
    settings = app.config["SETTINGS"]
    with app.app_context():
        if settings.stale_claim_seconds <= slice_job_timeout(settings):
            logger.bind(
                stale_claim_seconds=settings.stale_claim_seconds, slice_job_timeout=slice_job_timeout(settings)
            ).warning("MAILER_STALE_CLAIM_SECONDS should exceed the slice job timeout")
        # RQ raises the socket timeout of the connection it is given (blocking BLPOP): it gets its
        # own client, so the app's short fail-fast timeouts (rate limiter, throttles) stay short.
        # One immediate retry (a dropped idle connection), not redis-py's default backoff: while
        # Redis is down, SendWorker's own capped backoff does the waiting and logs the outage once.
        connection = redis.Redis.from_url(settings.redis_url, retry=Retry(NoBackoff(), 1))
        names = [name for name in QUEUE_NAMES if not args.queues or name in args.queues]
        queues = [Queue(name, connection=connection) for name in names]
        worker = SendWorker(queues, connection=connection, name=args.name, settings=settings, app=app)
        logger.bind(queues=names, burst=args.burst, worker=worker.name).info("Worker starting")
        recover_at_start()  # work left by processes that died is picked up now, not at a deadline
        db.engine.dispose()  # nothing pooled in the parent for the forked horses to inherit
        run_worker_forever(worker, burst=args.burst)
        logger.bind(worker=worker.name).info("Worker stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
