"""The `/metrics` route, and the write of the counts a web request made (webhooks, bounces)."""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, abort
from flask import request as flask_request
from loguru import logger

from mailadmin.counters import TALLY
from mailadmin.counters import flush as flush_counters
from mailadmin.errors.problems import problem_response
from mailadmin.extensions import get_redis, get_settings
from mailadmin.metrics.exposition import CONTENT_TYPE, render_metrics

bp = Blueprint("metrics", __name__)


def _bearer_token() -> str | None:
    header = flask_request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


@bp.get("/metrics")
def metrics() -> Response:
    """The Prometheus text exposition: 404 without a configured token, 401 without the right one."""
    expected = get_settings().metrics_token
    if not expected:
        abort(404)
    given = _bearer_token()
    if given is None or not hmac.compare_digest(given.encode(), expected.encode()):
        logger.bind(remote_addr=flask_request.remote_addr, token_given=given is not None).warning("Metrics scrape refused")
        return problem_response(401, "a valid bearer token is required (MAILER_METRICS_TOKEN)",
                                headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    return Response(render_metrics(), mimetype=None, content_type=CONTENT_TYPE,
                    headers={"Cache-Control": "no-store"})


@bp.after_app_request
def _write_counts(response: Response) -> Response:
    """What this request counted (a webhook, a bounce, a deferral) goes to Redis in one round trip;
    a request that counted nothing costs nothing."""
    if TALLY:
        flush_counters(get_redis())
    return response
