"""One small decorator per access rule, applied on the route."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from flask import abort
from flask_login import current_user, login_required

__all__ = ["admin_required", "login_required"]


def admin_required(view: Callable) -> Callable:
    """Only admins; anyone else logged in gets 403, anonymous users go to the login page."""

    @wraps(view)
    @login_required
    def wrapped(*args, **kwargs):
        if not current_user.is_admin:
            abort(403)
        return view(*args, **kwargs)

    return wrapped
