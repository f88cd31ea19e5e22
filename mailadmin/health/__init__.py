"""Health: `GET /healthz` (views.py) and the probes it shares with the diagnosis (probes.py)."""

from __future__ import annotations

from flask import Flask

from mailadmin.extensions import csrf
from mailadmin.health.views import bp


def init_app(app: Flask) -> None:
    """Register /healthz (CSRF-exempt: load balancers call it)."""
    csrf.exempt(bp)
    app.register_blueprint(bp)
