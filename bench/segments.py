"""Segment and audience benchmarks on PostgreSQL, one JSON line:

{"bench": "segments", ...}: over 1,000,000 contacts (5 attributes each, every contact on a list),
the median time of a segment's count with 3 conditions (goal ≤ 300 ms) and of its sample of 10
(goal ≤ 100 ms), against a same-run baseline `SELECT count(*) FROM contacts`; and the time a start
takes to resolve a 100,000-recipient audience into recipients and commit (goal ≤ 3 s).

Data goes into a scratch database (created and dropped here), bulk-loaded server-side with
INSERT ... SELECT generate_series. The server is found as bench/dashboard.py finds it.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

CONTACTS = 1_000_000
AUDIENCE = 100_000
REQUESTS = 15
GOALS = {"count_ms": 300, "sample_ms": 100, "resolve_s": 3.0}

LOAD_SQL = [
    """
    INSERT INTO contacts (id, email, name, attributes, source, created_at, updated_at)
    SELECT n, 'contact' || n || '@example' || (n % 89) || '.com', 'Contact ' || n,
           jsonb_build_object('plan', (ARRAY['free','pro','team','enterprise'])[1 + n % 4],
                              'country', (ARRAY['DE','FR','US','GB','NL','ES','IT','PL'])[1 + n % 8],
                              'seats', n % 200,
                              'renews', to_char(date '2026-01-01' + (n % 730), 'YYYY-MM-DD'),
                              'company', 'Company ' || (n % 5000)),
           'import', now() - ((n % 1000) || ' hours')::interval, now()
    FROM generate_series(1, :contacts) AS n
    """,
    "SELECT setval(pg_get_serial_sequence('contacts', 'id'), :contacts)",
    "INSERT INTO lists (id, name, description, owner_id, opt_in, shared, created_at, updated_at)"
    " VALUES (1, 'Everyone', '', 1, 'single', false, now(), now()), (2, 'Audience', '', 1, 'single', false, now(), now())",
    "SELECT setval(pg_get_serial_sequence('lists', 'id'), 2)",
    # Everyone is on list 1 (one in ten unsubscribed); the first AUDIENCE contacts are on list 2 too.
    """
    INSERT INTO list_memberships (list_id, contact_id, status, source, created_at, status_changed_at)
    SELECT 1, n, CASE WHEN n % 10 = 0 THEN 'unsubscribed' ELSE 'subscribed' END, 'import', now(), now()
    FROM generate_series(1, :contacts) AS n
    """,
    """
    INSERT INTO list_memberships (list_id, contact_id, status, source, created_at, status_changed_at)
    SELECT 2, n, 'subscribed', 'import', now(), now() FROM generate_series(1, :audience) AS n
    """,
    "ANALYZE",
]

SEGMENT = {"match": "all", "conditions": [
    {"field": "attribute", "name": "plan", "op": "eq", "value": "pro"},
    {"field": "attribute", "name": "seats", "op": "gt", "type": "number", "value": 150},
    {"field": "list", "op": "subscribed", "value": 1},
]}


def _median_ms(call) -> float:
    from bench.dashboard import _median_ms as median

    return median(call, REQUESTS)


def _load(app) -> float:
    from flask_migrate import upgrade

    from mailadmin.extensions import db
    from tests.factories import create_user

    started = time.perf_counter()
    with app.app_context():
        upgrade()
        create_user("manager@bench.example.com", "manager", "bench password 123")
        params = {"contacts": CONTACTS, "audience": AUDIENCE}
        with db.engine.begin() as conn:
            for statement in LOAD_SQL:
                conn.execute(sa.text(statement), {k: v for k, v in params.items() if f":{k}" in statement})
    return round(time.perf_counter() - started, 1)


def bench_segments(app) -> dict:
    """Count and sample medians of a 3-condition segment, and one start resolving a 100k audience."""
    from mailadmin.extensions import db
    from mailadmin.models import User
    from mailadmin.services.audiences.segments import count_matching, sample_matching
    from mailadmin.services.audiences.targets import Targets, set_campaign_targets
    from mailadmin.services.campaigns import start_campaign
    from tests.factories import create_campaign

    with app.app_context():
        owner = db.session.scalar(sa.select(User).where(User.email == "manager@bench.example.com"))
        matching = count_matching(SEGMENT, owner)
        result = {
            "bench": "segments", "database": "postgresql", "contacts": CONTACTS, "conditions": 3,
            "matching": matching, "requests": REQUESTS,
            "baseline_count_all_ms": _median_ms(lambda: db.session.scalar(sa.text("SELECT count(*) FROM contacts"))),
            "count_ms": _median_ms(lambda: count_matching(SEGMENT, owner)),
            "sample_ms": _median_ms(lambda: sample_matching(SEGMENT, owner)),
        }
        campaign = create_campaign(owner, 0, name="Audience bench")
        set_campaign_targets(campaign, owner, Targets(lists=[2]))
        started = time.perf_counter()
        start_campaign(campaign, owner, enforce_throttle=False)
        result["resolve_s"] = round(time.perf_counter() - started, 2)
        result["resolved"] = campaign.recipients_total
    result["goals"] = GOALS
    result["meets_goal"] = all(result[key] <= goal for key, goal in GOALS.items())
    return result


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench.dashboard import postgres_or_skip
    from mailadmin import create_app
    from mailadmin.devtools.redis_server import EmbeddedRedis
    from tests.support import databases

    if postgres_or_skip("segments") is None:
        return
    with tempfile.TemporaryDirectory() as tmp, databases.scratch_database("postgresql", Path(tmp)) as url, \
            EmbeddedRedis() as redis_server:
        app = create_app({"DATABASE_URL": url, "REDIS_URL": redis_server.url, "SETUP_LOGGING": False,
                          "APP_ENV": "development", "MAILER_MAX_CAMPAIGN_RECIPIENTS": str(AUDIENCE)})
        result = {"load_seconds": _load(app)}
        result = {**bench_segments(app), **result}
        print(json.dumps(result), flush=True)
        with app.app_context():
            from mailadmin.extensions import db

            db.session.remove()
            db.engine.dispose()


if __name__ == "__main__":
    main()
