"""Authentication: login/logout pages, the user loader and the access-rule decorators."""

from __future__ import annotations

from flask import Flask

from mailadmin.extensions import db, login_manager


def init_app(app: Flask) -> None:
    """Register the auth blueprint and configure Flask-Login."""
    from mailadmin.auth.views import bp
    from mailadmin.models import User

    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please log in to see this page."
    login_manager.login_message_category = "info"
    # Invalidate a session whose IP/user-agent hash changes (stolen cookie).
    login_manager.session_protection = "strong"

    @login_manager.user_loader
    def load_user(user_id: str) -> User | None:
        user = db.session.get(User, int(user_id))
        return user if user and user.active else None

    app.register_blueprint(bp)
