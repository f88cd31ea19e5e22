"""The web process publishes the limits it runs with (`mailadmin.settings_in_effect`) with the requests
it serves: at most every 15 s, expiring 5 minutes after the last, withdrawn when the process exits."""

from __future__ import annotations

import atexit
import os
import time

from flask import Flask
from redis import Redis, RedisError

from mailadmin.extensions import get_redis, get_settings
from mailadmin.settings_in_effect import (
    WEB,
    WEB_PUBLICATION_INTERVAL_SECONDS,
    WEB_PUBLICATION_TTL_SECONDS,
    publish_settings,
    this_process_name,
    withdraw_settings,
)

# Per process (a gunicorn worker forked from a preloading master starts afresh: its pid differs).
_last = {"pid": 0, "at": 0.0}


def init_app(app: Flask) -> None:
    """Publish with requests, unless the app is a test app (set PUBLISH_SETTINGS_IN_EFFECT to decide)."""
    if app.config.get("PUBLISH_SETTINGS_IN_EFFECT", not app.testing):
        app.before_request(publish_when_due)


def publish_when_due() -> None:
    """Before a request: publish this process's limits when the last publication is 15 s old or more."""
    now, pid = time.monotonic(), os.getpid()
    first = _last["pid"] != pid
    if not first and now - _last["at"] < WEB_PUBLICATION_INTERVAL_SECONDS:
        return
    _last.update(pid=pid, at=now)
    connection, name = get_redis(), this_process_name()
    try:
        publish_settings(connection, WEB, name, get_settings(), WEB_PUBLICATION_TTL_SECONDS)
    except RedisError:
        return  # a request that needs Redis reports the outage itself; this one is only bookkeeping
    if first:
        atexit.register(_withdraw, connection, name)


def _withdraw(connection: Redis, name: str) -> None:
    try:
        withdraw_settings(connection, WEB, name)
    except RedisError:
        pass  # it expires by itself
