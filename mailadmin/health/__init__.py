"""Health: `GET /healthz` (views.py), the probes it shares with the diagnosis (probes.py), and the
limits this web process runs with, published with its requests (publication.py)."""

from __future__ import annotations

from flask import Flask

from mailadmin.extensions import csrf
from mailadmin.health import publication
from mailadmin.health.views import bp


def init_app(app: Flask) -> None:
    """Register /healthz (CSRF-exempt: load balancers call it) and the settings publication."""
    csrf.exempt(bp)
    app.register_blueprint(bp)
    publication.init_app(app)
