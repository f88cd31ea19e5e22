"""The managers' pages: campaigns, recipients, test emails, start, progress."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from mailadmin.campaigns.views import bp

    app.register_blueprint(bp)
