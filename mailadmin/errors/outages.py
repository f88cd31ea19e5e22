"""The web process during a database or Redis outage: a clear 503, never a 500 traceback.

A request that hits an unreachable database or Redis gets "Service temporarily unavailable.
Please try again later." (RFC 9457 problem details for machine endpoints and JSON clients) with
Retry-After; the outage is logged once per process by the outage tracker (`queue.outages`), and a
later request notices when the service is back (at most one probe a second while an outage is known).
"""

from __future__ import annotations

import time

from flask import Flask, render_template
from flask_babel import gettext

from mailadmin.errors.problems import problem_response, wants_problem_details
from mailadmin.extensions import db
from mailadmin.health.probes import check_database, check_redis
from mailadmin.limits.throttle import UNAVAILABLE_MESSAGE
from mailadmin.queue.outages import DATABASE_DOWN, REDIS_DOWN, Service, is_database_outage, outage_tracker

# While a service is down, a request checks at most this often whether it is back.
OUTAGE_RECHECK_SECONDS = 1.0
RETRY_AFTER_SECONDS = 5
_last_check: dict[Service, float] = {}


def service_unavailable(error: Exception):
    """A database or Redis outage during a request: a clear 503, one outage record per process."""
    service = Service.DATABASE if is_database_outage(error) else Service.REDIS
    outage_tracker(service).failed(error)
    if service is Service.DATABASE:
        try:
            db.session.rollback()
        except Exception:  # the connection is gone; the session is discarded at teardown anyway
            pass
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    if wants_problem_details():
        return problem_response(503, UNAVAILABLE_MESSAGE, headers=headers)
    # The same sentence as the catalogue's (limits/throttle.py marks it): in the browser's language.
    return render_template("unavailable.html", message=gettext(UNAVAILABLE_MESSAGE)), 503, headers


def note_recovered_services() -> None:
    """Before a request, while an outage is known: has the service come back?"""
    for service, check in ((Service.DATABASE, check_database), (Service.REDIS, check_redis)):
        if outage_tracker(service).down and time.monotonic() - _last_check.get(service, 0.0) >= OUTAGE_RECHECK_SECONDS:
            _last_check[service] = time.monotonic()
            check()


def init_app(app: Flask) -> None:
    """Answer outages with the 503 page, and notice their end."""
    for error_class in (*DATABASE_DOWN, *REDIS_DOWN):
        app.register_error_handler(error_class, service_unavailable)
    app.before_request(note_recovered_services)
