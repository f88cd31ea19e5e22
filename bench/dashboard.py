"""Dashboard benchmarks on PostgreSQL, one JSON line each:

- {"bench": "dashboard", ...}: median time of the campaign list and of a campaign page with
  1,000 campaigns and 1,000,000 recipients (goal: < 150 ms each), against a baseline request
  measured in the same run: a logged-in page that only runs `SELECT 1`;
- {"bench": "import", ...}: rows/s of importing a 10,000-row CSV through the import service,
  against a bare bulk INSERT of the same rows (no parsing, no validation) in the same run.

Data goes into a scratch database (created and dropped here) and is bulk-loaded server-side
with INSERT ... SELECT generate_series. The PostgreSQL server is BENCH_DATABASE_URL, else
TEST_DATABASE_URL / DATABASE_URL, else postgresql://postgres@127.0.0.1:5432/test.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

CAMPAIGNS = 1000
RECIPIENTS = 1_000_000
BIG_CAMPAIGN_RECIPIENTS = 10_000  # campaign 1 is as large as a campaign may be
MANAGERS = 10
IMPORT_ROWS = 10_000
REQUESTS = 25
WARMUP = 3
GOAL_MS = 150
DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/test"
PASSWORD = "bench password 123"

LOAD_SQL = [
    # Campaigns: a mix of every status; counters are filled from the recipients below.
    """
    INSERT INTO campaigns (id, owner_id, name, subject, body_text, status, finished_with_errors,
                           recipients_total, sent_count, failed_count, skipped_count, unknown_count,
                           created_at, updated_at, started_at)
    SELECT g, 2 + (g % :managers), 'Campaign ' || g || ' <b>news</b>', 'News for {{ name }}',
           'Hello {{ name }}', (ARRAY['finished','sending','deferred','paused','queued','draft','cancelled'])[1 + g % 7],
           (g % 14 = 0), 0, 0, 0, 0, 0,
           now() - (g || ' hours')::interval, now(), now() - (g || ' hours')::interval + interval '5 minutes'
    FROM generate_series(1, :campaigns) AS g
    """,
    "SELECT setval(pg_get_serial_sequence('campaigns', 'id'), :campaigns)",
    # Recipients: campaign 1 gets the largest allowed size, the others share the rest.
    """
    INSERT INTO recipients (campaign_id, email, name, status, attempts, smtp_code, last_error, sent_at, updated_at)
    SELECT c, 'user' || n || '@example' || (n % 97) || '.com', 'User ' || n,
           CASE WHEN n % 50 = 0 THEN 'failed' WHEN n % 10 < 7 THEN 'sent' WHEN n % 10 = 7 THEN 'skipped'
                ELSE 'pending' END,
           CASE WHEN n % 10 < 7 THEN 1 ELSE 0 END,
           CASE WHEN n % 50 = 0 THEN 550 END,
           CASE WHEN n % 50 = 0 THEN 'SMTP 550 at RCPT TO: 5.1.1 <recipient> Mailbox unavailable' END,
           CASE WHEN n % 10 < 7 AND n % 50 <> 0 THEN now() - ((n % 48) || ' hours')::interval END,
           now() - ((n % 48) || ' hours')::interval
    FROM (SELECT n, CASE WHEN n <= :big THEN 1 ELSE 2 + (n - :big - 1) % (:campaigns - 1) END AS c
          FROM generate_series(1, :recipients) AS n) AS s
    """,
    """
    UPDATE campaigns SET
        recipients_total = t.total, sent_count = t.sent, failed_count = t.failed, skipped_count = t.skipped
    FROM (SELECT campaign_id, count(*) AS total,
                 count(*) FILTER (WHERE status = 'sent') AS sent,
                 count(*) FILTER (WHERE status = 'failed') AS failed,
                 count(*) FILTER (WHERE status = 'skipped') AS skipped
          FROM recipients GROUP BY campaign_id) AS t
    WHERE campaigns.id = t.campaign_id
    """,
    """
    INSERT INTO campaign_queue (campaign_id, defer_reason, deferred_until, consecutive_transient_errors,
                                created_at, updated_at)
    SELECT id, CASE status WHEN 'deferred' THEN 'rate_limit' WHEN 'paused' THEN 'admin_pause' END,
           CASE status WHEN 'deferred' THEN now() + interval '20 minutes' END, 0, now(), now()
    FROM campaigns WHERE status <> 'draft'
    """,
    "ANALYZE",
]


def _server_url() -> str:
    from tests.support.databases import configured_database_url

    return os.environ.get("BENCH_DATABASE_URL") or configured_database_url() or DEFAULT_SERVER


def postgres_or_skip(*benches: str) -> str | None:
    """The PostgreSQL server the benchmarks measure on (set as TEST_DATABASE_URL: where
    scratch_database() creates its database); None, after one "skipped" line per name in `benches`,
    when it cannot be reached."""
    from tests.support import databases

    server = _server_url()
    os.environ["TEST_DATABASE_URL"] = server
    try:
        sa.create_engine(databases._database_url(server)).connect().close()
    except Exception as exc:  # no PostgreSQL here: say so in the benches' own lines
        for name in benches:
            print(json.dumps({"bench": name, "skipped": f"PostgreSQL unreachable: {type(exc).__name__}"}), flush=True)
        return None
    return server


def _timed_ms(call: Callable[[], object], requests: int = REQUESTS) -> list[float]:
    """Each of `requests` calls' time in milliseconds, after WARMUP untimed ones."""
    for _ in range(WARMUP):
        call()
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return times


