"""Hand-offs of double opt-in confirmation mails to RQ: now, or later through rq-scheduler.

The job (`mailadmin.jobs.confirmations.send_confirmation_batch`, named by its import path) runs on
the send queue, next to the campaigns' slices, and takes its tokens from the same hourly quota at
the head of the quota's waiting line (`limits.waiting_line.CONFIRMATION_LANE`). A job carries at
most `CONFIRMATION_JOB_SIZE` members, so a large import of unconfirmed members becomes many small
jobs that campaigns' slices interleave with.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime

from redis import Redis
from rq import Queue
from rq_scheduler import Scheduler

from mailadmin.extensions import SEND_QUEUE, get_redis
from mailadmin.queue.dispatch import continuation_time

CONFIRMATION_FUNC = "mailadmin.jobs.confirmations.send_confirmation_batch"
CONFIRMATION_JOB_SIZE = 50
CONFIRMATION_JOB_TIMEOUT = 300
CONFIRMATION_RESULT_TTL = 600
CONFIRMATION_FAILURE_TTL = 7 * 24 * 3600


def _chunks(contact_ids: Iterable[int]) -> Iterator[list[int]]:
    chunk: list[int] = []
    for contact_id in contact_ids:
        chunk.append(int(contact_id))
        if len(chunk) == CONFIRMATION_JOB_SIZE:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def enqueue_confirmations(list_id: int, contact_ids: Sequence[int], *, at: datetime | None = None,
                          connection: Redis | None = None, language: str = "en") -> int:
    """Queue the confirmation mails of these members of `list_id` now (or at `at`, UTC), written in
    `language`; returns the jobs made."""
    connection = connection or get_redis()
    jobs = 0
    for chunk in _chunks(contact_ids):
        options = {"job_timeout": CONFIRMATION_JOB_TIMEOUT, "result_ttl": CONFIRMATION_RESULT_TTL,
                   "failure_ttl": CONFIRMATION_FAILURE_TTL,
                   "description": f"confirmation mails of list {list_id} ({len(chunk)})"}
        if at is None:
            Queue(SEND_QUEUE, connection=connection).enqueue(CONFIRMATION_FUNC, list_id, chunk, language, **options)
        else:
            Scheduler(queue_name=SEND_QUEUE, connection=connection).enqueue_at(
                continuation_time(at), CONFIRMATION_FUNC, list_id, chunk, language, timeout=options["job_timeout"],
                job_result_ttl=options["result_ttl"], job_description=options["description"])
        jobs += 1
    return jobs
