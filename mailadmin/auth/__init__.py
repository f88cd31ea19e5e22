"""Authentication: login/logout and password pages, the user loader and the access-rule decorators.

A session's user id is "{id}:{session_version}" (`User.get_id`): the loader refuses a session or
remember cookie whose version is not the user's current one, so raising the version ends them all.
"""

from __future__ import annotations

import hashlib

from flask import Flask, flash, redirect, request, url_for
from flask_babel import gettext
from flask_login import current_user

from mailadmin.extensions import db, login_manager
from mailadmin.i18n import N_

# Pages a user with a temporary password may still reach: the password page itself, logout, assets.
_OPEN_TO_TEMPORARY_PASSWORDS = {"auth.change_password", "auth.logout", "static", "health.healthz"}


def session_identifier() -> str:
    """What "strong" session protection binds a session to: the real client address (after ProxyFix,
    never a client-sent X-Forwarded-For) and the user agent."""
    agent = request.headers.get("User-Agent", "")
    return hashlib.sha512(f"{request.remote_addr}|{agent}".encode()).hexdigest()


def init_app(app: Flask) -> None:
    """Register the auth blueprint and configure Flask-Login."""
    from mailadmin.auth import tokens  # noqa: F401  (the account page's API tokens join `bp`)
    from mailadmin.auth.views import bp
    from mailadmin.models import User

    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = N_("Please log in to see this page.")
    login_manager.localize_callback = gettext  # Flask-Login flashes it in the viewer's language
    login_manager.login_message_category = "info"
    # Invalidate a session whose IP/user-agent hash changes (stolen cookie). Flask-Login's own hash
    # believes any X-Forwarded-For header; ours uses the address ProxyFix vouched for.
    login_manager.session_protection = "strong"
    login_manager._session_identifier_generator = session_identifier

    @login_manager.user_loader
    def load_user(session_id: str) -> User | None:
        user_id, _, version = session_id.partition(":")
        if not (user_id.isdigit() and version.isdigit()):
            return None  # a session from before session versions: log in again
        user = db.session.get(User, int(user_id))
        if user is None or not user.active or user.session_version != int(version):
            return None
        return user

    @app.before_request
    def require_password_change():
        if (
            current_user.is_authenticated
            and current_user.must_change_password
            and request.endpoint not in _OPEN_TO_TEMPORARY_PASSWORDS
        ):
            flash(gettext("Your password was reset by an admin: choose a new one to continue."), "warning")
            return redirect(url_for("auth.change_password"))
        return None

    app.register_blueprint(bp)
