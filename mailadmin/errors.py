"""Error pages: every failure a user can cause gets a page that says what was wrong."""

from __future__ import annotations

import time

from flask import Flask, flash, redirect, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from mailadmin.extensions import db, get_settings
from mailadmin.jobs.resilience import DATABASE_DOWN, REDIS_DOWN, Service, is_database_outage, outage_tracker
from mailadmin.limits.throttle import UNAVAILABLE_MESSAGE

# While a service is down, a request checks at most this often whether it is back.
OUTAGE_RECHECK_SECONDS = 1.0
RETRY_AFTER_SECONDS = 5


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
    if request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json":
        return {"error": "Service Unavailable", "code": 503, "message": UNAVAILABLE_MESSAGE}, 503, headers
    return render_template("unavailable.html", message=UNAVAILABLE_MESSAGE), 503, headers


def _note_recovered_services() -> None:
    """Before a request, while an outage is known: has the service come back? (at most once a second)"""
    from mailadmin.health import check_database, check_redis

    for service, check in ((Service.DATABASE, check_database), (Service.REDIS, check_redis)):
        tracker = outage_tracker(service)
        if tracker.down and time.monotonic() - getattr(tracker, "last_check", 0.0) >= OUTAGE_RECHECK_SECONDS:
            tracker.last_check = time.monotonic()
            check()


def init_app(app: Flask) -> None:
    for error_class in (*DATABASE_DOWN, *REDIS_DOWN):
        app.register_error_handler(error_class, service_unavailable)
    app.before_request(_note_recovered_services)

    @app.errorhandler(CSRFError)
    def csrf_error(error: CSRFError):
        message = "The form has expired or was not sent by this site. Please reload the page and try again."
        return render_template("error.html", code=400, title="Form refused", message=message), 400

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(error: RequestEntityTooLarge):
        limit = get_settings().max_upload_mb
        flash(f"The upload is too large. Maximum: {limit} MB.", "error")
        # Back to the form the upload came from; nothing already stored is touched.
        target = request.path if request.method == "POST" else "/"
        return redirect(target), 303

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        if request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json":
            return {"error": error.name, "code": error.code}, error.code
        return render_template("error.html", code=error.code, title=error.name, message=error.description), error.code
