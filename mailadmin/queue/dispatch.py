"""Hand-offs of the send loop to RQ and rq-scheduler, and their job ids — RQ only, no database.

* `enqueue_send_slice()` puts one send slice on the send queue right now (a fresh job id each
  time: the loop's own continuation after a slice, the fan-out siblings, start and resume).
* `schedule_continuation()` asks rq-scheduler to run the campaign's next slice at a given UTC
  moment, under the stable job id `campaign-{id}-continuation`, replacing any earlier one:
  a campaign has at most one pending continuation. `cancel_continuation()` removes it.
* `job_waiting()` / `scheduled_continuation_at()` tell the recovery sweep whether a job will run;
  `running_jobs()` which jobs live workers run now (and which belonged to workers known dead).
* `schedule_bounce_mailbox()` declares the periodic bounce-mailbox job under its stable id
  `bounce-mailbox-poll` (the scheduler process calls it at start; re-declaring replaces it).

Services and web code import this module to enqueue by import path; it never imports the send
loop, the scheduler or the recovery sweep (the job functions are named by their import paths).
"""

from __future__ import annotations

import math
import os
import socket
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum

from loguru import logger
from redis import Redis, RedisError
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.worker import Worker
from rq_scheduler import Scheduler

from mailadmin.extensions import DEFAULT_QUEUE, SEND_QUEUE, get_redis, get_settings
from mailadmin.queue.outages import Service, outage_tracker
from mailadmin.settings import Settings

SEND_SLICE_FUNC = "mailadmin.jobs.send.send_campaign_slice"
BOUNCE_MAILBOX_FUNC = "mailadmin.jobs.bounce_mailbox.poll_bounce_mailbox"
BOUNCE_MAILBOX_JOB_ID = "bounce-mailbox-poll"
RECOVERY_FUNC = "mailadmin.jobs.recovery.run_recovery_job"
AUDIENCE_IMPORT_FUNC = "mailadmin.jobs.imports.import_contacts"
# An import of a few million rows takes minutes; an hour is far beyond any file the upload limit lets in.
AUDIENCE_IMPORT_TIMEOUT = 3600
CONTINUATION_PREFIX = "campaign-"
CONTINUATION_SUFFIX = "-continuation"
# Results of finished slices are only useful for `rq info`; failures are kept a week for on-call.
SLICE_RESULT_TTL = 600
SLICE_FAILURE_TTL = 7 * 24 * 3600
# A worker whose last heartbeat is older than this is not alive (SendWorker beats every 5 s while a
# job runs); also how long a restarted Redis is given before its empty worker registry is trusted.
LIVE_WORKER_HEARTBEAT_SECONDS = 20

def continuation_job_id(campaign_id: int) -> str:
    """The stable rq-scheduler job id of a campaign's deferred continuation."""
    return f"{CONTINUATION_PREFIX}{campaign_id}{CONTINUATION_SUFFIX}"


def campaign_id_of_continuation(job_id: str) -> int | None:
    """The campaign id in a continuation job id, or None for any other job."""
    if not (job_id.startswith(CONTINUATION_PREFIX) and job_id.endswith(CONTINUATION_SUFFIX)):
        return None
    middle = job_id[len(CONTINUATION_PREFIX) : -len(CONTINUATION_SUFFIX)]
    return int(middle) if middle.isdigit() else None


def campaign_id_of_slice(job_id: str) -> int | None:
    """The campaign id in a slice job id (`campaign-{id}-slice-...`), or None."""
    prefix, _, rest = job_id.partition("-")
    middle, _, _ = rest.partition("-slice-")
    return int(middle) if prefix == "campaign" and "-slice-" in job_id and middle.isdigit() else None


def new_slice_job_id(campaign_id: int) -> str:
    """A fresh, readable RQ job id for one send slice (also the recipients' `claimed_by`)."""
    return f"campaign-{campaign_id}-slice-{uuid.uuid4().hex[:12]}"


