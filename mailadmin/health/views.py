"""`GET /healthz`: is the database and Redis reachable? No login, no secrets."""

from __future__ import annotations

from flask import Blueprint

from mailadmin.health.probes import check_database, check_redis

bp = Blueprint("health", __name__)


@bp.route("/healthz")
def healthz():
    """200 with {"db": "ok", "redis": "ok"} when both answer, else 503 with `down` naming the
    parts that are down ("database", "redis")."""
    status = {"db": check_database(), "redis": check_redis()}
    down = [name for key, name in (("db", "database"), ("redis", "redis")) if status[key] != "ok"]
    if not down:
        return status, 200
    return {**status, "down": down}, 503
