"""The operations page (admins only): the 60-second diagnosis, live, with links into the playbook."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from mailadmin import ops as diagnosis
from mailadmin.extensions import get_redis
from mailadmin.limits.send_pace import reserve_send_tokens
from mailadmin.models.moments import format_moment
from mailadmin.models.types import utcnow
from mailadmin.services.campaigns import start_campaign
from tests.factories import create_campaign


def test_operations_page_lists_a_scheduled_continuation_with_its_time(app, admin, admin_client):
    at = (utcnow() + timedelta(hours=2)).replace(microsecond=0)
    campaign = create_campaign(admin, 2, name="Tomorrow's news")
    start_campaign(campaign, admin, scheduled_at=at, enforce_throttle=False)

    html = admin_client.get("/admin/operations").get_data(as_text=True)

    job_id = f"campaign-{campaign.id}-continuation"
    row = re.search(rf'<tr data-job-id="{job_id}">.*?</tr>', html, re.S)
    assert row, html
    assert format_moment(at, UTC, "seconds") in row.group(0)
    assert "in 2 h" in row.group(0)
    assert f">Tomorrow&#39;s news</a> <span class=\"muted nowrap\">#{campaign.id}</span>" in row.group(0)
    # The campaign also shows in the campaigns block with its reason and deferred_until.
    campaign_row = re.search(rf'<tr data-campaign-id="{campaign.id}">.*?</tr>', html, re.S).group(0)
    assert "scheduled" in campaign_row and format_moment(at, UTC, "seconds") in campaign_row


def test_operations_page_shows_rate_limit_usage_against_the_maximum(app, admin_client):
    maximum = app.config["SETTINGS"].smtp_max_per_hour
    reserve_send_tokens(get_redis(), 3, maximum)

    html = admin_client.get("/admin/operations").get_data(as_text=True)

    assert re.search(rf'<p id="rate-limit-usage">3 / {maximum} sends in the rolling 60 minutes', html)


def test_managers_and_anonymous_users_are_refused(app, manager_client):
    for url in ("/admin/operations", "/admin/playbook/oncall", "/admin/playbook/observability?raw=1"):
        assert manager_client.get(url).status_code == 403, url
    anonymous = app.test_client()
    response = anonymous.get("/admin/operations")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_every_block_links_to_a_playbook_section_that_exists(admin_client):
    html = admin_client.get("/admin/operations").get_data(as_text=True)
    links = set(re.findall(r'href="(/admin/playbook/(\w+)#([\w-]+))"', html))
    assert len({key for key in re.findall(r'<section class="check" id="check-(\w+)"', html)}) == len(diagnosis.CHECK_KEYS)
    assert len(links) >= 8
    assert "Playbook: 2. Redis</a>" in html  # links read as the sections' titles, not file paths
    assert "playbook/ONCALL.md#" not in html
    pages: dict[str, str] = {}
    for _, name, anchor in links:
        if name not in pages:
            page = admin_client.get(f"/admin/playbook/{name}")
            assert page.status_code == 200
            pages[name] = page.get_data(as_text=True)
        assert f'id="{anchor}"' in pages[name], f"/admin/playbook/{name} has no section #{anchor}"


def test_the_playbook_page_renders_sql_and_links_between_the_files(admin_client):
    html = admin_client.get("/admin/playbook/oncall").get_data(as_text=True)
    assert '<h2 id="60-second-diagnosis">' in html
    assert '<pre><code class="language-sql">SELECT version_num FROM alembic_version;</code></pre>' in html
    assert 'href="/admin/playbook/observability"' in html  # [OBSERVABILITY.md](OBSERVABILITY.md)
    assert "<script" not in html.split("<main", 1)[1].split("</main>", 1)[0]

    raw = admin_client.get("/admin/playbook/oncall?raw=1")
    assert raw.mimetype == "text/plain"
    assert raw.get_data(as_text=True) == diagnosis.playbook_path("oncall").read_text(encoding="utf-8")
    assert admin_client.get("/admin/playbook/secrets").status_code == 404


def test_times_on_the_page_are_utc(admin_client):
    html = admin_client.get("/admin/operations").get_data(as_text=True)
    checked = re.search(r'<time datetime="([^"]+)" title="[^"]+ UTC" data-local="seconds">', html).group(1)
    assert datetime.fromisoformat(checked).utcoffset() == UTC.utcoffset(None)


def test_a_web_process_publishes_its_settings_and_the_page_shows_them_per_process_kind(
        app, app_env, admin_client, live_server):
    import os
    from urllib.request import urlopen

    from mailadmin.settings_in_effect import read_publications

    assert urlopen(live_server.url + "/healthz", timeout=10).status == 200
    [web] = [p for p in read_publications(get_redis()) if p.kind == "web"]
    assert web.pid == os.getpid() and web.values["MAILER_SMTP_MAX_PER_HOUR"] == app.config["SETTINGS"].smtp_max_per_hour

    html = admin_client.get("/admin/operations").get_data(as_text=True)

    row = re.search(r'<tr data-variable="MAILER_SMTP_MAX_PER_HOUR".*?</tr>', html, re.S).group(0)
    assert re.search(r'<td data-kind="web">100</td>', row), row
    assert 'class="differs"' not in row
    assert "1 web process agree with this web process" in html
