"""`flask --app wsgi jobs ...`: the RQ jobs that failed (send slices and others), read and cleared."""

from __future__ import annotations

import click
from flask.cli import AppGroup
from rq import Queue
from rq.job import Job
from rq.registry import FailedJobRegistry

from mailadmin.extensions import QUEUE_NAMES, get_redis
from mailadmin.ops.formatting import format_time
from mailadmin.queue.dispatch import SEND_SLICE_FUNC

jobs_cli = AppGroup("jobs", help="RQ jobs that failed (send slices and others).")


def _failed_registries() -> list[FailedJobRegistry]:
    connection = get_redis()
    return [FailedJobRegistry(queue=Queue(name, connection=connection)) for name in QUEUE_NAMES]


@jobs_cli.command("failed")
@click.option("--limit", default=20, show_default=True, help="Jobs shown per queue.")
def failed_jobs_command(limit: int) -> None:
    """Failed RQ jobs: id, campaign, when, the last line of the exception."""
    for registry in _failed_registries():
        ids = registry.get_job_ids(0, limit - 1, desc=True, cleanup=False)
        click.echo(f"{registry.name}: {registry.get_job_count(cleanup=False)} failed")
        for job in Job.fetch_many(ids, connection=registry.connection):
            if job is None:
                continue
            campaign = job.args[0] if job.func_name == SEND_SLICE_FUNC and job.args else "-"
            result = job.latest_result()
            text = (result.exc_string if result is not None else None) or ""
            last_line = text.strip().splitlines()[-1:] or ["(no exception recorded)"]
            click.echo(f"  {job.id}\tcampaign {campaign}\tended {format_time(job.ended_at)}\t{last_line[0][:200]}")


@jobs_cli.command("clear-failed")
@click.confirmation_option(prompt="Delete every failed job?")
def clear_failed_jobs_command() -> None:
    """Delete every failed job of the product's queues (read them first with `jobs failed`)."""
    removed = 0
    for registry in _failed_registries():
        for job_id in registry.get_job_ids(cleanup=False):
            registry.remove(job_id, delete_job=True)
            removed += 1
    click.echo(f"{removed} failed jobs deleted")
