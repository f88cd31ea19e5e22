"""Admin pages facing real worker processes: a SIGKILLed worker on the operations page, and the
re-queue of the recipients a worker killed mid-batch left unknown."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from mailadmin.extensions import db
from mailadmin.jobs.recovery import recover_stalled_campaigns
from mailadmin.models import AuditEvent, Recipient
from mailadmin.models.types import utcnow
from tests.factories import create_started_campaign, fresh_campaign, recipient_statuses
from tests.support.jobs import run_queued_jobs
from tests.support.waiting import wait_until
from tests.support.web import click, flashes


def _worker_row(html: str, name: str) -> str:
    match = re.search(rf'<tr class="(?:alive|dead)" data-worker="{re.escape(name)}".*?</tr>', html, re.S)
    assert match, f"no row for worker {name}"
    return match.group(0)


def test_operations_page_shows_a_killed_worker_as_dead(admin_client, engine_processes):
    worker = engine_processes.worker()

    html = admin_client.get("/admin/operations").get_data(as_text=True)
    row = _worker_row(html, worker.name)
    assert 'data-alive="yes"' in row and "alive (idle)" in row
    assert str(worker.pid) in row

    worker.kill_hard()

    response = admin_client.get("/admin/operations")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    row = _worker_row(html, worker.name)
    assert 'data-alive="no"' in row
    assert "DEAD" in row and f"process {worker.pid} is gone" in row
    assert re.search(r'<section class="check" id="check-workers" data-status="critical"', html)
    assert re.search(r'<li data-problem="workers"><a href="#check-workers">', html)  # in the summary on top
    assert 'id="overall-status">CRITICAL' in html


@pytest.fixture
def slow_small_batches(app_env):
    app_env["MAILER_SEND_BATCH_SIZE"] = "4"


@pytest.mark.usefixtures("slow_small_batches")
def test_requeue_of_unknown_recipients_sends_each_of_them_once_more(
    app, admin_client, manager, smtp, app_env, engine_processes
):
    smtp.delay_per_message(0.3)
    campaign = create_started_campaign(manager, 12, name="Spring news")
    worker = engine_processes.worker()
    wait_until(
        lambda: len(smtp.messages) >= 2 and recipient_statuses(campaign.id).get("sending"),
        20,
        message="a worker in the middle of a batch",
    )
    worker.kill_hard()  # SIGKILL mid-batch: the claimed recipients' outcome cannot be known
    smtp.delay_per_message(0)
    # The recovery sweep, as the scheduler runs it once the claims are older than MAILER_STALE_CLAIM_SECONDS.
    recover_stalled_campaigns(now=utcnow() + timedelta(seconds=app.config["SETTINGS"].stale_claim_seconds + 1))
    run_queued_jobs(app_env["REDIS_URL"])
    finished = fresh_campaign(campaign.id)
    unknown = set(
        db.session.scalars(
            select(Recipient.email).where(Recipient.campaign_id == campaign.id, Recipient.status == "unknown")
        )
    )
    # SPEC: after a hard crash the uncertain recipients are bounded by the messages in flight (one
    # per connection) plus one claim batch (4 + 4 here).
    settings = app.config["SETTINGS"]
    bound = settings.smtp_connections + settings.send_batch_size
    assert finished.status == "finished" and 1 <= finished.unknown_count == len(unknown) <= bound
    before = smtp.recipients()

    page = f"/campaigns/{campaign.id}"
    assert f"Re-queue {len(unknown)} unknown" in admin_client.get(page).get_data(as_text=True)
    warning = admin_client.get(f"/admin/campaigns/{campaign.id}/requeue-unknown?next={page}").get_data(as_text=True)
    assert "These recipients may already have received this campaign." in warning

    refused = click(admin_client, page, f"/admin/campaigns/{campaign.id}/requeue-unknown", {"next": page})
    assert refused.status_code == 400
    assert "Tick the box to confirm that you accept possible duplicates." in refused.get_data(as_text=True)
    assert fresh_campaign(campaign.id).unknown_count == len(unknown)

    html = click(
        admin_client, page, f"/admin/campaigns/{campaign.id}/requeue-unknown", {"acknowledge": "y", "next": page}
    ).get_data(as_text=True)
    assert (
        "success",
        f"{len(unknown)} recipients of “Spring news” (#{campaign.id}) re-queued; they will be sent once more.",
    ) in flashes(html)
    html = click(
        admin_client, page, f"/admin/campaigns/{campaign.id}/requeue-unknown", {"acknowledge": "y", "next": page}
    ).get_data(as_text=True)
    assert (
        "info",
        f"Campaign “Spring news” (#{campaign.id}) has no recipient in the unknown state; nothing changed.",
    ) in flashes(html)

    run_queued_jobs(app_env["REDIS_URL"])
    done = fresh_campaign(campaign.id)
    assert done.status == "finished" and done.unknown_count == 0 and done.sent_count == 12
    after = smtp.recipients()
    for email in after | before:
        assert after[email] - before[email] == (1 if email in unknown else 0), email
    db.session.commit()
    requeued = select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "unknown_recipients_requeued", AuditEvent.campaign_id == campaign.id
    )
    assert db.session.scalar(requeued) == 1