def _median_ms(call: Callable[[], object], requests: int = REQUESTS) -> float:
    return round(statistics.median(_timed_ms(call, requests)), 2)


def _get(client, url: str) -> Callable[[], object]:
    def call() -> object:
        response = client.get(url)
        if response.status_code != 200:
            raise RuntimeError(f"GET {url} answered {response.status_code}")
        response.get_data()  # streamed bodies are produced here
        return response

    return call


def _login(client, email: str) -> None:
    from tests.support.forms import csrf_token_from

    token = csrf_token_from(client.get("/login").get_data(as_text=True))
    response = client.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": token})
    if response.status_code != 302:
        raise RuntimeError(f"bench login failed with {response.status_code}")


def _bench_app(database_url: str, redis_url: str):
    from flask import Flask
    from flask_login import login_required

    from mailadmin import create_app
    from mailadmin.extensions import db

    app: Flask = create_app(
        {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "SETUP_LOGGING": False, "APP_ENV": "development"}
    )

    @login_required
    def select_one() -> str:
        db.session.execute(sa.text("SELECT 1"))
        return "ok"

    # The baseline: the same login, session and user loading, one round trip to the database.
    app.add_url_rule("/_bench/select-1", "bench_select_one", select_one)
    return app


def _load(app) -> float:
    from flask_migrate import upgrade

    from mailadmin.extensions import db
    from tests.factories import create_user

    started = time.perf_counter()
    with app.app_context():
        upgrade()
        create_user("admin@bench.example.com", "admin", PASSWORD)
        for n in range(MANAGERS):
            create_user(f"manager{n}@bench.example.com", "manager", PASSWORD)
        params = {"managers": MANAGERS, "campaigns": CAMPAIGNS, "recipients": RECIPIENTS, "big": BIG_CAMPAIGN_RECIPIENTS}
        with db.engine.begin() as conn:
            for statement in LOAD_SQL:
                conn.execute(sa.text(statement), {k: v for k, v in params.items() if f":{k}" in statement})
    return round(time.perf_counter() - started, 1)


