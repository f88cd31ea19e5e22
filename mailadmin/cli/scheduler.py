"""`flask --app wsgi scheduler`: rq-scheduler for the send loop, plus the crash-recovery sweep.

The stock `rqscheduler` script does not read REDIS_URL and would run continuations under their
stable job id; this command uses the app's settings and `ContinuationScheduler`.
"""

from __future__ import annotations

import click
from flask import current_app
from loguru import logger

from mailadmin.extensions import SEND_QUEUE, get_redis, get_settings
from mailadmin.jobs.continuations import ContinuationScheduler
from mailadmin.queue.outages import set_process_name


@click.command("scheduler")
@click.option("--interval", default=1.0, show_default=True, type=float,
              help="Seconds between checks for due continuations (continuations run at most this late).")
@click.option("--recovery-interval", default=60.0, show_default=True, type=float,
              help="Seconds between recovery sweeps (stale claims -> unknown, stalled campaigns re-enqueued).")
@click.option("--burst", is_flag=True, help="Dispatch what is due and sweep once, then exit.")
def scheduler_command(interval: float, recovery_interval: float, burst: bool) -> None:
    """Run rq-scheduler against REDIS_URL: dispatch deferred continuations, sweep for stalled campaigns."""
    set_process_name("scheduler")
    scheduler = ContinuationScheduler(
        queue_name=SEND_QUEUE, connection=get_redis(), interval=interval, recovery_interval=recovery_interval,
        settings=get_settings(),
        app=current_app._get_current_object(),
    )
    scheduler.declare_periodic_jobs(get_settings())
    logger.bind(interval=interval, recovery_interval=recovery_interval, burst=burst).info("Scheduler starting")
    scheduler.run(burst=burst)
