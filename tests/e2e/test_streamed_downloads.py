"""Every streamed download read to its last byte through a real HTTP server.

The Flask test client runs a streamed body inside the test's own app context, so a generator that
reads the database after the view returned passes there and breaks under a real server (200, then
the body stops). These tests read each download from the live server, over several read batches,
and check every row and the last one; the last test finds every streamed download in the code, so
a new one cannot be left out of this file.
"""

from __future__ import annotations

import ast
import csv
import io
from pathlib import Path

import pytest

import mailadmin
from mailadmin.services.batches import DEFAULT_BATCH
from tests.factories import ADMIN_EMAIL, MANAGER_EMAIL, create_campaign, create_suppressions, recipient_address
from tests.support.live_client import LiveClient

PACKAGE_DIR = Path(mailadmin.__file__).resolve().parent

# Each streamed download of the product -> the test below that reads it through the live server.
STREAMED_DOWNLOADS = {
    "admin/suppressions.py:export_suppressions": "test_the_whole_suppression_list_downloads_through_a_real_server",
    "campaigns/exports.py:export": "test_a_large_campaigns_results_download_through_a_real_server",
    "audiences/members.py:export_members": "test_a_large_lists_members_download_through_a_real_server",
    "audiences/imports.py:rejected_rows": "test_an_imports_rejected_rows_download_chunk_by_chunk_through_a_real_server",
}


def csv_rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


@pytest.fixture
def admin_http(live_server, admin) -> LiveClient:
    client = LiveClient(live_server.url)
    client.login(ADMIN_EMAIL)
    return client


def test_the_whole_suppression_list_downloads_through_a_real_server(admin_http):
    count = 2 * DEFAULT_BATCH + 500  # three read batches
    bounced = [f"bounced{n:05d}@example.com" for n in range(count - 100)]
    complained = [f"complained{n:05d}@example.org" for n in range(100)]
    create_suppressions(bounced, reason="hard_bounce", source="ses")
    create_suppressions(complained, reason="complaint", source="sendgrid")

    response = admin_http.request("/admin/suppressions/export.csv")
    assert response.status == 200 and response.headers["Content-Type"].startswith("text/csv")
    rows = csv_rows(response.text)
    assert rows[0] == ["email", "reason", "source", "note", "campaign_id", "created_at"]
    assert [row[0] for row in rows[1:]] == bounced + complained  # every row, oldest first, none twice
    assert rows[-1][:3] == ["complained00099@example.org", "complaint", "sendgrid"]

    # The filters are read from the request before it ends, and still apply to the streamed rows.
    only = csv_rows(admin_http.request("/admin/suppressions/export.csv?reason=complaint").text)
    assert [row[0] for row in only[1:]] == complained


def test_a_large_campaigns_results_download_through_a_real_server(live_server, manager):
    count = 2 * DEFAULT_BATCH + 700
    campaign = create_campaign(manager, count)
    client = LiveClient(live_server.url)
    client.login(MANAGER_EMAIL)

    response = client.request(f"/campaigns/{campaign.id}/results.csv")
    assert response.status == 200
    assert f'filename="campaign-{campaign.id}-results.csv"' in response.headers["Content-Disposition"]
    rows = csv_rows(response.text)
    assert rows[0] == ["email", "name", "status", "attempts", "smtp_code", "last_error", "soft_bounces", "sent_at"]
    assert [row[0] for row in rows[1:]] == [recipient_address(n) for n in range(count)]
    assert rows[-1] == [recipient_address(count - 1), f"Person {count - 1}", "pending", "0", "", "", "0", ""]


def test_a_large_lists_members_download_through_a_real_server(live_server, app_env, manager):
    from mailadmin.services.audiences.imports import begin_import
    from mailadmin.services.audiences.lists import create_list
    from tests.support.jobs import run_queued_jobs

    count = 2 * DEFAULT_BATCH + 300
    members = create_list(manager, "Customers")
    addresses = [f"member{n:05d}@example.com" for n in range(count)]
    upload = "email,plan\n" + "".join(f"{address},pro\n" for address in addresses)
    begin_import(manager, members.id, io.BytesIO(upload.encode()), "customers.csv", "update", "subscribed")
    run_queued_jobs(app_env["REDIS_URL"])
    client = LiveClient(live_server.url)
    client.login(MANAGER_EMAIL)

    response = client.request(f"/audiences/lists/{members.id}/members.csv")
    assert response.status == 200
    assert f'filename="list-{members.id}-members.csv"' in response.headers["Content-Disposition"]
    rows = csv_rows(response.text)
    assert rows[0] == ["email", "name", "status", "attributes", "joined_at", "status_changed_at"]
    assert sorted(row[0] for row in rows[1:]) == addresses  # every member once, across three read batches
    assert rows[-1][2:4] == ["subscribed", '{"plan": "pro"}']


def test_an_imports_rejected_rows_download_chunk_by_chunk_through_a_real_server(
        live_server, app_env, manager, monkeypatch):
    from mailadmin.services.audiences import import_store
    from mailadmin.services.audiences.imports import begin_import
    from mailadmin.services.audiences.lists import create_list
    from tests.support.jobs import run_queued_jobs

    monkeypatch.setattr(import_store, "CHUNK_BYTES", 100)  # the rejected rows stored in many chunks
    members = create_list(manager, "Customers")
    bad = [f"not-an-address-{n}" for n in range(200)]
    upload = "email,plan\nann@example.com,pro\n" + "".join(f"{cell},free\n" for cell in bad)
    record = begin_import(manager, members.id, io.BytesIO(upload.encode()), "people.csv", "update", "subscribed")
    run_queued_jobs(app_env["REDIS_URL"])
    client = LiveClient(live_server.url)
    client.login(MANAGER_EMAIL)

    response = client.request(f"/audiences/imports/{record.id}/rejected.csv")
    assert response.status == 200
    assert f'filename="import-{record.id[:8]}-rejected.csv"' in response.headers["Content-Disposition"]
    rows = csv_rows(response.text)
    assert rows[0] == ["row", "reason", "email", "plan"]
    assert [row[2] for row in rows[1:]] == bad and rows[-1][0] == "202"  # every rejected row, to the last


def _streamed_downloads() -> set[str]:
    """`file:function` of every view that returns a streamed body: a `csv_download(...)`, a
    `stream_with_context(...)`, or a `Response(...)` whose body is a call of a generator function."""
    found = set()
    for path in PACKAGE_DIR.rglob("*.py"):
        if path.name == "downloads.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        generators = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and any(
            isinstance(inner, (ast.Yield, ast.YieldFrom)) for inner in ast.walk(node))}
        for function in ast.walk(tree):
            if isinstance(function, ast.FunctionDef) and any(
                isinstance(call, ast.Call) and _streams(call, generators) for call in ast.walk(function)
            ):
                found.add(f"{path.relative_to(PACKAGE_DIR)}:{function.name}")
    return found


def _name(call: ast.Call) -> str | None:
    return getattr(call.func, "id", None) or getattr(call.func, "attr", None)


def _streams(call: ast.Call, generators: set[str]) -> bool:
    if _name(call) in ("csv_download", "stream_with_context"):
        return True
    body = call.args[0] if call.args else None
    return _name(call) == "Response" and isinstance(body, ast.Call) and _name(body) in generators


def test_every_streamed_download_is_read_through_the_live_server_here():
    assert _streamed_downloads() == set(STREAMED_DOWNLOADS)
    assert all(name in globals() for name in STREAMED_DOWNLOADS.values())
