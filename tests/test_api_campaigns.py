"""The CRM's day on /api/v1: it makes a draft to a list, starts it once however often it retries,
watches its figures and pages its recipients; a token acts as its user and never more."""

from __future__ import annotations

from sqlalchemy import func, select

from mailadmin.extensions import db
from mailadmin.models import AuditEvent, Campaign, CampaignQueue
from tests import factories
from tests.factories import bearer

CONTENT = {"name": "December news", "subject": "Hello {{ name }}", "body_text": "Hi {{ name }},\nnews.\n"}


def _list_with_members(owner, count=3):
    mailing_list = factories.create_list(owner, "Customers")
    for index in range(count):
        factories.add_member(mailing_list, f"person{index}@example.com", name=f"Person {index}")
    return mailing_list


def test_a_draft_to_a_list_is_created_started_once_and_its_figures_read(client, manager):
    token = factories.api_token(manager)
    customers = _list_with_members(manager)

    created = client.post("/api/v1/campaigns", headers=bearer(token),
                          json={**CONTENT, "targets": {"lists": [customers.id]}})
    assert created.status_code == 201, created.json
    campaign_id = created.json["id"]
    assert created.headers["Location"].endswith(f"/api/v1/campaigns/{campaign_id}")
    assert created.json["status"] == "draft" and created.json["targets"]["lists"] == [customers.id]

    start = {"headers": bearer(token, **{"Idempotency-Key": "start-dec-news"}), "json": {}}
    first = client.post(f"/api/v1/campaigns/{campaign_id}/start", **start)
    retried = client.post(f"/api/v1/campaigns/{campaign_id}/start", **start)
    assert first.status_code == 200, first.json
    assert first.json["recipients"] == 3 and first.json["max_recipients"] >= 3
    assert first.json["campaign"]["status"] in ("queued", "deferred")
    assert (retried.status_code, retried.json) == (200, first.json)
    assert retried.headers["Idempotent-Replayed"] == "true"
    assert db.session.scalar(select(func.count()).select_from(CampaignQueue)
                             .where(CampaignQueue.campaign_id == campaign_id)) == 1
    starts = db.session.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "campaign_started", AuditEvent.campaign_id == campaign_id))
    assert starts == 1

    stats = client.get(f"/api/v1/campaigns/{campaign_id}/stats", headers=bearer(token))
    assert stats.status_code == 200
    assert stats.json["recipients_total"] == 3 and stats.json["pending"] == 3
    pending = client.get(f"/api/v1/campaigns/{campaign_id}/recipients?status=pending&limit=2", headers=bearer(token))
    assert [r["email"] for r in pending.json["items"]] == ["person0@example.com", "person1@example.com"]
    rest = client.get(pending.json["next"], headers=bearer(token))
    assert [r["email"] for r in rest.json["items"]] == ["person2@example.com"] and rest.json["next"] is None


def test_the_same_idempotency_key_with_another_body_is_refused(client, manager):
    token = factories.api_token(manager)
    headers = bearer(token, **{"Idempotency-Key": "k1"})
    assert client.post("/api/v1/campaigns", headers=headers, json=CONTENT).status_code == 201
    again = client.post("/api/v1/campaigns", headers=headers, json={**CONTENT, "name": "Other"})
    assert again.status_code == 422 and again.json["field"] == "Idempotency-Key"
    assert db.session.scalar(select(func.count()).select_from(Campaign)) == 1


def test_a_managers_token_cannot_see_or_start_another_managers_campaign(client, manager, other_manager):
    theirs = factories.create_campaign(other_manager, 2)
    token = factories.api_token(manager)
    for method, path in (("get", ""), ("get", "/stats"), ("get", "/recipients"), ("post", "/start"),
                         ("post", "/pause"), ("patch", "")):
        response = getattr(client, method)(f"/api/v1/campaigns/{theirs.id}{path}", headers=bearer(token),
                                           **({"json": {}} if method != "get" else {}))
        assert (response.status_code, response.mimetype) == (404, "application/problem+json"), (method, path)
    listed = client.get("/api/v1/campaigns", headers=bearer(token))
    assert listed.json["items"] == []
    assert factories.fresh_campaign(theirs.id).status == "draft"


def test_an_admins_token_sees_every_campaign(client, admin, manager):
    theirs = factories.create_campaign(manager, 1)
    token = factories.api_token(admin, "read")
    assert client.get(f"/api/v1/campaigns/{theirs.id}", headers=bearer(token)).json["owner_id"] == manager.id


def test_a_read_token_cannot_write_or_send(client, manager):
    token = factories.api_token(manager, "read")
    draft = factories.create_campaign(manager, 1)
    refused = client.post("/api/v1/campaigns", headers=bearer(token), json=CONTENT)
    assert refused.status_code == 403 and refused.json["type"].endswith("/missing-scope")
    assert client.post(f"/api/v1/campaigns/{draft.id}/start", headers=bearer(token), json={}).status_code == 403
    assert client.get(f"/api/v1/campaigns/{draft.id}", headers=bearer(token)).status_code == 200
    assert factories.fresh_campaign(draft.id).status == "draft"