def bench_dashboard(app) -> dict:
    """Medians of the list and campaign pages (admin and manager) against the SELECT 1 baseline."""
    admin = app.test_client()
    manager = app.test_client()
    # No app context around the requests: each gets its own, as in production (`g` holds the user).
    _login(admin, "admin@bench.example.com")
    _login(manager, "manager0@bench.example.com")  # owner of campaigns 10, 20, ... (owner_id 2)
    result = {
        "bench": "dashboard",
        "database": "postgresql",
        "campaigns": CAMPAIGNS,
        "recipients": RECIPIENTS,
        "campaign_page_recipients": BIG_CAMPAIGN_RECIPIENTS,
        "requests": REQUESTS,
        "baseline_select1_ms": _median_ms(_get(admin, "/_bench/select-1")),
        "list_admin_ms": _median_ms(_get(admin, "/")),
        "list_admin_page_20_ms": _median_ms(_get(admin, "/?page=20")),
        "list_manager_ms": _median_ms(_get(manager, "/")),
        "list_filtered_ms": _median_ms(_get(admin, "/?status=sending")),
        "campaign_page_ms": _median_ms(_get(admin, "/campaigns/1")),
        "campaign_page_search_ms": _median_ms(_get(admin, "/campaigns/1?q=user77&status=sent")),
        "progress_json_ms": _median_ms(_get(admin, "/campaigns/1/progress.json")),
        "export_csv_10k_ms": _median_ms(_get(admin, "/campaigns/1/results.csv"), requests=5),
        "goal_ms": GOAL_MS,
    }
    result["list_vs_baseline"] = round(result["list_admin_ms"] / result["baseline_select1_ms"], 1)
    result["campaign_page_vs_baseline"] = round(result["campaign_page_ms"] / result["baseline_select1_ms"], 1)
    result["meets_goal"] = max(result["list_admin_ms"], result["campaign_page_ms"]) < GOAL_MS
    return result


def bench_import(app) -> dict:
    """Rows/s of a 10,000-row CSV import against a bare bulk INSERT of the same rows."""
    from sqlalchemy import insert

    from mailadmin.extensions import db
    from mailadmin.models import Recipient, User
    from mailadmin.models.types import utcnow
    from mailadmin.services.recipients import import_recipients
    from tests.factories import make_draft

    rows = [(f"import{n}@example{n % 13}.org", f"Person {n}", f"Town {n % 40}") for n in range(IMPORT_ROWS)]
    data = ("email,name,city\n" + "\n".join(",".join(row) for row in rows) + "\n").encode()
    with app.app_context():
        owner = db.session.scalar(sa.select(User).where(User.email == "manager1@bench.example.com"))
        target = make_draft(owner, "Import bench", "Hi {{ name }}", "Hello")
        started = time.perf_counter()
        summary = import_recipients(target, data)
        elapsed = time.perf_counter() - started
        if summary.added != IMPORT_ROWS:
            raise RuntimeError(f"import bench added {summary.added} rows, expected {IMPORT_ROWS}")

        baseline_target = make_draft(owner, "Import baseline", "Hi", "Hello")
        now = utcnow()
        values = [
            {"campaign_id": baseline_target.id, "email": email, "name": name, "fields": {"city": city},
             "status": "pending", "attempts": 0, "updated_at": now}
            for email, name, city in rows
        ]
        started = time.perf_counter()
        db.session.execute(insert(Recipient), values)
        db.session.commit()
        baseline = time.perf_counter() - started
    return {
        "bench": "import",
        "database": "postgresql",
        "rows": IMPORT_ROWS,
        "csv_bytes": len(data),
        "seconds": round(elapsed, 3),
        "rows_per_s": round(IMPORT_ROWS / elapsed),
        "baseline_bulk_insert_rows_per_s": round(IMPORT_ROWS / baseline),
        "vs_baseline": round(baseline / elapsed, 2),
    }


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from mailadmin.devtools.redis_server import EmbeddedRedis
    from tests.support import databases

    if postgres_or_skip("dashboard", "import") is None:
        return
    with tempfile.TemporaryDirectory() as tmp, databases.scratch_database("postgresql", Path(tmp)) as url, \
            EmbeddedRedis() as redis_server:
        app = _bench_app(url, redis_server.url)
        load_seconds = _load(app)
        result = bench_dashboard(app)
        result["load_seconds"] = load_seconds
        print(json.dumps(result), flush=True)
        print(json.dumps(bench_import(app)), flush=True)
        with app.app_context():
            from mailadmin.extensions import db

            db.session.remove()
            db.engine.dispose()


if __name__ == "__main__":
    main()
