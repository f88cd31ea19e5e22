"""Events-out burst benchmark on PostgreSQL, one JSON line:

{"bench": "events_burst", ...}: 100,000 `recipient.bounced` events pending for one endpoint (a real
HTTP receiver in this process that verifies every signature with `standardwebhooks`), drained by ONE
real worker process (`python worker.py`, every queue; the scheduler runs too) — the worst case for the send queue, which
shares that worker. While the burst drains, a probe job is put on the send queue every second and its
wait (enqueued -> started) measured: the send queue is not starved when that wait stays about one
events run (RUN_BUDGET_SECONDS) at most. Also: what recording one event costs a service (ms per
`record_event` in a transaction of its own, as a bounce webhook does).

The scratch database is created and dropped here (BENCH_DATABASE_URL, else TEST_DATABASE_URL /
DATABASE_URL, else postgresql://postgres@127.0.0.1:5432/test). BENCH_EVENTS for a smaller run.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from bench.dashboard import _bench_app, postgres_or_skip

EVENTS = int(os.environ.get("BENCH_EVENTS", "100000"))
RECORDED = 500
WORKER_LOG = Path(tempfile.gettempdir()) / "events_burst_worker.log"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
BURST_SQL = [
    """INSERT INTO outbox_events (public_id, type, campaign_id, payload, created_at)
       SELECT 'evt_' || md5(g::text), 'recipient.bounced', NULL,
              json_build_object('type', 'recipient.bounced', 'id', 'evt_' || md5(g::text), 'created_at', now(),
                                'data', json_build_object('email', 'b' || g || '@example.com', 'source', 'ses')),
              now()
       FROM generate_series(1, :events) AS g""",
    """INSERT INTO event_deliveries (event_id, endpoint_id, ordering_key, status, attempts, next_attempt_at, created_at)
       SELECT id, :endpoint, NULL, 'pending', 0, now(), now() FROM outbox_events""",
]


def _endpoint(app, url: str) -> tuple[int, str]:
    from mailadmin.services.events import endpoints
    from tests.factories import create_user

    with app.app_context():
        admin = create_user("admin@bench.example.com", "admin", "a-long-bench-password-1")
        endpoint, secret = endpoints.create_endpoint(endpoints.EndpointFields(url, "bench", ("recipient.bounced",)), admin)
        return endpoint.id, secret


def _record_cost_ms(app) -> float:
    """Median ms of one `record_event` in a transaction of its own (then removed again)."""
    from mailadmin.extensions import db
    from mailadmin.models.events import EventType
    from mailadmin.services.events.recording import record_event
    from mailadmin.services.transaction import transaction

    with app.app_context():
        times = []
        for number in range(RECORDED):
            started = time.perf_counter()
            with transaction():
                record_event(EventType.RECIPIENT_BOUNCED, {"email": f"r{number}@example.com"})
            times.append((time.perf_counter() - started) * 1000)
        db.session.execute(sa.text("DELETE FROM event_deliveries"))
        db.session.execute(sa.text("DELETE FROM outbox_events"))
        db.session.commit()
        return round(statistics.median(times), 2)


def _pending(app) -> int:
    from mailadmin.extensions import db

    with app.app_context():
        count = db.session.scalar(sa.text("SELECT count(*) FROM event_deliveries WHERE status <> 'delivered'"))
        db.session.remove()
        return count


def _drain(app, env: dict[str, str]) -> dict:
    """One worker drains the burst; a probe on the send queue every second. The figures."""
    from rq import Queue

    from mailadmin.extensions import SEND_QUEUE, get_redis
    from mailadmin.queue.events import request_events_delivery

    worker = subprocess.Popen([sys.executable, "worker.py"], cwd=PROJECT_ROOT, env={**os.environ, **env},
                              stdout=WORKER_LOG.open("ab"), stderr=subprocess.STDOUT)
    # The scheduler's sweep queues the retries of failed attempts, as in production.
    scheduler = subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "scheduler"], cwd=PROJECT_ROOT,
                                 env={**os.environ, **env}, stdout=WORKER_LOG.open("ab"), stderr=subprocess.STDOUT)
    probes, waits = [], []
    try:
        with app.app_context():
            started = time.perf_counter()
            request_events_delivery(get_redis())
            queue = Queue(SEND_QUEUE, connection=get_redis())
            while _pending(app):
                probes.append(queue.enqueue("builtins.len", [1], result_ttl=600))
                time.sleep(1.0)
            seconds = time.perf_counter() - started
            for probe in probes:
                probe.refresh()
                if probe.started_at and probe.enqueued_at:
                    waits.append((probe.started_at - probe.enqueued_at).total_seconds())
    finally:
        for process in (worker, scheduler):
            process.terminate()
            process.wait(30)
    return {"drain_seconds": round(seconds, 1), "events_per_s": round(EVENTS / seconds),
            "send_probes": len(probes), "send_probe_wait_median_s": round(statistics.median(waits), 2) if waits else None,
            "send_probe_wait_max_s": round(max(waits), 2) if waits else None}


def main() -> None:
    sys.path.insert(0, str(PROJECT_ROOT))
    from mailadmin.devtools.redis_server import EmbeddedRedis
    from tests.support import databases
    from tests.support.receiver import EventReceiver

    if postgres_or_skip("events_burst") is None:
        return
    receiver = EventReceiver().start()
    with tempfile.TemporaryDirectory() as tmp, databases.scratch_database("postgresql", Path(tmp)) as url, \
            EmbeddedRedis() as redis_server:
        from flask_migrate import upgrade

        app = _bench_app(url, redis_server.url)
        with app.app_context():
            upgrade()
        endpoint_id, receiver.secret = _endpoint(app, receiver.url)
        result = {"bench": "events_burst", "database": "postgresql", "events": EVENTS, "workers": 1,
                  "record_event_ms": _record_cost_ms(app)}
        with app.app_context():
            from mailadmin.extensions import db

            for statement in BURST_SQL:
                db.session.execute(sa.text(statement), {"events": EVENTS, "endpoint": endpoint_id})
            db.session.commit()
        env = {"DATABASE_URL": url, "REDIS_URL": redis_server.url, "APP_ENV": "development", "LOG_FORMAT": "json",
               "MAILER_EVENTS_RETRY_BASE_SECONDS": "1"}
        result.update(_drain(app, env))
        result["received"] = len(receiver.received)  # more than `events`: attempts that failed were retried
        result["verified_once_each"] = len(receiver.events) == EVENTS and receiver.bad_signatures == 0
        print(json.dumps(result), flush=True)
        receiver.stop()
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


if __name__ == "__main__":
    main()
