"""Test databases: the shared one for the suite and throw-away ones for migration tests."""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from mailadmin.settings import _database_url


def configured_database_url() -> str | None:
    """TEST_DATABASE_URL, else DATABASE_URL, normalised like the app does; None means SQLite."""
    raw = os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL")
    return _database_url(raw) if raw else None


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
