"""Survival of infrastructure faults, with real processes: two `python worker.py` (forked work
horses) and the `flask scheduler`, real PostgreSQL/SQLite, a redis-server the test owns, a real
SMTP server. Redis is SIGKILLed (and comes back empty), the database is cut behind a TCP proxy:
every process lives on, the campaign finishes by itself, nobody is sent twice, every log line is
JSON and each process reports the outage once when it starts and once when it ends.
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from sqlalchemy.engine import make_url

from mailadmin.devtools.redis_server import EmbeddedRedis
from tests.factories import create_started_campaign, fresh_campaign, recipient_statuses
from tests.support.engine import fast_engine, no_live_claims
from tests.support.env import with_env
from tests.support.processes import is_alive
from tests.support.tcp_proxy import TcpProxy
from tests.support.waiting import wait_until

RECIPIENTS = 240
FAULT_SECONDS = 5
FAST = fast_engine(2, 3)


def kill_redis(server: EmbeddedRedis) -> None:
    """SIGKILL the redis-server, as the OOM killer or a crashed host would."""
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(10)


def assert_every_line_is_json(process) -> None:
    for line in process.log_text().splitlines():
        if line.strip():
            try:
                json.loads(line)
            except ValueError:
                pytest.fail(f"{process.name} wrote a line that is not JSON: {line[:300]!r}")


def outage_records(process, service_name: str) -> dict[str, tuple[int, int]]:
    """{process field: (outage starts, outage ends)} in one process's log (a worker's horses included)."""
    counts: dict[str, list[int]] = {}
    for record in process.records():
        if record.get("message") == f"{service_name} unavailable":
            counts.setdefault(record["process"], [0, 0])[0] += 1
        elif record.get("message") == f"{service_name} available again":
            counts.setdefault(record["process"], [0, 0])[1] += 1
            assert record["outage_seconds"] >= 0
    return {name: tuple(pair) for name, pair in counts.items()}


def assert_sent_exactly_once(smtp, campaign_id: int, recipients: int) -> None:
    counts = smtp.recipients()
    assert {address: n for address, n in counts.items() if n > 1} == {}, "someone was sent twice"
    assert recipient_statuses(campaign_id) == {"sent": recipients}
    assert len(counts) == recipients


@with_env(**FAST)
def test_redis_killed_for_5_seconds_mid_campaign_every_process_lives_and_the_campaign_finishes(
    engine_env, own_redis, app, smtp, owner, engine_processes
):
    smtp.delay_per_message(0.02)
    workers = [engine_processes.worker(), engine_processes.worker()]
    scheduler = engine_processes.scheduler(recovery_interval=1.0)
    campaign = create_started_campaign(owner, RECIPIENTS)
    smtp.wait_for(30, timeout=30)

    kill_redis(own_redis)
    time.sleep(FAULT_SECONDS)  # the outage itself
    own_redis.start()
    back = time.monotonic()

    wait_until(lambda: fresh_campaign(campaign.id).status == "finished", 30, 0.2, "the campaign to finish")
    assert time.monotonic() - back < 30
    assert all(process.running for process in [*workers, scheduler]), "a process died with Redis"
    assert_sent_exactly_once(smtp, campaign.id, RECIPIENTS)
    # The campaign may finish during the outage: each process notes Redis's return at its next touch.
    wait_until(
        lambda: all(
            starts == ends
            for process in [*workers, scheduler]
            for starts, ends in outage_records(process, "Redis").values()
        ),
        20, 0.2, "every process to log Redis available again",
    )
    for process in [*workers, scheduler]:
        assert_every_line_is_json(process)
        per_process = outage_records(process, "Redis")
        assert all(starts == ends == 1 for starts, ends in per_process.values()), (process.name, per_process)
    assert outage_records(scheduler, "Redis") == {"scheduler": (1, 1)}
    for worker in workers:
        assert outage_records(worker, "Redis").get("worker") == (1, 1)


@pytest.fixture
def database_behind_proxy(app_env):
    """The processes reach PostgreSQL through a TCP proxy the test can cut (the test itself does not)."""
    url = make_url(app_env["DATABASE_URL"])
    if not url.drivername.startswith("postgresql"):
        pytest.skip("the database cut needs a PostgreSQL server (SQLite has no connection to cut)")
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432).start()
    yield proxy, url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    proxy.stop()


@with_env(**FAST)
def test_database_cut_for_5_seconds_mid_campaign_every_process_lives_and_the_campaign_finishes(
    engine_env, database_behind_proxy, app, smtp, owner, engine_processes
):
    proxy, proxied_url = database_behind_proxy
    smtp.delay_per_message(0.02)
    workers = [engine_processes.worker(DATABASE_URL=proxied_url), engine_processes.worker(DATABASE_URL=proxied_url)]
    scheduler = engine_processes.scheduler(recovery_interval=1.0, DATABASE_URL=proxied_url)
    campaign = create_started_campaign(owner, RECIPIENTS)
    smtp.wait_for(30, timeout=30)

    proxy.cut()
    time.sleep(FAULT_SECONDS)  # the outage itself
    proxy.restore()
    back = time.monotonic()

    wait_until(lambda: fresh_campaign(campaign.id).status == "finished", 30, 0.2, "the campaign to finish")
    assert time.monotonic() - back < 30
    assert all(process.running for process in [*workers, scheduler]), "a process died with the database"
    assert_sent_exactly_once(smtp, campaign.id, RECIPIENTS)
    for process in [*workers, scheduler]:
        assert_every_line_is_json(process)
        per_process = outage_records(process, "Database")
        assert all(starts == ends == 1 for starts, ends in per_process.values()), (process.name, per_process)
    assert outage_records(scheduler, "Database") == {"scheduler": (1, 1)}
    # A busy worker's horse was using the database when it was cut.
    assert any(outage_records(worker, "Database").get("horse") == (1, 1) for worker in workers)


@with_env(**FAST)
def test_every_process_sigkilled_mid_campaign_resumes_within_10s_of_the_restart(engine_env, app, smtp, owner,
                                                                                engine_processes):
    assert "MAILER_STALE_CLAIM_SECONDS" not in engine_env  # the default (120 s) applies
    batch = int(FAST["MAILER_SEND_BATCH_SIZE"])
    smtp.delay_per_message(0.02)
    doomed = [engine_processes.worker(), engine_processes.worker(), engine_processes.scheduler(recovery_interval=60)]
    campaign = create_started_campaign(owner, RECIPIENTS)
    smtp.wait_for(30, timeout=30)

    for process in doomed:
        process.kill_hard()
    at_restart = len(smtp.messages)
    engine_processes.worker()
    engine_processes.worker()
    engine_processes.scheduler(recovery_interval=60)  # its periodic sweep is far away: the start-up one counts

    assert smtp.wait_for(at_restart + 5, timeout=10), "sending did not resume within 10 s of the restart"
    wait_until(lambda: fresh_campaign(campaign.id).status == "finished", 60, 0.2, "the campaign to finish")
    counts = smtp.recipients()
    assert {address: n for address, n in counts.items() if n > 1} == {}, "someone was sent twice"
    statuses = recipient_statuses(campaign.id)
    assert set(statuses) <= {"sent", "unknown"}
    # At most one batch plus the messages in flight (one per connection) per killed job.
    assert statuses.get("unknown", 0) <= 2 * (batch + app.config["SETTINGS"].smtp_connections)
    # An `unknown` recipient may or may not have been delivered (its SMTP reply was lost with the job).
    assert statuses["sent"] <= len(counts) <= statuses["sent"] + statuses.get("unknown", 0)


# A work horse whose worker died: one slice long enough to still be running when it happens.
LONG_SLICE = fast_engine(60, 3)
SLOW_RECIPIENTS = 600  # at 0.1 s a message on 4 connections, 15 s of sending
HORSE_GONE_WITHIN_SECONDS = 8


@pytest.fixture
def orphaned_horses() -> list[int]:
    """Work horses a test let outlive their worker; SIGKILLed at teardown should one still run."""
    horses: list[int] = []
    yield horses
    for pid in horses:
        if is_alive(pid):
            os.kill(pid, signal.SIGKILL)


def _worker_killed_mid_slice(engine_processes, smtp, owner, orphaned_horses):
    """A worker busy with a slow campaign, SIGKILLed alone; its horse's pid and the campaign."""
    smtp.delay_per_message(0.1)
    worker = engine_processes.worker()
    campaign = create_started_campaign(owner, SLOW_RECIPIENTS)
    assert smtp.wait_for(20, timeout=30)
    horse = wait_until(worker.descendants, 10, message="the work horse")[0]
    orphaned_horses.append(horse)
    worker.kill_alone()
    return horse, campaign


