"""`GET /healthz`: is the database and Redis reachable? No login, no secrets."""

from __future__ import annotations

from flask import Blueprint

from mailadmin.health.probes import check_database, check_redis

bp = Blueprint("health", __name__)


@bp.route("/healthz")
def healthz():
    """200 with {"db": "ok", "redis": "ok"} when both answer, else 503 naming what failed."""
    status = {"db": check_database(), "redis": check_redis()}
    healthy = all(value == "ok" for value in status.values())
    return status, 200 if healthy else 503
