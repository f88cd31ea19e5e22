"""Is the database reachable? Is Redis? Shared by `/healthz` and the diagnosis (`mailadmin.ops`).

Each probe also tells this process's outage tracker (`queue.outages`), so an outage seen by a
health check is logged once when it starts and once when it ends, like everywhere else.
"""

from __future__ import annotations

from sqlalchemy import text

from mailadmin.extensions import db, get_redis
from mailadmin.queue.outages import Service, outage_tracker


def check_database() -> str:
    """"ok" or a short error class name (never the connection string)."""
    tracker = outage_tracker(Service.DATABASE)
    try:
        db.session.execute(text("SELECT 1"))
    except Exception as exc:  # any driver error means "not healthy"; the class says which
        db.session.rollback()
        tracker.failed(exc)
        return f"error: {type(exc).__name__}"
    tracker.succeeded()
    return "ok"


def check_redis() -> str:
    """"ok" or a short error class name."""
    tracker = outage_tracker(Service.REDIS)
    try:
        get_redis().ping()
    except Exception as exc:  # redis-py raises several unrelated classes for "down"
        tracker.failed(exc)
        return f"error: {type(exc).__name__}"
    tracker.succeeded()
    return "ok"
