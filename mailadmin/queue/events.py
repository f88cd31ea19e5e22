"""Hand-offs of events out to RQ: the delivery job on its own queue, at most one waiting at a time.

Every committed event asks for a delivery run (`request_events_delivery`); a Redis flag
(`SET NX`, expiring) keeps a burst of 100,000 events from becoming 100,000 jobs: while one run is
queued, asking again does nothing. The run clears the flag as it starts (`events_delivery_started`),
before it reads the outbox, so an event committed after that asks for, and gets, a run of its own.
"""

from __future__ import annotations

import uuid

from redis import Redis
from rq import Queue

from mailadmin.extensions import EVENTS_QUEUE, get_redis

DELIVER_EVENTS_FUNC = "mailadmin.jobs.events.deliver_due_events"
DELIVERY_QUEUED_KEY = "mailadmin:events:delivery-queued"
# The flag outlives a lost job (Redis flushed between SET and enqueue) by at most this long.
DELIVERY_QUEUED_TTL_SECONDS = 60
# A run stops taking deliveries after its budget (see jobs/events.py); RQ kills it well after.
DELIVERY_JOB_TIMEOUT = 300
DELIVERY_RESULT_TTL = 60
DELIVERY_FAILURE_TTL = 7 * 24 * 3600


def request_events_delivery(connection: Redis | None = None) -> bool:
    """Queue a delivery run on the events queue unless one is queued already; True when this call queued it."""
    connection = connection or get_redis()
    if not connection.set(DELIVERY_QUEUED_KEY, "1", nx=True, ex=DELIVERY_QUEUED_TTL_SECONDS):
        return False
    Queue(EVENTS_QUEUE, connection=connection).enqueue(
        DELIVER_EVENTS_FUNC,
        job_id=f"events-delivery-{uuid.uuid4().hex[:12]}",
        job_timeout=DELIVERY_JOB_TIMEOUT,
        result_ttl=DELIVERY_RESULT_TTL,
        failure_ttl=DELIVERY_FAILURE_TTL,
        description="deliver due events to their endpoints",
    )
    return True


def events_delivery_started(connection: Redis | None = None) -> None:
    """A run has started: the next event asks for a run of its own."""
    (connection or get_redis()).delete(DELIVERY_QUEUED_KEY)
