"""`/metrics`: the Prometheus text endpoint of the web process (SPEC "Metrics").

- `views.py`: the route behind `Authorization: Bearer $MAILER_METRICS_TOKEN` (unset: 404; missing or
  wrong: 401; RFC 9457 problem details), and the write of what a web request counted;
- `exposition.py`: the counters the processes keep in Redis (`mailadmin.counters`) and the gauges,
  as prometheus_client families, rendered in the text format;
- `gauges.py`: the gauges, read at scrape time with bounded queries (one grouped query over the
  campaigns, a handful of Redis reads).
"""

from __future__ import annotations

from flask import Flask

from mailadmin.extensions import csrf


def init_app(app: Flask) -> None:
    """Register the metrics blueprint (a GET endpoint for programs: no CSRF)."""
    from mailadmin.metrics.views import bp

    csrf.exempt(bp)
    app.register_blueprint(bp)
