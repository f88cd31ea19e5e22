"""The admins' pages: campaign controls, the global switch, users, audit log, operations, suppression list,
events out (endpoints and their deliveries)."""

from __future__ import annotations

from flask import Flask, has_request_context
from flask_login import current_user
from loguru import logger
from sqlalchemy.exc import SQLAlchemyError

from mailadmin.admin.links import campaign_url
from mailadmin.extensions import db
from mailadmin.services.sending_switch import sending_paused


def _banner_sending_paused() -> bool:
    """The global switch for the banner; a database error must not turn every page (and the error page) into a 500."""
    try:
        return sending_paused()
    except SQLAlchemyError as exc:
        db.session.rollback()
        logger.bind(error_class=type(exc).__name__).warning("Could not read the global sending switch for the banner")
        return False


def init_app(app: Flask) -> None:
    """Register the admin blueprint; every template gets `sending_paused` and `campaign_url()`."""
    from mailadmin.admin import events, operations, suppressions  # noqa: F401  (these modules add their routes to bp)
    from mailadmin.admin.views import bp

    app.register_blueprint(bp, url_prefix="/admin")

    @app.context_processor
    def admin_context() -> dict:
        # Logged-in users only: the login page needs no database query and tells outsiders nothing.
        paused = has_request_context() and current_user.is_authenticated and _banner_sending_paused()
        return {"sending_paused": paused}

    # Globals, not context: macros imported without context (admin/_macros.html) use them too.
    from mailadmin.admin.forms import REASON_WORDS

    app.jinja_env.globals.update(campaign_url=campaign_url, suppression_reason_words=REASON_WORDS)
