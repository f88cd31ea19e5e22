"""The admins' pages: campaign controls, the global switch, users, audit log, operations."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from mailadmin.admin.views import bp

    app.register_blueprint(bp, url_prefix="/admin")
