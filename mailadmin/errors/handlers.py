"""Error pages: every failure a user can cause gets a page that says what was wrong."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from mailadmin.extensions import get_settings

bp = Blueprint("errors", __name__)


@bp.app_errorhandler(CSRFError)
def csrf_error(error: CSRFError):
    """An expired or forged form: say so, and how to recover."""
    message = "The form has expired or was not sent by this site. Please reload the page and try again."
    return render_template("error.html", code=400, title="Form refused", message=message), 400


@bp.app_errorhandler(RequestEntityTooLarge)
def too_large(error: RequestEntityTooLarge):
    """An upload over MAILER_MAX_UPLOAD_MB: back to the form with the limit."""
    limit = get_settings().max_upload_mb
    flash(f"The upload is too large. Maximum: {limit} MB.", "error")
    # Back to the form the upload came from; nothing already stored is touched.
    target = request.path if request.method == "POST" else "/"
    return redirect(target), 303


@bp.app_errorhandler(HTTPException)
def http_error(error: HTTPException):
    """Any other HTTP error: JSON for the API and JSON clients, the error page for people."""
    if request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json":
        return {"error": error.name, "code": error.code}, error.code
    return render_template("error.html", code=error.code, title=error.name, message=error.description), error.code
