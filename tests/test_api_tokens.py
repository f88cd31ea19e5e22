"""API tokens as people and operators handle them: made on the account page (shown once) or by the
CLI (only the token on stdout), listed with their last use, revoked from either."""

from __future__ import annotations

import re

from sqlalchemy import select

from mailadmin.extensions import db
from mailadmin.models import ApiToken
from mailadmin.services.api_tokens import hash_token
from tests.factories import bearer
from tests.support.forms import csrf_token_from


def test_a_manager_creates_a_token_on_the_account_page_and_sees_it_once(manager_client, manager, client):
    page = manager_client.get("/account/tokens")
    response = manager_client.post("/account/tokens", data={
        "csrf_token": csrf_token_from(page.get_data(as_text=True)), "name": "CRM sync", "scopes": ["read", "write"], "expires_days": "30"})
    assert response.status_code == 201
    secret = re.search(r'id="new-token-value">(mla_[\w-]+)<', response.get_data(as_text=True)).group(1)
    stored = db.session.scalar(select(ApiToken))
    assert stored.token_hash == hash_token(secret) and secret not in stored.token_hash
    assert (stored.name, stored.scopes, stored.expires_at is not None) == ("CRM sync", "read,write", True)
    assert client.get("/api/v1/campaigns", headers=bearer(secret)).status_code == 200

    again = manager_client.get("/account/tokens").get_data(as_text=True)
    assert secret not in again and "CRM sync" in again and stored.prefix in again


def test_revoking_on_the_page_stops_the_token(manager_client, manager, client):
    from tests import factories

    secret = factories.api_token(manager, name="old script")
    token_id = db.session.scalar(select(ApiToken.id))
    page = manager_client.get("/account/tokens")
    response = manager_client.post(f"/account/tokens/{token_id}/revoke", data={"csrf_token": csrf_token_from(page.get_data(as_text=True))})
    assert response.status_code == 303
    assert client.get("/api/v1/campaigns", headers=bearer(secret)).status_code == 401


def test_a_manager_cannot_revoke_another_users_token(manager_client, other_manager):
    from tests import factories

    factories.api_token(other_manager)
    token_id = db.session.scalar(select(ApiToken.id))
    page = manager_client.get("/account/tokens")
    assert manager_client.post(f"/account/tokens/{token_id}/revoke",
                               data={"csrf_token": csrf_token_from(page.get_data(as_text=True))}).status_code == 404
    assert db.session.get(ApiToken, token_id).revoked_at is None


def test_the_cli_prints_only_the_token_and_lists_and_revokes_it(app, manager, client):
    runner = app.test_cli_runner()
    made = runner.invoke(args=["tokens", "create", manager.email, "--name", "nightly export",
                               "--scopes", "read,send", "--expires-days", "7"])
    assert made.exit_code == 0, made.output
    secret = made.stdout.strip()
    assert re.fullmatch(r"mla_[\w-]{43}", secret)
    assert client.get("/api/v1/campaigns", headers=bearer(secret)).status_code == 200

    listed = runner.invoke(args=["tokens", "list", manager.email])
    assert "nightly export" in listed.output and "read,send" in listed.output and secret not in listed.output
    token_id = listed.output.split("\t")[0]
    assert runner.invoke(args=["tokens", "revoke", token_id]).exit_code == 0
    assert client.get("/api/v1/campaigns", headers=bearer(secret)).status_code == 401


def test_the_cli_refuses_an_unknown_scope(app, manager):
    result = app.test_cli_runner().invoke(args=["tokens", "create", manager.email, "--name", "x", "--scopes", "admin"])
    assert result.exit_code != 0 and "Unknown scope" in result.output
