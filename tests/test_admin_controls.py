"""Per-campaign admin controls (pause, resume, cancel, re-queue unknown) and the global sending switch,
driven through the pages with real RQ jobs, Redis, SMTP and database."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from mailadmin.extensions import db
from mailadmin.jobs.send import run_send_slice
from mailadmin.models import AppState, AuditEvent, Campaign
from mailadmin.models.app_state import APP_STATE_ID
from mailadmin.models.types import utcnow
from mailadmin.queue.dispatch import enqueue_send_slice, scheduled_continuation_at
from tests.factories import (
    ADMIN_EMAIL,
    create_campaign,
    create_started_campaign,
    fresh_campaign,
    recipient_address,
    recipient_statuses,
)
from tests.support.forms import csrf_token_from
from tests.support.jobs import queued_job_count, run_queued_jobs
from tests.support.web import click, flashes, logged_in_client

BANNER = "All sending is switched off by an admin."


@pytest.fixture
def start(app, manager):
    """start(n) -> a started (queued) campaign of the manager's with n recipients; nothing has run yet."""

    def factory(recipients: int = 5, name: str = "Spring news") -> Campaign:
        return create_started_campaign(manager, recipients, name=name)

    return factory


def _run(app_env) -> int:
    """Run the queued send jobs in this process with a real RQ worker (burst)."""
    return run_queued_jobs(app_env["REDIS_URL"])


def _audit_count(action: str, campaign_id: int | None = None) -> int:
    db.session.commit()
    query = select(func.count()).select_from(AuditEvent).where(AuditEvent.action == action)
    if campaign_id is not None:
        query = query.where(AuditEvent.campaign_id == campaign_id)
    return db.session.scalar(query)


def _assert_each_recipient_received_once(smtp, campaign: Campaign) -> None:
    received = smtp.recipients()
    expected = {recipient_address(i) for i in range(campaign.recipients_total)}
    assert set(received) == expected
    assert max(received.values()) == 1, received.most_common(3)


def _post(client, url: str, data: dict | None = None):
    """POST `url` with a CSRF token from the sending page (without following the redirect)."""
    token = csrf_token_from(client.get("/admin/sending").get_data(as_text=True))
    return client.post(url, data={**(data or {}), "csrf_token": token})


# --- pause and resume ----------------------------------------------------------------------


def test_pause_from_the_campaign_page_stops_sending_and_resume_completes_without_duplicates(
    admin_client, start, smtp, app_env
):
    campaign = start(6)
    page = f"/campaigns/{campaign.id}"
    html = admin_client.get(page).get_data(as_text=True)
    assert 'data-action="pause"' in html and 'data-action="resume"' not in html

    response = click(admin_client, page, f"/admin/campaigns/{campaign.id}/pause", {"next": page})
    assert response.request.path == page  # back where the button was
    assert ("success", f"Campaign “Spring news” (#{campaign.id}) paused. Sending stops before its next message.") in (
        flashes(response.get_data(as_text=True))
    )
    paused = fresh_campaign(campaign.id)
    assert paused.status == "paused" and paused.queue.defer_reason == "admin_pause"

    _run(app_env)  # the slice enqueued at start finds the campaign paused
    assert smtp.messages == [] and fresh_campaign(campaign.id).status == "paused"

    html = click(admin_client, page, f"/admin/campaigns/{campaign.id}/resume", {"next": page}).get_data(as_text=True)
    assert ("success", f"Campaign “Spring news” (#{campaign.id}) resumed. It is queued and sending continues.") in (
        flashes(html)
    )
    _run(app_env)
    done = fresh_campaign(campaign.id)
    assert done.status == "finished" and done.sent_count == 6
    _assert_each_recipient_received_once(smtp, done)
    assert _audit_count("campaign_paused", campaign.id) == 1 and _audit_count("campaign_resumed", campaign.id) == 1


def test_controls_on_the_campaign_list_bring_the_admin_back_to_the_list(admin_client, start):
    campaign = start(2)
    html = admin_client.get("/campaigns").get_data(as_text=True)
    assert f'action="/campaigns/{campaign.id}/pause"' in html
    response = click(admin_client, "/campaigns", f"/admin/campaigns/{campaign.id}/pause", {"next": "/campaigns"})
    assert response.request.path == "/campaigns"
    assert f'action="/campaigns/{campaign.id}/resume"' in response.get_data(as_text=True)


