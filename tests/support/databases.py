"""Test databases: the shared one for the suite and throw-away ones for migration tests.

Under pytest-xdist (`-n N`) each worker process gets a database and a Redis index of its own, so
workers never empty each other's tables: PostgreSQL `<database>_gwK` (created here when missing),
the configured Redis index minus K (modulo 16), and under SQLite and the embedded redis-server
their own files and server anyway.
"""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from mailadmin.settings import _database_url

REDIS_DATABASES = 16  # redis-server's default `databases`


def xdist_worker() -> int | None:
    """K of this pytest-xdist worker (`gwK`), or None outside xdist."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "")
    return int(name[2:]) if name.startswith("gw") else None


@cache
def configured_database_url() -> str | None:
    """TEST_DATABASE_URL, else DATABASE_URL, normalised like the app does; None means SQLite.

    Under xdist, this worker's own PostgreSQL database (created when missing)."""
    raw = os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if not raw:
        return None
    url = _database_url(raw)
    worker = xdist_worker()
    if worker is None or not is_postgres(url):
        return url
    name = f"{make_url(url).database}_gw{worker}"
    admin_engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin_engine.connect() as conn:
        if conn.scalar(sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}) is None:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin_engine.dispose()
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def configured_redis_url() -> str | None:
    """TEST_REDIS_URL, else REDIS_URL; None means an embedded redis-server. Under xdist, this
    worker's own database index on that server."""
    url = os.environ.get("TEST_REDIS_URL") or os.environ.get("REDIS_URL")
    worker = xdist_worker()
    if not url or not worker:
        return url
    parts = urlsplit(url)
    index = int(parts.path.strip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{(index - worker) % REDIS_DATABASES}"))


def is_postgres(url: str) -> bool:
    return url.startswith("postgresql")


@contextmanager
def scratch_database(kind: str, tmp_path: Path):
    """A new, empty database of `kind` ('sqlite' or 'postgresql'), dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / f'scratch-{uuid.uuid4().hex}.sqlite3'}"
        return
    base = configured_database_url()
    if not base or not is_postgres(base):
        raise RuntimeError("no PostgreSQL configured")
    name = f"mailadmin_scratch_{uuid.uuid4().hex[:12]}"
    admin_engine = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin_engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin_engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin_engine.dispose()
