"""Provider webhooks for bounces and complaints: Amazon SES (through SNS), SendGrid, Postmark, Mailgun.

CSRF-exempt (providers cannot carry a token); every route proves the sender first (`verify.py`)
and only then reads the body (`providers.py`). A provider whose secret is not configured has no
route (404).
"""

from __future__ import annotations

from flask import Flask

from mailadmin.extensions import csrf


def init_app(app: Flask) -> None:
    """Register the webhooks blueprint (CSRF-exempt)."""
    from mailadmin.webhooks.views import bp

    csrf.exempt(bp)
    app.register_blueprint(bp)