@with_env(**LONG_SLICE)
def test_a_work_horse_whose_worker_died_stops_its_slice_and_exits_and_a_new_worker_finishes_the_campaign(
    engine_env, app, smtp, owner, engine_processes, orphaned_horses
):
    horse, campaign = _worker_killed_mid_slice(engine_processes, smtp, owner, orphaned_horses)

    wait_until(lambda: not is_alive(horse), HORSE_GONE_WITHIN_SECONDS, 0.1, "the orphaned horse to exit")
    assert len(smtp.recipients()) < SLOW_RECIPIENTS, "the horse sent its whole slice instead of stopping"
    assert no_live_claims(campaign.id), "the horse left without recording its slice"

    smtp.delay_per_message(0)
    engine_processes.worker()
    wait_until(lambda: fresh_campaign(campaign.id).status == "finished", 60, 0.2, "the campaign to finish")
    assert_sent_exactly_once(smtp, campaign.id, SLOW_RECIPIENTS)


@with_env(**LONG_SLICE)
def test_a_work_horse_whose_worker_died_with_redis_does_not_wait_for_redis_and_a_restart_finishes_the_campaign(
    engine_env, own_redis, app, smtp, owner, engine_processes, orphaned_horses
):
    horse, campaign = _worker_killed_mid_slice(engine_processes, smtp, owner, orphaned_horses)
    kill_redis(own_redis)  # as `make run`'s Ctrl-C once did, before the horse had finished

    wait_until(lambda: not is_alive(horse), HORSE_GONE_WITHIN_SECONDS, 0.1, "the orphaned horse to exit")
    assert no_live_claims(campaign.id), "the horse left without recording its slice"

    own_redis.start()
    smtp.delay_per_message(0)
    engine_processes.worker()
    engine_processes.scheduler(recovery_interval=1.0)  # re-enqueues the campaign its lost continuation left
    wait_until(lambda: fresh_campaign(campaign.id).status == "finished", 60, 0.2, "the campaign to finish")
    assert_sent_exactly_once(smtp, campaign.id, SLOW_RECIPIENTS)