def slice_job_timeout(settings: Settings) -> int:
    """RQ timeout of a slice: its time budget plus one slow SMTP exchange, with margin.

    Keep MAILER_STALE_CLAIM_SECONDS above this: a claim older than that can only belong to a
    job RQ has already killed.
    """
    return settings.send_slice_seconds + 2 * settings.smtp_timeout_seconds + 10


def continuation_time(moment: datetime) -> datetime:
    """`moment` rounded UP to the whole second: rq-scheduler stores whole seconds and must not run early."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime given; continuations are scheduled in aware UTC")
    moment = moment.astimezone(UTC)
    whole = math.ceil(moment.timestamp())
    return datetime.fromtimestamp(whole, tz=UTC)


def continuation_scheduler(connection: Redis | None = None) -> Scheduler:
    """The rq-scheduler instance that holds the send queue's continuations."""
    return Scheduler(queue_name=SEND_QUEUE, connection=connection or get_redis())


def enqueue_send_slice(campaign_id: int, *, job_id: str | None = None, connection: Redis | None = None) -> str:
    """Put one send slice of the campaign on the send queue now; returns the job id."""
    settings = get_settings()
    queue = Queue(SEND_QUEUE, connection=connection or get_redis())
    job = queue.enqueue(
        SEND_SLICE_FUNC,
        campaign_id,
        job_id=job_id or new_slice_job_id(campaign_id),
        job_timeout=slice_job_timeout(settings),
        result_ttl=SLICE_RESULT_TTL,
        failure_ttl=SLICE_FAILURE_TTL,
        description=f"send slice of campaign {campaign_id}",
    )
    return job.id


def enqueue_audience_import(import_id: str, *, connection: Redis | None = None) -> str:
    """Put a contacts import on the default queue (its job id is stable: one job per import)."""
    job = Queue(DEFAULT_QUEUE, connection=connection or get_redis()).enqueue(
        AUDIENCE_IMPORT_FUNC,
        import_id,
        job_id=f"audience-import-{import_id}",
        job_timeout=AUDIENCE_IMPORT_TIMEOUT,
        result_ttl=SLICE_RESULT_TTL,
        failure_ttl=SLICE_FAILURE_TTL,
        description=f"import contacts {import_id}",
    )
    return job.id


def _discard_stable_job(connection: Redis, job_id: str) -> None:
    """Remove a continuation from the schedule and delete its hash (never a running job's)."""
    scheduler = continuation_scheduler(connection)
    scheduler.cancel(job_id)
    try:
        job = Job.fetch(job_id, connection=connection)
    except NoSuchJobError:
        return
    if job.get_status(refresh=False) != JobStatus.STARTED:
        job.delete(remove_from_queue=True)


def schedule_continuation(campaign_id: int, at: datetime, *, connection: Redis | None = None) -> str:
    """Have rq-scheduler run the campaign's next slice at `at` (UTC), replacing any earlier continuation."""
    settings = get_settings()
    connection = connection or get_redis()
    job_id = continuation_job_id(campaign_id)
    _discard_stable_job(connection, job_id)
    when = continuation_time(at)
    continuation_scheduler(connection).enqueue_at(
        when,
        SEND_SLICE_FUNC,
        campaign_id,
        job_id=job_id,
        timeout=slice_job_timeout(settings),
        job_result_ttl=SLICE_RESULT_TTL,
        job_description=f"continuation of campaign {campaign_id}",
        meta={"schedule_token": uuid.uuid4().hex},
    )
    return job_id


def cancel_continuation(campaign_id: int, *, connection: Redis | None = None) -> None:
    """Remove the campaign's scheduled continuation, if any."""
    _discard_stable_job(connection or get_redis(), continuation_job_id(campaign_id))


def scheduled_continuation_at(campaign_id: int, *, connection: Redis | None = None) -> datetime | None:
    """When the campaign's continuation is scheduled (aware UTC), or None."""
    connection = connection or get_redis()
    score = connection.zscore(Scheduler.scheduled_jobs_key, continuation_job_id(campaign_id))
    return None if score is None else datetime.fromtimestamp(score, tz=UTC)


