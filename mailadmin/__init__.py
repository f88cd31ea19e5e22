"""mailadmin: bulk email campaigns through an SMTP account with an hourly quota.

`create_app()` is the only place where the web app is assembled; every subsystem
exposes `init_app(app)` (or an `init_*` function) called from here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Engine

from mailadmin.extensions import csrf, db, init_redis, migrate
from mailadmin.i18n import init_i18n
from mailadmin.settings import PROJECT_ROOT, Settings, load_settings


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the Flask app. `config` overrides environment variables (by their names)
    and Flask config keys (e.g. TESTING) for tests and tools."""
    config = dict(config or {})
    env = {**os.environ, **{k: str(v) for k, v in config.items() if isinstance(v, (str, int, bool))}}
    settings = load_settings(env)

    app = Flask(__name__, instance_path=str(PROJECT_ROOT / "instance"))
    app.config.update({k: v for k, v in config.items() if k.isupper()})
    configure_flask(app, settings)
    if not event.contains(Engine, "connect", _sqlite_pragmas):
        event.listen(Engine, "connect", _sqlite_pragmas)

    if app.config.get("SETUP_LOGGING", True):
        from mailadmin.logging import init_request_logging, setup_logging

        setup_logging(settings)
        init_request_logging(app)

    from mailadmin.auth import headers

    headers.init_app(app, settings)
    db.init_app(app)
    migrate.init_app(app, db, directory=str(PROJECT_ROOT / "migrations"))
    csrf.init_app(app)
    init_i18n(app)
    init_redis(app)

    _register_subsystems(app)
    return app


def _register_subsystems(app: Flask) -> None:
    """Every subsystem's `init_app`, in one list: blueprints, error pages, the CLI."""
    from mailadmin import models  # noqa: F401  (registers the tables with the metadata)
    from mailadmin.admin import init_app as init_admin
    from mailadmin.api import init_app as init_api
    from mailadmin.audiences import init_app as init_audiences
    from mailadmin.audiences.segments import init_app as init_segments
    from mailadmin.auth import init_app as init_auth
    from mailadmin.auth.language import init_app as init_language  # its route joins auth's bp before init_auth
    from mailadmin.campaigns import init_app as init_campaigns
    from mailadmin.cli import init_app as init_cli
    from mailadmin.errors import init_app as init_errors
    from mailadmin.health import init_app as init_health
    from mailadmin.metrics import init_app as init_metrics
    from mailadmin.subscribe import init_app as init_subscribe
    from mailadmin.unsubscribe import init_app as init_unsubscribe
    from mailadmin.webhooks import init_app as init_webhooks

    init_auth(app)
    init_language(app)
    init_errors(app)
    init_health(app)
    init_campaigns(app)
    init_audiences(app)
    init_admin(app)
    init_segments(app)
    init_cli(app)
    init_unsubscribe(app)
    init_subscribe(app)
    init_webhooks(app)
    init_metrics(app)
    init_api(app)


def configure_flask(app: Flask, settings: Settings) -> None:
    """Translate the validated settings into Flask and extension config."""
    if settings.database_url.startswith("sqlite:///"):
        os.makedirs(os.path.dirname(settings.database_url[len("sqlite:///") :]) or ".", exist_ok=True)
    app.config.update(
        SETTINGS=settings,
        SECRET_KEY=settings.secret_key,
        SQLALCHEMY_DATABASE_URI=settings.database_url,
        SQLALCHEMY_ENGINE_OPTIONS={"pool_pre_ping": True},
        MAX_CONTENT_LENGTH=settings.max_upload_mb * 1024 * 1024,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.is_production,
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SECURE=settings.is_production,
        REMEMBER_COOKIE_SAMESITE="Lax",
        # 30 days rather than Flask-Login's 365; ending sessions (session version) ends these too.
        REMEMBER_COOKIE_DURATION=timedelta(days=30),
        # CSRF tokens live as long as the session; an expired form is the most common
        # false alarm in admin tools left open all day.
        WTF_CSRF_TIME_LIMIT=None,
        PREFERRED_URL_SCHEME="https" if settings.is_production else "http",
    )


def _sqlite_pragmas(dbapi_connection, connection_record) -> None:
    """SQLite: WAL and a busy timeout let the web process and several workers share one file."""
    module = type(dbapi_connection).__module__
    if not module.startswith("sqlite3"):
        return
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
