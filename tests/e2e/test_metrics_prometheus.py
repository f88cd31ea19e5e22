"""A real Prometheus scrapes the live app while two real worker processes send a campaign: the sent
total it reads through its HTTP API is the campaign's sent count, and the playbook's rules load."""

from __future__ import annotations

import pytest

from tests.factories import create_started_campaign
from tests.support.engine import fast_engine, wait_finished
from tests.support.processes import ManagedProcess
from tests.support.prometheus import METRICS_TOKEN, PrometheusServer
from tests.support.waiting import wait_until


@pytest.fixture(autouse=True)
def _engine_with_metrics(app_env) -> None:
    """Short slices and small batches, and metrics on for the web process and the workers alike."""
    app_env.update(fast_engine(1, 3, MAILER_SEND_BATCH_SIZE="10", MAILER_METRICS_TOKEN=METRICS_TOKEN))


@pytest.fixture
def prometheus(live_server, tmp_path):
    server = PrometheusServer(live_server.url.removeprefix("http://"), tmp_path)
    process = ManagedProcess("prometheus", server.command, {"PATH": "/usr/bin:/bin"}, tmp_path / "prometheus.log")
    process.start()
    try:
        wait_until(server.ready, 30, 0.2, "Prometheus to be ready")
        yield server
    finally:
        process.stop()


def test_prometheus_reads_the_campaigns_sent_count_from_two_workers(app, smtp, owner, engine_processes, prometheus):
    first = engine_processes.worker()
    second = engine_processes.worker()
    wait_until(lambda: prometheus.scalar('up{job="mailadmin"}') == 1, 30, 0.2, "the first successful scrape")
    assert prometheus.scalar("mailadmin_messages_sent_total") == 0
    campaign = create_started_campaign(owner, 400)

    finished = wait_finished(campaign.id, timeout=90)

    assert finished.sent_count == 400 and len(smtp.recipients()) == 400
    assert first.records_with("Email sent successfully") and second.records_with("Email sent successfully")
    wait_until(lambda: prometheus.scalar("mailadmin_messages_sent_total") == finished.sent_count, 30, 0.2,
               "Prometheus to scrape the sent total")
    assert prometheus.scalar("mailadmin_smtp_send_duration_seconds_count") == finished.sent_count
    # A gauge read at scrape time: the scrape that saw the last message sent may precede the finish.
    wait_until(lambda: prometheus.scalar('mailadmin_campaigns{status="finished"}') == 1, 30, 0.2,
               "Prometheus to scrape the finished campaign")
    assert prometheus.scalar("mailadmin_workers_live") == 2
    rules = prometheus.api("rules")["groups"]
    assert {group["name"] for group in rules} == {"mailadmin-critical", "mailadmin-warning"}
    assert all(rule["health"] == "ok" for group in rules for rule in group["rules"])
