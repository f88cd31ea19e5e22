"""Every shared fixture of the suite, in one place: a real database (SQLite by default, PostgreSQL
with TEST_DATABASE_URL or DATABASE_URL), a real Redis (TEST_REDIS_URL/REDIS_URL, else an embedded
redis-server), a real SMTP server on loopback, users and logged-in clients per role, real worker
processes, a live server and a real browser. Nothing here is mocked.

Test data comes from `tests/factories.py`; helpers (waiting, forms, processes, the browser) from
`tests/support/`. Tests under `tests/e2e/` get the `e2e` marker (they start real processes).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from mailadmin import create_app
from mailadmin.devtools.redis_server import EmbeddedRedis
from mailadmin.extensions import db
from mailadmin.models import User
from mailadmin.models import user as user_model
from tests import factories
from tests.factories import ADMIN_EMAIL, MANAGER_EMAIL, OTHER_MANAGER_EMAIL, OWNER_EMAIL, PASSWORD
from tests.support import write_guard
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, BrowserThread
from tests.support.catalogue import ensure_compiled
from tests.support.databases import configured_database_url, configured_redis_url, is_postgres
from tests.support.jobs import preserved_rq_loggers
from tests.support.live_server import LiveServer
from tests.support.processes import EngineProcesses
from tests.support.system_packages import missing_system_package
from tests.support.web import AuthActions, logged_in_client

__all__ = ["PASSWORD", "AuthActions"]  # still importable from here by older test modules

E2E_DIR = Path(__file__).parent / "e2e"

# Cheap password hashes for the suite: the product's scrypt costs ~0.15 s a hash, and almost every
# test creates users and logs in. tests/test_auth.py checks the product's own setting.
user_model.PASSWORD_HASH_METHOD = "scrypt:1024:8:1"


# End-to-end modules whose tests time the engine (deadlines of seconds, messages per second taken
# at the SMTP server): CI runs them on their own, after the parallel runs (`-m engine_timed`), so a
# busy machine cannot stall the capture server and bunch its timestamps.
ENGINE_TIMED_MODULES = {
    "test_survival.py", "test_engine_workers.py", "test_engine_connections.py", "test_make_run_interrupted.py",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test under tests/e2e/ `e2e`, so `-m "not e2e"` selects the rest; and the engine's
    timed ones `engine_timed`."""
    for item in items:
        if E2E_DIR in Path(item.path).parents:
            item.add_marker(pytest.mark.e2e)
            if Path(item.path).name in ENGINE_TIMED_MODULES:
                item.add_marker(pytest.mark.engine_timed)


# --- services: database, Redis, SMTP ------------------------------------------------------------


@pytest.fixture(autouse=True)
def _writes_only_from_services():
    """Fail a test whose code wrote campaigns/recipients/campaign_queue outside mailadmin/services/."""
    yield from write_guard.guard()


@pytest.fixture(scope="session", autouse=True)
def _catalogues_compiled() -> None:
    """The Russian catalogue compiled (make does it at install; a bare pytest after a clone needs it too)."""
    ensure_compiled()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory) -> str:
    url = configured_database_url()
    if url:
        return url
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.sqlite3'}"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = configured_redis_url()
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


@pytest.fixture
def own_redis(app_env) -> Iterator[EmbeddedRedis]:
    """A redis-server of this test's own, used by the app (and its workers) instead of the suite's;
    the test may stop it. List it before `app` so the env override comes first."""
    with EmbeddedRedis() as server:
        app_env["REDIS_URL"] = server.url
        yield server


@pytest.fixture
def private_redis(own_redis) -> EmbeddedRedis:
    """`own_redis` under the name older tests use."""
    return own_redis


@pytest.fixture
def app_with_own_redis(own_redis, app) -> Flask:
    """`app` wired to `own_redis` (requested in this order so the env override comes first)."""
    return app


# --- the app --------------------------------------------------------------------------------------


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
    """Every table empty and every id sequence back at 1, as after a fresh migration.

    DELETE, not TRUNCATE, on PostgreSQL: a test leaves a few rows, and TRUNCATE's new files for
    every table cost ~70 ms a test. Only the sequences a test used are restarted.
    """
    deletes = [f"DELETE FROM {t.name}" for t in reversed(db.metadata.sorted_tables)]
    with db.engine.begin() as conn:
        if not is_postgres(str(db.engine.url)):
            for statement in deletes:
                conn.exec_driver_sql(statement)
            return
        # One round trip: psycopg sends a statement without parameters as a simple query.
        conn.exec_driver_sql("; ".join([*deletes, _RESTART_USED_SEQUENCES]))


_RESTART_USED_SEQUENCES = """DO $$ DECLARE sequence text; BEGIN
  FOR sequence IN SELECT quote_ident(sequencename) FROM pg_sequences
                  WHERE schemaname = current_schema() AND last_value IS NOT NULL LOOP
    EXECUTE 'ALTER SEQUENCE ' || sequence || ' RESTART';
  END LOOP;
END $$"""


