"""Error pages: every failure a user can cause gets a page that says what was wrong."""

from __future__ import annotations

from flask import Flask, flash, redirect, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from mailadmin.extensions import get_settings


def init_app(app: Flask) -> None:
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
