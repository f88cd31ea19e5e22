"""Is the database reachable? Is Redis? Shared by `/healthz` and the diagnosis (`mailadmin.ops`)."""

from __future__ import annotations

from sqlalchemy import text

from mailadmin.extensions import db, get_redis


def check_database() -> str:
    """"ok" or a short error class name (never the connection string)."""
    try:
        db.session.execute(text("SELECT 1"))
        return "ok"
    except Exception as exc:  # any driver error means "not healthy"; the class says which
        db.session.rollback()
        return f"error: {type(exc).__name__}"


def check_redis() -> str:
    """"ok" or a short error class name."""
    try:
        get_redis().ping()
        return "ok"
    except Exception as exc:  # redis-py raises several unrelated classes for "down"
        return f"error: {type(exc).__name__}"