def test_pause_double_submit_is_harmless(admin_client, start):
    campaign = start(3)
    token = csrf_token_from(admin_client.get(f"/campaigns/{campaign.id}").get_data(as_text=True))
    first = admin_client.post(f"/admin/campaigns/{campaign.id}/pause", data={"csrf_token": token})
    second = admin_client.post(f"/admin/campaigns/{campaign.id}/pause", data={"csrf_token": token})
    assert first.status_code == second.status_code == 303
    html = admin_client.get(second.headers["Location"]).get_data(as_text=True)
    assert ("info", f"Campaign “Spring news” (#{campaign.id}) was already paused; nothing changed.") in flashes(html)
    assert fresh_campaign(campaign.id).status == "paused"
    assert _audit_count("campaign_paused", campaign.id) == 1


def test_resume_double_submit_enqueues_one_slice_and_sends_each_recipient_once(admin_client, start, smtp, app_env):
    campaign = start(8)
    click(admin_client, "/admin/sending", f"/admin/campaigns/{campaign.id}/pause")
    _run(app_env)  # drain the start's slice: it stops at the pause
    assert queued_job_count(app_env["REDIS_URL"]) == 0

    token = csrf_token_from(admin_client.get("/admin/sending").get_data(as_text=True))
    admin_client.post(f"/admin/campaigns/{campaign.id}/resume", data={"csrf_token": token})
    second = admin_client.post(f"/admin/campaigns/{campaign.id}/resume", data={"csrf_token": token})
    html = admin_client.get(second.headers["Location"]).get_data(as_text=True)
    assert ("info", f"Campaign “Spring news” (#{campaign.id}) is not paused (it is queued); nothing changed.") in (
        flashes(html)
    )
    assert queued_job_count(app_env["REDIS_URL"]) == 1
    assert _audit_count("campaign_resumed", campaign.id) == 1

    _run(app_env)
    done = fresh_campaign(campaign.id)
    assert done.status == "finished"
    _assert_each_recipient_received_once(smtp, done)


