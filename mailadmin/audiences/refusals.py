"""How an audience page answers a refused action: a page 404s / 409s, a form redirects with the message."""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn, ParamSpec, TypeVar

from flask import abort, flash, redirect

from mailadmin.campaigns.views import refusal_status
from mailadmin.services.errors import ErrorKind, ServiceError

P = ParamSpec("P")
R = TypeVar("R")


def refused_page(error: ServiceError) -> NoReturn:
    """Abort a GET with the status of the refusal's kind (404 for a list the viewer may not see)."""
    abort(refusal_status(error), description=error.message)


def or_refused(call: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """`call(...)`'s answer, or the page aborted with its refusal (`refused_page`)."""
    try:
        return call(*args, **kwargs)
    except ServiceError as exc:
        refused_page(exc)


def back_with(message: str, back: str, category: str = "error"):
    """A POST's answer: back to `back` (303) with `message` flashed."""
    flash(message, category)
    return redirect(back, 303)


def refused_form(error: ServiceError, back: str):
    """A refused POST: 404 when the thing is not the viewer's, else back to `back` with the message."""
    if error.kind is ErrorKind.NOT_FOUND:
        abort(404)
    return back_with(error.message, back)
