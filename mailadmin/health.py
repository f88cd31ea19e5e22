"""`GET /healthz`: is the database and Redis reachable? No login, no secrets."""

from __future__ import annotations

from flask import Blueprint, Flask, jsonify
from sqlalchemy import text

from mailadmin.extensions import csrf, db, get_redis
from mailadmin.jobs.resilience import Service, outage_tracker

bp = Blueprint("health", __name__)


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


@bp.route("/healthz")
def healthz():
    """Each part's state; when one is down, `down` names it ("database", "redis") and the status is 503."""
    status = {"db": check_database(), "redis": check_redis()}
    down = [name for key, name in (("db", "database"), ("redis", "redis")) if status[key] != "ok"]
    if not down:
        return jsonify(status), 200
    return jsonify({**status, "down": down}), 503


def init_app(app: Flask) -> None:
    csrf.exempt(bp)
    app.register_blueprint(bp)
