"""Metrics benchmarks, one JSON line each:

- {"bench": "metrics_scrape", ...}: median and 95th percentile of a `/metrics` scrape with 1,000
  campaigns and 1,000,000 recipients on PostgreSQL (goal: ≤ 50 ms), every counter family filled,
  against a baseline request in the same run (`/healthz`, which reads the database and Redis once);
- {"bench": "send_loop_metrics", ...}: the send loop (real `python worker.py`, loopback sink) with
  metrics off (no MAILER_METRICS_TOKEN) and on, alternating runs in the same process: CPU ms per
  message (worker + PostgreSQL + Redis) and msg/s of each, medians; and, in one more run of each
  read with Redis MONITOR (script-internal commands left out), the Redis commands per message
  (the bench's own polling included), the send path's script calls per message (reserve + settle:
  the same with metrics on — the counts ride in the settle script's arguments) and the hash
  writes clients sent (with metrics on: the one pipeline at each job's end).

`python -m bench metrics`. The database is BENCH_DATABASE_URL (else TEST_DATABASE_URL / DATABASE_URL,
else postgresql://postgres@127.0.0.1:5432/test), in scratch databases created and dropped here.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

SCRAPE_GOAL_MS = 50
SCRAPES = 25
SEND_MESSAGES = int(os.environ.get("BENCH_METRICS_MESSAGES", "3000"))
SEND_RUNS = int(os.environ.get("BENCH_METRICS_RUNS", "3"))
MONITOR_MESSAGES = 500
TOKEN = "bench-metrics-token-" + "m" * 20


def _percentile(times: list[float], share: float) -> float:
    ordered = sorted(times)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * share))], 2)


def _fill_counters(redis_url: str) -> None:
    """Every counter family with every known label value, as after weeks of sending."""
    from redis import Redis

    from mailadmin.counters import FAMILIES
    from mailadmin.counters.tally import FIELD_SEPARATOR, HISTOGRAM_SUM_FIELD

    client = Redis.from_url(redis_url)
    for family in FAMILIES:
        if family.is_histogram:
            client.hset(family.key, mapping={**{repr(b): 1000 for b in family.buckets}, HISTOGRAM_SUM_FIELD: 1234.5})
        else:
            fields = [FIELD_SEPARATOR.join(known) for known in family.known] or [""]
            client.hset(family.key, mapping={field: 123456 for field in fields})
    client.close()


def bench_scrape() -> dict:
    """A scrape at 1M recipients and 1,000 campaigns, against /healthz."""
    from bench.dashboard import CAMPAIGNS, RECIPIENTS, _load, _server_url, _timed_ms
    from mailadmin import create_app
    from mailadmin.devtools.redis_server import EmbeddedRedis
    from tests.support import databases

    os.environ["TEST_DATABASE_URL"] = _server_url()
    with tempfile.TemporaryDirectory() as tmp, databases.scratch_database("postgresql", Path(tmp)) as url, \
            EmbeddedRedis() as redis_server:
        app = create_app({"DATABASE_URL": url, "REDIS_URL": redis_server.url, "SETUP_LOGGING": False,
                          "APP_ENV": "development", "MAILER_METRICS_TOKEN": TOKEN})
        load_seconds = _load(app)
        _fill_counters(redis_server.url)
        client = app.test_client()
        headers = {"Authorization": f"Bearer {TOKEN}"}

        def scrape() -> None:
            response = client.get("/metrics", headers=headers)
            if response.status_code != 200 or b"mailadmin_recipients_pending" not in response.data:
                raise RuntimeError(f"/metrics answered {response.status_code}")

        scrapes = _timed_ms(scrape, SCRAPES)
        baseline = _timed_ms(lambda: client.get("/healthz"), SCRAPES)
        size = len(client.get("/metrics", headers=headers).data)
        with app.app_context():
            from mailadmin.extensions import db

            db.session.remove()
            db.engine.dispose()
    median = round(statistics.median(scrapes), 2)
    return {"bench": "metrics_scrape", "database": "postgresql", "campaigns": CAMPAIGNS, "recipients": RECIPIENTS,
            "scrapes": SCRAPES, "scrape_ms": median, "scrape_p95_ms": _percentile(scrapes, 0.95),
            "baseline_healthz_ms": round(statistics.median(baseline), 2), "body_bytes": size,
            "goal_ms": SCRAPE_GOAL_MS, "meets_goal": median <= SCRAPE_GOAL_MS, "load_seconds": load_seconds}


class CommandCounter:
    """Redis MONITOR in a thread: the commands clients sent (not those a script ran), by name."""

    def __init__(self, redis_url: str) -> None:
        from redis import Redis

        self.client = Redis.from_url(redis_url)
        self.counts: dict[str, int] = {}
        self._monitor = self.client.monitor()
        self._thread = threading.Thread(target=self._listen, daemon=True)

    def _listen(self) -> None:
        try:
            for command in self._monitor.listen():
                if command.get("client_type") != "lua":
                    name = command["command"].split(" ", 1)[0].upper()
                    self.counts[name] = self.counts.get(name, 0) + 1
        except Exception:  # the connection closed: the count is over
            return

    def __enter__(self) -> CommandCounter:
        self._monitor.__enter__()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        time.sleep(0.2)  # the last commands reach the listener
        self._monitor.connection.disconnect()
        self._thread.join(5)
        self.client.close()

    def total(self) -> int:
        return sum(self.counts.values())


def _send_runs(env: dict[str, str], owner, metrics_on: bool, messages: int) -> dict:
    from bench.measure import run_campaign_with_workers
    from bench.send_loop import create_campaign

    run_env = {**env, "MAILER_METRICS_TOKEN": TOKEN} if metrics_on else env
    campaign_id = create_campaign(owner.id, messages, f"metrics {'on' if metrics_on else 'off'}")
    run = run_campaign_with_workers(run_env, campaign_id, owner, 1)
    return {"rate": run.rate, **run.cpu_ms_per_message()}


def _commands_per_message(env: dict[str, str], owner, metrics_on: bool) -> tuple[float, dict[str, int]]:
    from bench.measure import run_campaign_with_workers
    from bench.send_loop import create_campaign

    run_env = {**env, "MAILER_METRICS_TOKEN": TOKEN} if metrics_on else env
    campaign_id = create_campaign(owner.id, MONITOR_MESSAGES, "metrics commands")
    with CommandCounter(env["REDIS_URL"]) as counter:
        run_campaign_with_workers(run_env, campaign_id, owner, 1)
    return round(counter.total() / MONITOR_MESSAGES, 3), counter.counts


def bench_send_loop() -> dict:
    """The send loop with metrics off and on, alternating, then the commands per message of each."""
    from bench.send_loop import bench_env, database_url, redis_url, smtp_sink
    from mailadmin import create_app
    from mailadmin.extensions import db
    from mailadmin.logging import reset_logging, setup_logging
    from tests.factories import create_user

    with ExitStack() as stack:
        smtp, sink_name = stack.enter_context(smtp_sink())
        redis = stack.enter_context(redis_url())
        db_url, db_label = stack.enter_context(database_url())
        env = bench_env(db_url, redis, smtp)
        app = create_app({**env, "SETUP_LOGGING": False})
        devnull = stack.enter_context(open(os.devnull, "w"))
        setup_logging(app.config["SETTINGS"], sink=devnull, level="INFO")
        stack.callback(reset_logging)
        stack.enter_context(app.app_context())
        db.create_all()
        owner = create_user("bench@example.com", "manager", "bench-password-123")
        runs: dict[bool, list[dict]] = {False: [], True: []}
        for _ in range(SEND_RUNS):
            for metrics_on in (False, True):
                runs[metrics_on].append(_send_runs(env, owner, metrics_on, SEND_MESSAGES))
        commands = {on: _commands_per_message(env, owner, on) for on in (False, True)}
        db.session.remove()
        db.engine.dispose()

    def median(on: bool, key: str) -> float:
        return round(statistics.median(run[key] for run in runs[on]), 3)

    def scripts(on: bool) -> float:  # the send path's reserve and settle calls
        counts = commands[on][1]
        return round((counts.get("EVALSHA", 0) + counts.get("EVAL", 0)) / MONITOR_MESSAGES, 3)

    def hash_writes(on: bool) -> int:  # HINCRBY / HINCRBYFLOAT sent by a client, not run inside a script
        return commands[on][1].get("HINCRBY", 0) + commands[on][1].get("HINCRBYFLOAT", 0)
    return {
        "bench": "send_loop_metrics", "sink": sink_name, "database": db_label, "messages": SEND_MESSAGES,
        "runs_each": SEND_RUNS,
        "cpu_ms_per_message_off": median(False, "total"), "cpu_ms_per_message_on": median(True, "total"),
        "cpu_ms_per_message_off_runs": [run["total"] for run in runs[False]],
        "cpu_ms_per_message_on_runs": [run["total"] for run in runs[True]],
        "worker_cpu_ms_off": median(False, "worker"), "worker_cpu_ms_on": median(True, "worker"),
        "redis_cpu_ms_off": median(False, "redis"), "redis_cpu_ms_on": median(True, "redis"),
        "msg_per_s_off": round(median(False, "rate"), 1), "msg_per_s_on": round(median(True, "rate"), 1),
        "msg_per_s_off_runs": [round(run["rate"]) for run in runs[False]],
        "msg_per_s_on_runs": [round(run["rate"]) for run in runs[True]],
        "redis_commands_per_message_off": commands[False][0], "redis_commands_per_message_on": commands[True][0],
        "redis_scripts_per_message_off": scripts(False), "redis_scripts_per_message_on": scripts(True),
        "client_hincr_commands_off": hash_writes(False), "client_hincr_commands_on": hash_writes(True),
        "monitor_messages": MONITOR_MESSAGES,
    }


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench.dashboard import postgres_or_skip

    if postgres_or_skip("metrics_scrape") is not None:
        print(json.dumps(bench_scrape()), flush=True)
    print(json.dumps(bench_send_loop()), flush=True)


if __name__ == "__main__":
    main()
