"""`GET /healthz`: is the database and Redis reachable? No login, no secrets."""

from __future__ import annotations

from flask import Blueprint, Flask, jsonify
from sqlalchemy import text

from mailadmin.extensions import csrf, db, get_redis

bp = Blueprint("health", __name__)


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


@bp.route("/healthz")
def healthz():
    status = {"db": check_database(), "redis": check_redis()}
    healthy = all(value == "ok" for value in status.values())
    return jsonify(status), 200 if healthy else 503


def init_app(app: Flask) -> None:
    csrf.exempt(bp)
    app.register_blueprint(bp)