@pytest.fixture
def app_env(base_env) -> dict[str, str]:
    """Per-test overrides go here (e.g. `app_env["MAILER_SMTP_MAX_PER_HOUR"] = "20"`) before `app` is used."""
    return dict(base_env)


@pytest.fixture
def engine_env(request, app_env) -> dict[str, str]:
    """`app_env` with the overrides a test's `@with_env(...)` mark gives (tests/support/env.py)."""
    app_env.update(getattr(request, "param", {}))
    return app_env


# Apps built so far, by their environment, with their config as built: building one (routes,
# blueprints, extensions) costs ~50 ms, and most tests use the same environment.
_apps: dict[frozenset, tuple[Flask, dict]] = {}


def _app_for(app_env: dict[str, str]) -> Flask:
    """The app for this environment, as freshly built: config and test client class restored."""
    key = frozenset(app_env.items())
    if key not in _apps:
        built = create_app({**app_env, "TESTING": True, "SETUP_LOGGING": False})
        _apps[key] = (built, dict(built.config))
    app, config = _apps[key]
    app.config.clear()
    app.config.update(config)
    app.test_client_class = None
    return app


@pytest.fixture
def app(_schema, app_env) -> Iterator[Flask]:
    app = _app_for(app_env)
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
def auth(client) -> AuthActions:
    return AuthActions(client)


@pytest.fixture(autouse=True)
def _rq_loggers_restored() -> Iterator[None]:
    """An in-process RQ worker reconfigures the `rq.*` loggers; undo it after every test."""
    with preserved_rq_loggers():
        yield


@pytest.fixture
def log_records() -> Iterator[list[dict]]:
    """Every loguru record emitted during the test (message + extra fields)."""
    from loguru import logger

    records: list[dict] = []
    sink_id = logger.add(lambda message: records.append(message.record), level="DEBUG", format="{message}")
    yield records
    logger.remove(sink_id)


# --- users and logged-in clients ------------------------------------------------------------------


@pytest.fixture
def make_user(app):
    """Create a user: make_user("m@example.com", role="manager")."""
    return factories.create_user


@pytest.fixture
def admin(make_user) -> User:
    """The admin (admin@example.com) who does things in admin tests."""
    return make_user(ADMIN_EMAIL, role="admin")


@pytest.fixture
def manager(make_user) -> User:
    return make_user(MANAGER_EMAIL, role="manager")


@pytest.fixture
def other_manager(make_user) -> User:
    return make_user(OTHER_MANAGER_EMAIL, role="manager")


@pytest.fixture
def owner(make_user) -> User:
    """The manager who owns the send engine's test campaigns (owner@example.com)."""
    return make_user(OWNER_EMAIL, role="manager")


@pytest.fixture
def admin_client(app, admin) -> FlaskClient:
    """A client logged in as the admin (requests in their own app context)."""
    return logged_in_client(app, ADMIN_EMAIL)


@pytest.fixture
def manager_client(app, manager) -> FlaskClient:
    return logged_in_client(app, MANAGER_EMAIL)


@pytest.fixture
def other_client(app, other_manager) -> FlaskClient:
    return logged_in_client(app, OTHER_MANAGER_EMAIL)


# --- real processes, a live server, a browser (the end-to-end tests') -----------------------------


@pytest.fixture
def engine_processes(app, app_env, tmp_path) -> Iterator[EngineProcesses]:
    """Real worker / scheduler processes for this test, all stopped at teardown (before the DB is emptied)."""
    processes = EngineProcesses(dict(app_env), tmp_path)
    try:
        yield processes
    finally:
        processes.stop_all()


@pytest.fixture
def live_server(app, app_env) -> Iterator[LiveServer]:
    """A second app instance (same database, Redis and SMTP as `app`) behind a real HTTP server."""
    served = create_app({**app_env, "SETUP_LOGGING": False})
    with LiveServer(served) as server:
        yield server
    with served.app_context():
        db.engine.dispose()


def _require_chromium() -> None:
    if not os.path.exists(CHROMIUM):
        missing_system_package("chromium", CHROMIUM)


@pytest.fixture(scope="session")
def browser():
    """Headless Debian Chromium driven by Playwright from the test's thread."""
    _require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    """A fresh page (own cookies) of `browser`."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture(scope="session")
def browser_thread() -> Iterator[BrowserThread]:
    """A headless Chromium in a thread of its own (see tests/support/browser.py)."""
    _require_chromium()
    browser = BrowserThread()
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture
def browser_page(browser_thread, live_server):
    """A fresh page (own cookies) on the live server; use it only through `browser_thread.call`."""
    page = browser_thread.new_page(live_server.url)
    yield page
    browser_thread.call(page.context.close)