def test_a_revoked_token_stops_working_at_once(client, manager):
    from mailadmin.services.api_tokens import find_token, revoke_token, tokens_of

    token = factories.api_token(manager)
    assert client.get("/api/v1/campaigns", headers=bearer(token)).status_code == 200
    revoke_token(find_token(tokens_of(manager)[0].id), actor=manager)
    refused = client.get("/api/v1/campaigns", headers=bearer(token))
    assert refused.status_code == 401 and refused.json["type"].endswith("/token-revoked")


def test_tokens_end_when_sessions_are_ended_the_password_changes_or_the_user_is_disabled(client, manager, admin):
    from mailadmin.services import users

    token = factories.api_token(manager)
    users.log_out(manager)  # a plain logout ends the browser's session, not the CRM's token
    assert client.get("/api/v1/campaigns", headers=bearer(token)).status_code == 200
    users.end_sessions(manager, actor=admin)
    assert client.get("/api/v1/campaigns", headers=bearer(token)).status_code == 401
    second = factories.api_token(manager)
    users.set_password(manager, "a new long passphrase 42", actor=manager)
    assert client.get("/api/v1/campaigns", headers=bearer(second)).status_code == 401
    third = factories.api_token(manager)
    users.set_active(manager, False, actor=admin)
    assert client.get("/api/v1/campaigns", headers=bearer(third)).status_code == 401


def test_a_missing_unknown_or_expired_token_is_401(client, manager):
    from mailadmin.models import ApiToken
    from mailadmin.models.types import utcnow

    assert client.get("/api/v1/campaigns").status_code == 401
    assert client.get("/api/v1/campaigns", headers=bearer("mla_not-a-token")).status_code == 401
    token = factories.api_token(manager, expires_in_days=1)
    db.session.execute(ApiToken.__table__.update().values(expires_at=utcnow()))
    db.session.commit()
    expired = client.get("/api/v1/campaigns", headers=bearer(token))
    assert expired.status_code == 401 and expired.json["type"].endswith("/token-expired")


def test_api_writes_are_in_the_audit_log_with_the_tokens_name(client, manager):
    token = factories.api_token(manager, name="Salesforce sync")
    created = client.post("/api/v1/campaigns", headers=bearer(token), json=CONTENT)
    client.patch(f"/api/v1/campaigns/{created.json['id']}", headers=bearer(token), json={"name": "Renamed"})
    events = db.session.scalars(select(AuditEvent).where(AuditEvent.campaign_id == created.json["id"])
                                .order_by(AuditEvent.id)).all()
    assert [(e.action, e.details["api_token"]) for e in events] == [
        ("draft_created", "Salesforce sync"), ("draft_edited", "Salesforce sync")]


def test_a_wrong_field_is_named_in_the_problem(client, manager):
    token = factories.api_token(manager)
    missing = client.post("/api/v1/campaigns", headers=bearer(token), json={**CONTENT, "subject": ""})
    assert missing.status_code == 422 and missing.mimetype == "application/problem+json"
    assert missing.json["field"] == "subject"
    template = client.post("/api/v1/campaigns", headers=bearer(token), json={**CONTENT, "body_text": "{{ oops"})
    assert template.status_code == 422 and template.json["field"] == "body_text"


def test_the_rate_limit_is_told_in_headers_and_enforced_with_retry_after(client, manager, app):
    from dataclasses import replace

    app.config["SETTINGS"] = replace(app.config["SETTINGS"], api_requests_per_minute=2)
    token = factories.api_token(manager)
    first = client.get("/api/v1/campaigns", headers=bearer(token))
    assert first.headers["RateLimit-Limit"] == "2" and first.headers["RateLimit-Remaining"] == "1"
    client.get("/api/v1/campaigns", headers=bearer(token))
    refused = client.get("/api/v1/campaigns", headers=bearer(token))
    assert refused.status_code == 429 and 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["RateLimit-Remaining"] == "0"


def test_a_body_over_the_limit_is_a_413_problem(client, manager):
    token = factories.api_token(manager)
    huge = {**CONTENT, "body_text": "x" * (6 * 1024 * 1024)}
    response = client.post("/api/v1/campaigns", headers=bearer(token), json=huge)
    assert (response.status_code, response.mimetype) == (413, "application/problem+json")


def test_no_cors_header_is_ever_sent(client, manager):
    token = factories.api_token(manager)
    response = client.get("/api/v1/campaigns", headers=bearer(token, Origin="https://evil.example"))
    assert not [name for name in response.headers.keys() if name.lower().startswith("access-control-")]


def test_two_simultaneous_starts_with_one_key_start_one_campaign(live_server, manager):
    import json
    import threading
    import urllib.error
    import urllib.request

    token = factories.api_token(manager)
    campaign_id = factories.create_campaign(manager, 5).id
    answers: list[int] = []
    barrier = threading.Barrier(4)

    def start() -> None:
        request = urllib.request.Request(
            f"{live_server.url}/api/v1/campaigns/{campaign_id}/start", data=json.dumps({}).encode(), method="POST",
            headers=bearer(token, **{"Idempotency-Key": "crm-retry-1", "Content-Type": "application/json"}))
        barrier.wait()
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                answers.append(response.status)
        except urllib.error.HTTPError as error:
            answers.append(error.code)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert 200 in answers and set(answers) <= {200, 409}, answers
    starts = db.session.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "campaign_started", AuditEvent.campaign_id == campaign_id))
    assert starts == 1
