"""Error pages: every failure a user can cause gets a page that says what was wrong; a program
calling a machine endpoint gets RFC 9457 problem details instead (`problems.py` decides which)."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request
from flask_wtf.csrf import CSRFError
from loguru import logger
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from mailadmin.errors.problems import problem_response, wants_problem_details
from mailadmin.extensions import get_settings

bp = Blueprint("errors", __name__)


@bp.app_errorhandler(CSRFError)
def csrf_error(error: CSRFError):
    """An expired or forged form: say so, and how to recover."""
    message = "The form has expired or was not sent by this site. Please reload the page and try again."
    return render_template("error.html", code=400, title="Form refused", message=message), 400


@bp.app_errorhandler(RequestEntityTooLarge)
def too_large(error: RequestEntityTooLarge):
    """A body over MAILER_MAX_UPLOAD_MB, refused before any of it is read or stored: 413 problem
    details for a program (a redirect would look delivered to a webhook's provider); a person's
    form post goes back to its form with the limit."""
    limit = get_settings().max_upload_mb
    if wants_problem_details():
        logger.bind(path=request.path, content_length=request.content_length, limit_mb=limit).warning(
            "Request body too large"
        )
        return problem_response(413, f"The request body is larger than {limit} MB. Nothing was stored.")
    if request.method != "POST":
        return http_error(error)
    flash(f"The upload is too large. Maximum: {limit} MB.", "error")
    return redirect(_form_page()), 303


def _form_page() -> str:
    """The page of the form that was posted: its own URL when it also answers GET, else the
    same-site page it was sent from (Referer), else home."""
    rule = request.url_rule
    if rule is not None and "GET" in (rule.methods or ()):
        return request.path
    referrer = urlsplit(request.referrer or "")
    # Only a path of this site: "//host" or "/\host" would be read as another site by a browser.
    if referrer.netloc == request.host and referrer.path.startswith("/") and referrer.path[1:2] not in ("/", "\\"):
        return referrer.path + (f"?{referrer.query}" if referrer.query else "")
    return "/"


@bp.app_errorhandler(HTTPException)
def http_error(error: HTTPException):
    """Any other HTTP error: problem details for programs and JSON clients, the error page for people."""
    if wants_problem_details():
        # Keep what the error adds for clients (Allow on a 405), not its HTML content type.
        headers = {name: value for name, value in error.get_headers() if name.lower() != "content-type"}
        return problem_response(error.code, error.description, title=error.name, headers=headers)
    return render_template("error.html", code=error.code, title=error.name, message=error.description), error.code
