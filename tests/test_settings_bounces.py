"""Bounce and webhook settings: defaults, and every bad value refused with the variable's name."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from mailadmin.settings import SettingsError, load_settings


def _key_b64(key) -> str:
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


def test_defaults_pause_at_five_percent_and_leave_every_webhook_without_a_route():
    s = load_settings({})
    assert s.bounce_rate_pause_percent == 5
    assert s.complaint_rate_pause_percent == 0.3
    assert (s.bounce_address, s.bounce_imap_url, s.bounce_poll_seconds, s.webhook_max_age_seconds) == ("", "", 300, 300)
    assert not (s.webhook_sns_topic_arns or s.webhook_sendgrid_public_key or s.webhook_postmark_secret
                or s.webhook_mailgun_signing_key)


def test_valid_values_are_read():
    s = load_settings({
        "MAILER_BOUNCE_RATE_PAUSE_PERCENT": "0",
        "MAILER_COMPLAINT_RATE_PAUSE_PERCENT": " 0.08 ",
        "MAILER_BOUNCE_ADDRESS": "bounces@example.com",
        "MAILER_BOUNCE_IMAP_URL": "imaps://bounces:p%40ss@imap.example.com:993/INBOX?processed=Done",
        "MAILER_WEBHOOK_SNS_TOPIC_ARNS": "arn:aws:sns:eu-west-1:123456789012:a, arn:aws:sns:us-east-1:123456789012:b",
        "MAILER_WEBHOOK_SENDGRID_PUBLIC_KEY": _key_b64(ec.generate_private_key(ec.SECP256R1())),
        "MAILER_WEBHOOK_POSTMARK_SECRET": "s" * 16,
        "MAILER_WEBHOOK_MAILGUN_SIGNING_KEY": "key-" + "k" * 32,
    })
    assert s.bounce_rate_pause_percent == 0
    assert s.complaint_rate_pause_percent == 0.08
    assert load_settings({"MAILER_COMPLAINT_RATE_PAUSE_PERCENT": "0"}).complaint_rate_pause_percent == 0
    assert s.webhook_sns_topic_arns == ("arn:aws:sns:eu-west-1:123456789012:a", "arn:aws:sns:us-east-1:123456789012:b")


@pytest.mark.parametrize(("name", "value"), [
    ("MAILER_BOUNCE_RATE_PAUSE_PERCENT", "101"),
    ("MAILER_BOUNCE_RATE_PAUSE_PERCENT", "-1"),
    ("MAILER_BOUNCE_RATE_PAUSE_PERCENT", "five"),
    ("MAILER_COMPLAINT_RATE_PAUSE_PERCENT", "0,3"),
    ("MAILER_COMPLAINT_RATE_PAUSE_PERCENT", "0.3%"),
    ("MAILER_COMPLAINT_RATE_PAUSE_PERCENT", "-0.1"),
    ("MAILER_COMPLAINT_RATE_PAUSE_PERCENT", "101"),
    ("MAILER_COMPLAINT_RATE_PAUSE_PERCENT", "nan"),
    ("MAILER_BOUNCE_ADDRESS", "bounces+x@example.com"),
    ("MAILER_BOUNCE_ADDRESS", "not an address"),
    ("MAILER_BOUNCE_IMAP_URL", "pop3://u:p@host/INBOX"),
    ("MAILER_BOUNCE_IMAP_URL", "imaps://host/INBOX"),
    ("MAILER_BOUNCE_IMAP_URL", "imaps://u:p@host:port/INBOX"),
    ("MAILER_BOUNCE_POLL_SECONDS", "0"),
    ("MAILER_WEBHOOK_SNS_TOPIC_ARNS", "arn:aws:sqs:eu-west-1:123456789012:q"),
    ("MAILER_WEBHOOK_SENDGRID_PUBLIC_KEY", "not base64!"),
    ("MAILER_WEBHOOK_SENDGRID_PUBLIC_KEY", _key_b64(rsa.generate_private_key(public_exponent=65537, key_size=1024))),
    ("MAILER_WEBHOOK_POSTMARK_SECRET", "short"),
    ("MAILER_WEBHOOK_MAILGUN_SIGNING_KEY", "short"),
    ("MAILER_WEBHOOK_MAX_AGE_SECONDS", "0"),
])
def test_a_bad_value_is_refused_naming_its_variable(name, value):
    with pytest.raises(SettingsError) as refused:
        load_settings({name: value})
    message = str(refused.value)
    assert message.startswith(f"{name}:") and "\n" not in message
    assert value not in message or name.endswith(("PERCENT", "SECONDS"))  # secrets are never echoed


def test_production_refuses_a_plaintext_imap_mailbox():
    production = {"APP_ENV": "production", "SECRET_KEY": "k" * 40, "MAILER_LOG_HASH_SALT": "a-real-salt",
                  "PUBLIC_URL": "https://mail.example.com"}
    with pytest.raises(SettingsError, match="MAILER_BOUNCE_IMAP_URL: production needs imaps://"):
        load_settings({**production, "MAILER_BOUNCE_IMAP_URL": "imap://u:p@host/INBOX"})
