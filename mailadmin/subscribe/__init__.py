"""A list's public subscription form, the double opt-in confirmation link, and the owner's publish page (views.py)."""

from __future__ import annotations

from flask import Flask

from mailadmin.extensions import csrf
from mailadmin.subscribe.views import bp, confirm, sign_up


def init_app(app: Flask) -> None:
    """Register the pages; the sign-up and the confirmation are CSRF-exempt (they come from mailboxes and
    other sites, with no session); the owner's publish form keeps its CSRF check."""
    csrf.exempt(sign_up)
    csrf.exempt(confirm)
    app.register_blueprint(bp)
