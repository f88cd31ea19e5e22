"""Extension objects (db, migrate, login_manager, csrf, babel), created unbound here and bound to the app in `create_app()`.

Redis is reached through an accessor so that nothing connects at import time; RQ queues and
rq-scheduler are built in `mailadmin.queue.dispatch` with `connection=` passed explicitly (RQ 3).
"""

from __future__ import annotations

import redis
from flask import Flask, current_app
from flask_babel import Babel
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

from mailadmin.settings import Settings

# Stable constraint names so that Alembic migrations are identical on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
login_manager = LoginManager()
csrf = CSRFProtect()
# Languages (mailadmin/i18n.py binds it with the locale selector).
babel = Babel()

# Every RQ queue the product uses, in the order a worker takes jobs from them. The send loop has its
# own queue so that a backlog of campaign slices is visible at a glance in `rq info`; events out have
# theirs, last, so that a burst of events never holds back a send slice (a worker takes the next
# slice before the next events run, and a run gives its worker back within seconds).
SEND_QUEUE = "mailadmin-send"
DEFAULT_QUEUE = "mailadmin-default"
EVENTS_QUEUE = "mailadmin-events"
QUEUE_NAMES = (SEND_QUEUE, DEFAULT_QUEUE, EVENTS_QUEUE)

# Redis socket timeouts: short, so that a dead Redis refuses a throttled action
# (fail-closed) or lets a send through (fail-open) quickly instead of hanging a request.
REDIS_TIMEOUT_SECONDS = 2.0


def init_redis(app: Flask) -> None:
    """Create the app's Redis client (lazy: the first command connects)."""
    settings: Settings = app.config["SETTINGS"]
    app.extensions["mailadmin.redis"] = redis.Redis.from_url(
        settings.redis_url,
        socket_timeout=REDIS_TIMEOUT_SECONDS,
        socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        health_check_interval=30,
        # redis-py's default (10 retries with backoff) turns a dead Redis into a multi-second
        # stall per call; one immediate retry covers a dropped idle connection.
        retry=Retry(NoBackoff(), 1),
    )


def get_settings() -> Settings:
    """The validated settings of the current app."""
    return current_app.config["SETTINGS"]


def get_redis() -> redis.Redis:
    """The current app's Redis client."""
    return current_app.extensions["mailadmin.redis"]

