"""Error pages (handlers.py): app-wide handlers registered through the `errors` blueprint;
outages of the database or Redis (outages.py): a 503 page."""

from __future__ import annotations

from flask import Flask

from mailadmin.errors import outages
from mailadmin.errors.handlers import bp


def init_app(app: Flask) -> None:
    """Register the error handlers for every route of the app."""
    app.register_blueprint(bp)
    outages.init_app(app)
