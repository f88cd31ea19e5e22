"""Shared fixtures: a real database (SQLite by default, PostgreSQL with TEST_DATABASE_URL or
DATABASE_URL), a real Redis (REDIS_URL/TEST_REDIS_URL, else an embedded redis-server) and a
real SMTP server on loopback. Nothing here is mocked."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from mailadmin import create_app
from mailadmin.devtools.redis_server import EmbeddedRedis
from mailadmin.extensions import db
from tests.support import write_guard
from tests.support.databases import configured_database_url, is_postgres

PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def _writes_only_from_services():
    """Fail a test whose code wrote campaigns/recipients/campaign_queue outside mailadmin/services/."""
    yield from write_guard.guard()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory) -> str:
    url = configured_database_url()
    if url:
        return url
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.sqlite3'}"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = os.environ.get("TEST_REDIS_URL") or os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    with EmbeddedRedis() as server:
        yield server.url


@pytest.fixture(scope="session")
def smtp_server():
    from mailadmin.devtools.smtp_capture import CaptureSMTP

    server = CaptureSMTP()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def smtp(smtp_server):
    """The loopback SMTP server, emptied and answering 250 at the start of each test."""
    smtp_server.reset()
    yield smtp_server
    smtp_server.reset()


@pytest.fixture(scope="session")
def base_env(database_url, redis_url, smtp_server) -> dict[str, str]:
    """Environment variables every test app and worker process gets."""
    return {
        "APP_ENV": "development",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "SMTP_URL": smtp_server.url,
        "SMTP_TIMEOUT_SECONDS": "5",
        "SECRET_KEY": "test-secret-key-" + "x" * 32,
        "MAILER_LOG_HASH_SALT": "test-salt",
        "MAIL_FROM": "News <news@mailadmin.test>",
        "PUBLIC_URL": "http://mailadmin.test",
        "LOG_FORMAT": "json",
    }


@pytest.fixture(scope="session")
def _schema(base_env) -> None:
    """Migrate the suite's database to head once (the migrations are what production runs)."""
    app = create_app({**base_env, "SETUP_LOGGING": False})
    with app.app_context():
        from flask_migrate import upgrade

        db.drop_all()
        with db.engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE IF EXISTS alembic_version"))
        upgrade()
        db.engine.dispose()


def _empty_tables() -> None:
    tables = [t.name for t in reversed(db.metadata.sorted_tables)]
    with db.engine.begin() as conn:
        if is_postgres(str(db.engine.url)):
            conn.execute(sa.text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for name in tables:
                conn.execute(sa.text(f"DELETE FROM {name}"))


@pytest.fixture
def app_env(base_env) -> dict[str, str]:
    """Per-test overrides go here (e.g. `app_env["MAILER_SMTP_MAX_PER_HOUR"] = "20"`) before `app` is used."""
    return dict(base_env)


@pytest.fixture
def app(_schema, app_env) -> Iterator[Flask]:
    app = create_app({**app_env, "TESTING": True, "SETUP_LOGGING": False})
    with app.app_context():
        _empty_tables()
        redis.Redis.from_url(app_env["REDIS_URL"]).flushdb()
        yield app
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def make_user(app):
    """Create a user: make_user("m@example.com", role="manager")."""
    from mailadmin.services.users import create_user

    def factory(email: str = "manager@example.com", role: str = "manager", password: str = PASSWORD):
        return create_user(email, password, role)

    return factory


class AuthActions:
    def __init__(self, client: FlaskClient) -> None:
        self._client = client

    def login(self, email: str = "manager@example.com", password: str = PASSWORD, **kwargs):
        """Log in through the real form, CSRF token included."""
        from tests.support.forms import csrf_token_from

        page = self._client.get("/login")
        token = csrf_token_from(page.get_data(as_text=True))
        return self._client.post(
            "/login", data={"email": email, "password": password, "csrf_token": token}, **kwargs
        )

    def logout(self):
        from tests.support.forms import csrf_token_from, path_for

        token = csrf_token_from(self._client.get(path_for("campaigns.index")).get_data(as_text=True))
        return self._client.post("/logout", data={"csrf_token": token})


@pytest.fixture
def auth(client) -> AuthActions:
    return AuthActions(client)
