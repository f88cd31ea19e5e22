"""REST API benchmarks on PostgreSQL, one JSON line each:

- {"bench": "api_bulk_upsert", ...}: on a database of its own, one `POST /api/v1/contacts/bulk` of 10,000 contacts with 3
  attributes into a list (goal: ≤ 2 s), then the same call again (every row an update), against
  a bare COPY of the same rows into a scratch table in the same run;
- {"bench": "api_campaign", ...}: median of `GET /api/v1/campaigns/{id}` and of its `/stats` with
  1,000 campaigns and 1,000,000 recipients (goal: ≤ 20 ms), against a token-authenticated request
  that does nothing else (`GET /api/v1/lists` of a user with no list).

The data is the dashboard benchmark's (bench/dashboard.py: the same scratch database and load).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

BULK_ROWS = 10_000
BULK_GOAL_S = 2.0
GET_GOAL_MS = 20


def _app(database_url: str, redis_url: str):
    from mailadmin import create_app

    return create_app({"DATABASE_URL": database_url, "REDIS_URL": redis_url, "SETUP_LOGGING": False,
                       "APP_ENV": "development", "MAILER_API_REQUESTS_PER_MINUTE": "1000000"})


def _tokens(app) -> tuple[str, str]:
    """An admin's token, and a token of a manager with no list (the baseline's)."""
    from mailadmin.extensions import db
    from mailadmin.models import User
    from tests.factories import api_token

    with app.app_context():
        admin = db.session.scalar(sa.select(User).where(User.email == "admin@bench.example.com"))
        idle = db.session.scalar(sa.select(User).where(User.email == "manager9@bench.example.com"))
        return api_token(admin), api_token(idle, "read")


def _timed_post(client, url: str, body: dict, token: str) -> tuple[float, dict]:
    started = time.perf_counter()
    response = client.post(url, json=body, headers={"Authorization": f"Bearer {token}"})
    elapsed = time.perf_counter() - started
    if response.status_code not in (200, 201):
        raise RuntimeError(f"POST {url} answered {response.status_code}: {response.get_data(as_text=True)[:200]}")
    return elapsed, response.get_json()


def bench_bulk_upsert(app, token: str) -> dict:
    client = app.test_client()
    _, made = _timed_post(client, "/api/v1/lists", {"name": "Bench CRM"}, token)
    contacts = [{"email": f"crm{n}@example{n % 17}.org", "name": f"Person {n}",
                 "attributes": {"plan": ("free", "pro", "team")[n % 3], "seats": n % 50, "active": n % 2 == 0}}
                for n in range(BULK_ROWS)]
    body = {"list_id": made["id"], "contacts": contacts}
    first, result = _timed_post(client, "/api/v1/contacts/bulk", body, token)
    if result["created"] != BULK_ROWS:
        raise RuntimeError(f"bulk upsert created {result['created']}, expected {BULK_ROWS}")
    for row in contacts:
        row["attributes"]["seats"] += 1
    second, result = _timed_post(client, "/api/v1/contacts/bulk", body, token)
    return {"bench": "api_bulk_upsert", "database": "postgresql", "rows": BULK_ROWS,
            "body_bytes": len(json.dumps(body)), "first_call_s": round(first, 3), "second_call_updates_s":
            round(second, 3), "baseline_copy_s": round(_bare_copy(app, contacts), 3), "goal_s": BULK_GOAL_S,
            "meets_goal": max(first, second) <= BULK_GOAL_S}


def _bare_copy(app, contacts: list[dict]) -> float:
    """COPY of the same rows into a scratch table: the floor of any load of them."""
    from mailadmin.extensions import db

    with app.app_context():
        connection = db.session.connection().connection.driver_connection
        cursor = connection.cursor()
        cursor.execute("CREATE TEMP TABLE bench_copy (email text, name text, attributes jsonb)")
        started = time.perf_counter()
        with cursor.copy("COPY bench_copy (email, name, attributes) FROM STDIN") as copy:
            for row in contacts:
                copy.write_row((row["email"], row["name"], json.dumps(row["attributes"])))
        connection.commit()
        return time.perf_counter() - started


def bench_campaign_get(app, token: str, idle_token: str) -> dict:
    from bench.dashboard import BIG_CAMPAIGN_RECIPIENTS, CAMPAIGNS, RECIPIENTS, REQUESTS, _get, _median_ms

    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    idle = app.test_client()
    idle.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {idle_token}"
    result = {"bench": "api_campaign", "database": "postgresql", "campaigns": CAMPAIGNS, "recipients": RECIPIENTS,
              "campaign_recipients": BIG_CAMPAIGN_RECIPIENTS, "requests": REQUESTS,
              "baseline_token_request_ms": _median_ms(_get(idle, "/api/v1/lists")),
              "get_campaign_ms": _median_ms(_get(client, "/api/v1/campaigns/1")),
              "get_stats_ms": _median_ms(_get(client, "/api/v1/campaigns/1/stats")),
              "list_campaigns_ms": _median_ms(_get(client, "/api/v1/campaigns?limit=50")),
              "recipients_page_ms": _median_ms(_get(client, "/api/v1/campaigns/1/recipients?status=sent&limit=100")),
              "goal_ms": GET_GOAL_MS}
    result["meets_goal"] = max(result["get_campaign_ms"], result["get_stats_ms"]) <= GET_GOAL_MS
    return result


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench.dashboard import _load, postgres_or_skip
    from mailadmin.devtools.redis_server import EmbeddedRedis

    if postgres_or_skip("api_bulk_upsert", "api_campaign") is None:
        return
    with EmbeddedRedis() as redis_server:
        # The bulk upsert on its own database: the 1M-recipient load's autovacuum would time that instead.
        with _scratch_app(redis_server.url) as app:
            with app.app_context():
                from flask_migrate import upgrade

                from tests.factories import api_token, create_user

                upgrade()
                token = api_token(create_user("admin@bench.example.com", "admin", "bench password 123"))
            print(json.dumps(bench_bulk_upsert(app, token)), flush=True)
        with _scratch_app(redis_server.url) as app:
            _load(app)
            print(json.dumps(bench_campaign_get(app, *_tokens(app))), flush=True)


@contextmanager
def _scratch_app(redis_url: str):
    from tests.support import databases

    with tempfile.TemporaryDirectory() as tmp, databases.scratch_database("postgresql", Path(tmp)) as url:
        app = _app(url, redis_url)
        try:
            yield app
        finally:
            with app.app_context():
                from mailadmin.extensions import db

                db.session.remove()
                db.engine.dispose()


if __name__ == "__main__":
    main()