def job_waiting(connection: Redis, job_id: str | None) -> bool:
    """Is this RQ job still queued or scheduled (so a worker will run it)?"""
    if not job_id:
        return False
    try:
        status = Job.fetch(job_id, connection=connection).get_status(refresh=False)
    except NoSuchJobError:
        return False
    return status in (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED)


def safe_cancel_continuation(campaign_id: int) -> None:
    """`cancel_continuation`, logging instead of raising when Redis is down (the slice guard covers it)."""
    try:
        cancel_continuation(campaign_id)
    except RedisError as exc:
        logger.bind(campaign_id=campaign_id, error_type=type(exc).__name__).error(
            "Could not cancel the scheduled continuation (Redis unavailable)"
        )


# --- which jobs live workers run (the recovery sweep's question) ----------------------------------


class WorkerState(Enum):
    """What the recovery sweep can tell of a registered RQ worker."""

    ALIVE = "alive"  # a fresh heartbeat
    DEAD = "dead"  # on this host and its pid is gone: certainly dead, at once
    SILENT = "silent"  # no fresh heartbeat: dead, or cut off from Redis for a while


def _worker_state(worker: Worker, at: datetime) -> WorkerState:
    if worker.hostname == socket.gethostname() and worker.pid:
        try:
            os.kill(worker.pid, 0)
        except ProcessLookupError:
            return WorkerState.DEAD  # SIGKILLed on this machine: no need to wait for its heartbeat to age
        except PermissionError:
            pass
    if worker.last_heartbeat is None or (at - worker.last_heartbeat).total_seconds() > LIVE_WORKER_HEARTBEAT_SECONDS:
        return WorkerState.SILENT
    return WorkerState.ALIVE


@dataclass
class RunningJobs:
    """The send jobs live workers run, and those of workers known to be dead."""

    running: set[str] = field(default_factory=set)
    dead: set[str] = field(default_factory=set)

    def campaigns(self) -> set[int]:
        """The campaigns a running job works on."""
        return {campaign_id for job_id in self.running if (campaign_id := campaign_id_of_slice(job_id)) is not None}


def running_jobs(connection: Redis) -> RunningJobs | None:
    """What RQ's worker registry says about running jobs; None while it cannot be trusted:
    during the first LIVE_WORKER_HEARTBEAT_SECONDS of a restarted Redis (empty until each worker's
    next heartbeat registers it again) or after this process saw a Redis outage end."""
    redis_outage = outage_tracker(Service.REDIS)
    if redis_outage.down or redis_outage.seconds_since_recovery() < LIVE_WORKER_HEARTBEAT_SECONDS:
        return None
    if int(connection.info("server").get("uptime_in_seconds", 0)) < LIVE_WORKER_HEARTBEAT_SECONDS:
        return None
    at = datetime.now(UTC)
    jobs = RunningJobs()
    for worker in Worker.all(connection=connection):
        state = _worker_state(worker, at)
        if state is WorkerState.SILENT:
            continue
        ids = {execution.job_id for execution in worker.get_current_executions(refresh=True)}
        (jobs.running if state is WorkerState.ALIVE else jobs.dead).update(ids)
    return jobs


def schedule_bounce_mailbox(settings: Settings, *, connection: Redis | None = None) -> str | None:
    """(Re)declare the periodic bounce-mailbox job under its stable id; None (and removed) when not configured.

    Declared at every scheduler start: reconciled, never duplicated.
    """
    connection = connection or get_redis()
    _discard_stable_job(connection, BOUNCE_MAILBOX_JOB_ID)
    if not settings.bounce_imap_url:
        return None
    Scheduler(queue_name=DEFAULT_QUEUE, connection=connection).schedule(
        datetime.now(UTC),
        BOUNCE_MAILBOX_FUNC,
        interval=settings.bounce_poll_seconds,
        repeat=None,
        id=BOUNCE_MAILBOX_JOB_ID,
        queue_name=DEFAULT_QUEUE,
        timeout=max(60, settings.bounce_poll_seconds),
        result_ttl=max(60, settings.bounce_poll_seconds * 2),
        description="read the bounce mailbox",
    )
    return BOUNCE_MAILBOX_JOB_ID
