"""How an audience page answers a refused action: a page 404s / 409s, a form redirects with the message."""

from __future__ import annotations

from flask import abort, flash, redirect

from mailadmin.campaigns.views import refusal_status
from mailadmin.services.errors import ErrorKind, ServiceError


def refused_page(error: ServiceError):
    """Abort a GET with the status of the refusal's kind (404 for a list the viewer may not see)."""
    abort(refusal_status(error), description=error.message)


def refused_form(error: ServiceError, back: str):
    """A refused POST: 404 when the thing is not the viewer's, else back to `back` with the message."""
    if error.kind is ErrorKind.NOT_FOUND:
        abort(404)
    flash(error.message, "error")
    return redirect(back, 303)
