"""The events-out delivery job (queue `mailadmin-events`): deliver what is due, for a few seconds.

A run takes due deliveries in small batches, each attempted side by side (`services.events.deliveries`),
until nothing is due, its budget (RUN_BUDGET_SECONDS) is spent or its worker is stopping (SIGTERM);
a batch takes about two receiver time-outs at worst, and the run asks for a next run when work is
left. So a burst of 100,000 events is many short runs, and the worker takes any waiting send slice
between two of them (the send queue comes first).
Queued by every committed event (`services.events.recording`) and by the scheduler's sweep.
"""

from __future__ import annotations

import time

from loguru import logger
from sqlalchemy.exc import SQLAlchemyError

from mailadmin.extensions import get_redis
from mailadmin.jobs import job_app_context
from mailadmin.jobs.send.endings import SHUTDOWN_REQUESTED
from mailadmin.queue.events import events_delivery_started, request_events_delivery
from mailadmin.queue.outages import Service, is_database_outage, outage_tracker
from mailadmin.services.events.deliveries import (
    ATTEMPTS_AT_ONCE,
    attempt_deliveries,
    claim_due_deliveries,
    due_deliveries_exist,
)

RUN_BUDGET_SECONDS = 10.0
# A batch is two rounds of attempts sent side by side: about two receiver time-outs at worst.
BATCH_SIZE = 2 * ATTEMPTS_AT_ONCE


def deliver_due_events(budget_seconds: float = RUN_BUDGET_SECONDS) -> int:
    """RQ job: attempt due deliveries for about `budget_seconds`; returns how many were attempted."""
    with job_app_context():
        events_delivery_started(get_redis())
        deadline = time.monotonic() + budget_seconds
        attempted = 0
        while time.monotonic() < deadline and not SHUTDOWN_REQUESTED.is_set():
            claimed = claim_due_deliveries(BATCH_SIZE)
            if not claimed:
                return attempted
            attempted += len(attempt_deliveries(claimed))
        request_events_delivery(get_redis())  # out of time with work left: the next run continues
        logger.bind(attempted=attempted).info("Events delivery run out of time; next run queued")
        return attempted


def sweep_due_events() -> bool:
    """The scheduler's sweep: queue a run when a delivery is due, so that an event whose request for a
    run was lost (Redis down at its commit), a retry whose time has come, or a claim whose run died is
    delivered. An unreachable database is reported once by the outage tracker (False: sweep again
    soon); Redis being down is raised to the scheduler's loop, which waits it out."""
    database = outage_tracker(Service.DATABASE)
    try:
        due = due_deliveries_exist()
    except SQLAlchemyError as exc:
        if not is_database_outage(exc):
            logger.bind(error_type=type(exc).__name__).error("Events sweep failed; retrying at the next sweep")
            return True
        database.failed(exc)
        return False
    database.succeeded()
    if due:
        request_events_delivery(get_redis())
    return True