@pytest.mark.parametrize("action", ["pause", "resume"])
def test_two_admins_clicking_at_the_same_moment_change_the_state_once(
    app, admin, make_user, start, smtp, app_env, action
):
    make_user("second.admin@example.com", role="admin")
    campaign = start(6)
    if action == "resume":
        click(logged_in_client(app, ADMIN_EMAIL), "/admin/sending", f"/admin/campaigns/{campaign.id}/pause")
        _run(app_env)
    clients = [logged_in_client(app, ADMIN_EMAIL), logged_in_client(app, "second.admin@example.com")]
    tokens = [csrf_token_from(c.get("/admin/sending").get_data(as_text=True)) for c in clients]
    barrier = threading.Barrier(len(clients))
    statuses: list[int] = []
    url = f"/admin/campaigns/{campaign.id}/{action}"

    def submit(client, token):
        barrier.wait()
        statuses.append(client.post(url, data={"csrf_token": token}).status_code)

    threads = [threading.Thread(target=submit, args=pair) for pair in zip(clients, tokens, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert statuses == [303, 303]
    audited = "campaign_paused" if action == "pause" else "campaign_resumed"
    assert _audit_count(audited, campaign.id) == 1
    if action == "pause":
        assert fresh_campaign(campaign.id).status == "paused"
        return
    assert queued_job_count(app_env["REDIS_URL"]) == 1
    _run(app_env)
    done = fresh_campaign(campaign.id)
    assert done.status == "finished"
    _assert_each_recipient_received_once(smtp, done)


@pytest.fixture
def breaker_threshold(app_env):
    app_env["MAILER_CIRCUIT_BREAKER_THRESHOLD"] = "3"


@pytest.mark.usefixtures("breaker_threshold")
def test_breaker_tripped_campaign_resumed_by_an_admin_resets_the_counter_and_completes(
    app_env, app, admin_client, start, smtp
):
    campaign = start(5)
    smtp.reply_with(451, stage="rcpt")  # every message: a temporary failure
    retry_delay = timedelta(minutes=app.config["SETTINGS"].transient_retry_delay_minutes, seconds=1)
    moment = utcnow()
    for _ in range(3):  # each retry is due MAILER_TRANSIENT_RETRY_DELAY_MINUTES later: drive the clock
        run_send_slice(campaign.id, clock=lambda at=moment: at)
        moment += retry_delay
    tripped = fresh_campaign(campaign.id)
    assert tripped.status == "paused" and tripped.queue.defer_reason == "circuit_breaker"
    assert tripped.queue.consecutive_transient_errors == 3
    assert _audit_count("circuit_breaker_tripped", campaign.id) == 1

    page = f"/campaigns/{campaign.id}"
    html = admin_client.get(page).get_data(as_text=True)
    assert "The circuit breaker paused this campaign after 3 consecutive temporary SMTP errors" in html
    smtp.clear_faults()
    html = click(admin_client, page, f"/admin/campaigns/{campaign.id}/resume", {"next": page}).get_data(as_text=True)
    assert (
        "success",
        f"Campaign “Spring news” (#{campaign.id}) resumed after the circuit breaker tripped. "
        "The counter of consecutive transient errors was reset from 3 to 0. It is queued and sending continues.",
    ) in flashes(html)
    assert fresh_campaign(campaign.id).queue.consecutive_transient_errors == 0

    _run(app_env)
    done = fresh_campaign(campaign.id)
    assert done.status == "finished" and done.sent_count == 5
    _assert_each_recipient_received_once(smtp, done)


def test_resuming_while_all_sending_is_off_waits_for_the_switch(admin_client, start, smtp, app_env):
    campaign = start(3)
    click(admin_client, "/admin/sending", f"/admin/campaigns/{campaign.id}/pause")
    click(admin_client, "/admin/sending", "/admin/sending/pause")
    html = click(admin_client, "/admin/sending", f"/admin/campaigns/{campaign.id}/resume").get_data(as_text=True)
    assert (
        "success",
        f"Campaign “Spring news” (#{campaign.id}) resumed. All sending is switched off, so it waits until an admin "
        "switches sending back on.",
    ) in flashes(html)
    waiting = fresh_campaign(campaign.id)
    assert waiting.status == "deferred" and waiting.queue.defer_reason == "global_pause"
    _run(app_env)
    assert smtp.messages == []
    click(admin_client, "/admin/sending", "/admin/sending/resume")
    _run(app_env)
    done = fresh_campaign(campaign.id)
    assert done.status == "finished"
    _assert_each_recipient_received_once(smtp, done)


def test_pausing_a_finished_campaign_is_refused_with_the_reason(admin_client, start, app_env):
    campaign = start(2)
    _run(app_env)
    html = click(admin_client, "/admin/sending", f"/admin/campaigns/{campaign.id}/pause").get_data(as_text=True)
    assert ("error", "A finished campaign cannot be paused.") in flashes(html)
    assert fresh_campaign(campaign.id).status == "finished"


# --- cancel --------------------------------------------------------------------------------


@pytest.fixture
def small_quota(app_env):
    app_env["MAILER_SMTP_MAX_PER_HOUR"] = "3"


@pytest.mark.usefixtures("small_quota")
def test_cancel_stops_for_good_and_the_scheduled_continuation_does_nothing(admin_client, start, smtp, app_env):
    campaign = start(7)
    _run(app_env)  # 3 sent, then the hourly quota is used up
    deferred = fresh_campaign(campaign.id)
    assert deferred.status == "deferred" and deferred.queue.defer_reason == "rate_limit"
    assert scheduled_continuation_at(campaign.id) is not None
    assert len(smtp.messages) == 3

    page = f"/campaigns/{campaign.id}"
    confirm = admin_client.get(f"/admin/campaigns/{campaign.id}/cancel?next={page}")
    assert confirm.status_code == 200
    html = confirm.get_data(as_text=True)
    assert "Cancelling is <strong>final</strong>" in html and "4 recipients not reached yet" in html
    assert fresh_campaign(campaign.id).status == "deferred"  # showing the confirmation changes nothing

    # A bare POST (no confirmation) only shows the confirmation again.
    bare = _post(admin_client, f"/admin/campaigns/{campaign.id}/cancel")
    assert bare.status_code == 200 and "Yes, cancel this campaign for good" in bare.get_data(as_text=True)
    assert fresh_campaign(campaign.id).status == "deferred"

    response = click(
        admin_client,
        confirm.request.full_path,
        f"/admin/campaigns/{campaign.id}/cancel",
        {"confirm": "yes", "next": page},
    )
    assert response.request.path == page
    assert (
        "success",
        f"Campaign “Spring news” (#{campaign.id}) cancelled. No further message will be sent for it.",
    ) in (flashes(response.get_data(as_text=True)))
    assert fresh_campaign(campaign.id).status == "cancelled"
    assert scheduled_continuation_at(campaign.id) is None

    # The continuation fires anyway (say the scheduler had already taken it): it sends nothing.
    enqueue_send_slice(campaign.id)
    _run(app_env)
    assert len(smtp.messages) == 3
    assert fresh_campaign(campaign.id).status == "cancelled"
    assert recipient_statuses(campaign.id) == {"sent": 3, "pending": 4}

    # For good: a resume is refused, a second cancel changes nothing, and no button offers either.
    html = click(admin_client, page, f"/admin/campaigns/{campaign.id}/resume").get_data(as_text=True)
    assert ("error", "A cancelled campaign cannot be resumed.") in flashes(html)
    response = _post(admin_client, f"/admin/campaigns/{campaign.id}/cancel", {"confirm": "yes"})
    assert response.status_code == 303
    assert ("info", f"Campaign “Spring news” (#{campaign.id}) was already cancelled; nothing changed.") in flashes(
        admin_client.get(response.headers["Location"]).get_data(as_text=True)
    )
    html = admin_client.get(page).get_data(as_text=True)
    assert (
        'data-action="resume"' not in html and 'data-action="pause"' not in html and 'data-action="cancel"' not in html
    )
    assert _audit_count("campaign_cancelled", campaign.id) == 1


def test_cancelling_a_draft_is_not_offered(admin_client, manager):
    draft = create_campaign(manager, 2)
    response = admin_client.get(f"/admin/campaigns/{draft.id}/cancel")
    assert response.status_code == 303
    assert fresh_campaign(draft.id).status == "draft"


# --- re-queue unknown recipients -----------------------------------------------------------


def test_requeue_page_without_unknown_recipients_sends_the_admin_back(admin_client, start):
    campaign = start(2)
    response = admin_client.get(f"/admin/campaigns/{campaign.id}/requeue-unknown")
    assert response.status_code == 303 and response.headers["Location"] == f"/campaigns/{campaign.id}"
    assert _audit_count("unknown_recipients_requeued") == 0


# --- the global sending switch -------------------------------------------------------------


def test_global_switch_off_shows_a_banner_everywhere_holds_campaigns_and_on_sends_them(
    admin_client, manager_client, start, smtp, app_env
):
    campaign = start(4)
    html = click(admin_client, "/admin/sending", "/admin/sending/pause").get_data(as_text=True)
    assert ("success", "All sending is switched off. Workers stop before their next message.") in flashes(html)
    assert "Resume all sending" in html
    db.session.expire_all()
    assert db.session.get(AppState, APP_STATE_ID).sending_paused
    waiting = fresh_campaign(campaign.id)
    assert waiting.status == "deferred" and waiting.queue.defer_reason == "global_pause"
    for client, path in [
        (admin_client, "/admin/users"),
        (admin_client, "/admin/audit"),
        (admin_client, f"/campaigns/{campaign.id}"),
        (manager_client, "/campaigns"),
    ]:
        assert BANNER in client.get(path).get_data(as_text=True), path

    _run(app_env)
    assert smtp.messages == []

    html = click(admin_client, "/admin/sending", "/admin/sending/resume").get_data(as_text=True)
    assert ("success", "All sending is switched back on. Waiting campaigns are queued again.") in flashes(html)
    assert BANNER not in html and BANNER not in manager_client.get("/campaigns").get_data(as_text=True)
    _run(app_env)
    done = fresh_campaign(campaign.id)
    assert done.status == "finished"
    _assert_each_recipient_received_once(smtp, done)
    assert _audit_count("sending_switched_off") == 1 and _audit_count("sending_switched_on") == 1


def test_global_switch_double_submit_is_harmless(admin_client):
    click(admin_client, "/admin/sending", "/admin/sending/pause")
    html = click(admin_client, "/admin/sending", "/admin/sending/pause").get_data(as_text=True)
    assert ("info", "All sending was already switched off; nothing changed.") in flashes(html)
    assert _audit_count("sending_switched_off") == 1
    html = admin_client.get("/admin/sending").get_data(as_text=True)
    assert f"by {ADMIN_EMAIL}" in html


def test_banner_is_not_shown_while_sending_is_on(admin_client, manager_client):
    assert BANNER not in admin_client.get("/admin/sending").get_data(as_text=True)
    assert BANNER not in manager_client.get("/campaigns").get_data(as_text=True)


def test_sending_page_lists_campaigns_in_flight_with_their_controls(admin_client, start, manager, app_env):
    paused = start(2, name="Paused one")
    click(admin_client, "/admin/sending", f"/admin/campaigns/{paused.id}/pause")
    queued = start(2, name="Queued one")
    draft = create_campaign(manager, 1, name="Just a draft")
    html = admin_client.get("/admin/sending").get_data(as_text=True)
    assert f'data-campaign-row="{paused.id}"' in html and f'data-campaign-row="{queued.id}"' in html
    assert f'data-campaign-row="{draft.id}"' not in html
    assert f'action="/campaigns/{paused.id}/resume"' in html
    assert f'action="/campaigns/{queued.id}/pause"' in html


# --- who may -------------------------------------------------------------------------------


ADMIN_GET_PAGES = ["/admin/sending", "/admin/audit", "/admin/users", "/admin/users/new"]


def test_managers_get_403_on_every_admin_page(manager_client, start):
    campaign = start(2)
    pages = ADMIN_GET_PAGES + [
        f"/admin/campaigns/{campaign.id}/cancel",
        f"/admin/campaigns/{campaign.id}/requeue-unknown",
    ]
    for path in pages:
        assert manager_client.get(path).status_code == 403, path


def test_managers_cannot_use_admin_actions_even_on_their_own_campaign(manager_client, start, app_env):
    campaign = start(2)
    token = csrf_token_from(manager_client.get(f"/campaigns/{campaign.id}").get_data(as_text=True))
    html = manager_client.get(f"/campaigns/{campaign.id}").get_data(as_text=True)
    assert 'data-action="requeue-unknown"' not in html  # the owner's buttons, not the admin-only ones
    for action, data in [
        ("pause", {}),
        ("resume", {}),
        ("cancel", {"confirm": "yes"}),
        ("requeue-unknown", {"acknowledge": "y"}),
    ]:
        response = manager_client.post(f"/admin/campaigns/{campaign.id}/{action}", data={**data, "csrf_token": token})
        assert response.status_code == 403, action
    for path in ["/admin/sending/pause", "/admin/sending/resume"]:
        assert manager_client.post(path, data={"csrf_token": token}).status_code == 403, path
    assert fresh_campaign(campaign.id).status == "queued"
    db.session.expire_all()
    state = db.session.get(AppState, APP_STATE_ID)
    assert state is None or not state.sending_paused
    assert _audit_count("campaign_paused") == _audit_count("campaign_cancelled") == 0


def test_actions_on_a_missing_campaign_answer_404(admin_client):
    assert _post(admin_client, "/admin/campaigns/999999/pause").status_code == 404
    assert admin_client.get("/admin/campaigns/999999/cancel").status_code == 404


def test_admin_actions_without_a_csrf_token_are_refused(admin_client, start):
    campaign = start(2)
    assert admin_client.post(f"/admin/campaigns/{campaign.id}/pause").status_code == 400
    assert admin_client.post("/admin/sending/pause").status_code == 400
    assert fresh_campaign(campaign.id).status == "queued"


def test_next_never_leaves_the_site(admin_client, start):
    campaign = start(2)
    response = _post(admin_client, f"/admin/campaigns/{campaign.id}/pause", {"next": "https://evil.example/"})
    assert response.headers["Location"] == f"/campaigns/{campaign.id}"
