"""Unsubscribe links (views.py): `GET /u/<token>` confirms, `POST /u/<token>` unsubscribes (RFC 8058)."""

from __future__ import annotations

from flask import Flask

from mailadmin.extensions import csrf
from mailadmin.unsubscribe.views import bp


def init_app(app: Flask) -> None:
    """Register the unsubscribe pages (CSRF-exempt: mail providers POST without a token)."""
    csrf.exempt(bp)
    app.register_blueprint(bp)
