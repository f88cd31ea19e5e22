"""Sending a test email from the dashboard: real SMTP server, real Redis throttle."""

from __future__ import annotations

import json

import pytest

from mailadmin.pii import PII_FIELDS, get_pii_log_fields
from tests.factories import MANAGER_EMAIL, make_draft
from tests.support.web import flashes, submit


def send(client, campaign, to_address):
    url = f"/campaigns/{campaign.id}/test-email"
    return submit(client, url, {"to_address": to_address}, follow_redirects=True)


def test_the_form_offers_the_users_own_address(app, manager, manager_client):
    campaign = make_draft(manager)
    page = manager_client.get(f"/campaigns/{campaign.id}/test-email").get_data(as_text=True)
    assert f'value="{MANAGER_EMAIL}"' in page
    assert '<label for="to_address">' in page


def test_a_test_email_arrives_personalised_with_a_marked_subject(app, smtp, manager, manager_client):
    campaign = make_draft(
        manager, subject="News for {{ name }}", body_text="Hello {{ name }} from {{ city }}\n",
        recipients="email,name,city\nreal@example.com,Real Person,Oslo\n",
    )
    response = send(manager_client, campaign, "tester@example.net")
    assert ("success", "Test email sent to tester@example.net.") in flashes(response.get_data(as_text=True))
    assert smtp.wait_for(1)
    message = smtp.messages[0]
    assert message.rcpt_tos == ("tester@example.net",)
    assert message.subject == "[Test] News for Real Person"
    assert "Hello Real Person from Oslo" in message.parsed().get_body(("plain",)).get_content()
    assert smtp.count_for("real@example.com") == 0


def test_the_sixth_test_email_in_an_hour_is_refused_with_the_spec_text(app, smtp, manager, manager_client):
    campaign = make_draft(manager)
    for _ in range(5):
        response = send(manager_client, campaign, MANAGER_EMAIL)
        assert flashes(response.get_data(as_text=True))[0][0] == "success"
    response = send(manager_client, campaign, MANAGER_EMAIL)
    assert response.status_code == 429
    assert ("error", "Test email limit reached (5 test emails per hour).") in flashes(response.get_data(as_text=True))
    assert len(smtp.messages) == 5


@pytest.fixture
def two_test_emails_per_hour(app_env):
    app_env["MAILER_THROTTLE_TEST_EMAIL_PER_HOUR"] = "2"


def test_the_limit_message_names_the_configured_number(two_test_emails_per_hour, app, smtp, manager, manager_client):
    campaign = make_draft(manager)
    send(manager_client, campaign, MANAGER_EMAIL)
    send(manager_client, campaign, MANAGER_EMAIL)
    response = send(manager_client, campaign, MANAGER_EMAIL)
    assert ("error", "Test email limit reached (2 test emails per hour).") in flashes(response.get_data(as_text=True))


def test_a_test_email_is_refused_when_redis_is_down(app_with_own_redis, own_redis, smtp, manager, manager_client):
    campaign = make_draft(manager)
    own_redis.stop()
    response = send(manager_client, campaign, MANAGER_EMAIL)
    assert response.status_code == 503
    assert ("error", "Service temporarily unavailable. Please try again later.") in flashes(
        response.get_data(as_text=True)
    )
    assert smtp.messages == []


def test_an_invalid_address_is_refused_without_using_up_the_hourly_limit(app, smtp, manager, manager_client):
    campaign = make_draft(manager)
    for _ in range(6):
        response = send(manager_client, campaign, "not an address")
        assert response.status_code == 400
    assert flashes(response.get_data(as_text=True))[0][1].startswith("That is not a valid email address")
    response = send(manager_client, campaign, MANAGER_EMAIL)
    assert flashes(response.get_data(as_text=True))[0][0] == "success"


def test_an_smtp_refusal_is_shown_with_the_address_masked(app, smtp, manager, manager_client):
    campaign = make_draft(manager)
    smtp.reply_with(550, "5.1.1 <nobody@example.net> Mailbox unavailable", stage="rcpt")
    response = send(manager_client, campaign, "nobody@example.net")
    (category, text), = flashes(response.get_data(as_text=True))
    assert category == "error"
    assert text.startswith("The SMTP server did not accept the test email: SMTP 550")
    assert "nobody@example.net" not in text


def test_a_sent_test_email_is_logged_with_pii_safe_fields_only(app, smtp, manager, manager_client, log_records):
    campaign = make_draft(manager)
    send(manager_client, campaign, "Tester.Person@example.net")
    (record,) = [r for r in log_records if r["message"] == "Test email sent successfully"]
    extra = record["extra"]
    assert extra["campaign_id"] == campaign.id and extra["user_id"] == manager.id
    assert extra["email_domain"] == "example.net"
    # Exactly the fields the PII policy allows at INFO (never the full address).
    pii_fields = {key: extra[key] for key in PII_FIELDS if key in extra}
    assert pii_fields == get_pii_log_fields("Tester.Person@example.net", "INFO")
    assert "email" not in extra and "email_hash" in extra
    assert "tester.person" not in json.dumps(extra, default=str).lower()
