"""Settings: defaults from the SPEC, every bad value named in one line, production guards."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mailadmin.settings import DEFAULT_HASH_SALT, SettingsError, load_settings

PRODUCTION = {
    "APP_ENV": "production",
    "SECRET_KEY": "k" * 40,
    "MAILER_LOG_HASH_SALT": "a-real-salt",
    "PUBLIC_URL": "https://mail.example.com",
}


def test_defaults_are_the_specs():
    s = load_settings({})
    assert (s.max_campaign_recipients, s.throttle_campaign_start_per_hour, s.throttle_test_email_per_hour) == (10000, 10, 5)
    assert (s.circuit_breaker_threshold, s.transient_retry_delay_minutes, s.smtp_max_per_hour) == (10, 5, 100)
    assert (s.log_pii_level, s.log_full_emails, s.log_hash_salt) == ("ERROR", False, DEFAULT_HASH_SALT)
    assert s.database_url.startswith("sqlite:///") and s.database_url.endswith("instance/mailadmin.sqlite3")
    assert s.log_format == "pretty" and s.app_env == "development"


def test_every_limit_is_read_from_its_variable():
    s = load_settings({"MAILER_MAX_CAMPAIGN_RECIPIENTS": "5000", "MAILER_SMTP_MAX_PER_HOUR": "20",
                       "MAILER_CIRCUIT_BREAKER_THRESHOLD": "3", "MAILER_LOG_FULL_EMAILS": "true",
                       "MAILER_LOG_PII_LEVEL": "warning"})
    assert s.max_campaign_recipients == 5000 and s.smtp_max_per_hour == 20 and s.circuit_breaker_threshold == 3
    assert s.log_full_emails is True and s.log_pii_level == "WARNING"


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("MAILER_SMTP_MAX_PER_HOUR", "abc", "MAILER_SMTP_MAX_PER_HOUR: expected a whole number >= 1, got 'abc'"),
        ("MAILER_SMTP_MAX_PER_HOUR", "-5", "MAILER_SMTP_MAX_PER_HOUR: expected a whole number >= 1, got '-5'"),
        ("MAILER_MAX_CAMPAIGN_RECIPIENTS", "1e4", "MAILER_MAX_CAMPAIGN_RECIPIENTS: expected a whole number"),
        ("MAILER_THROTTLE_CAMPAIGN_START_PER_HOUR", "0", "MAILER_THROTTLE_CAMPAIGN_START_PER_HOUR: expected"),
        ("MAILER_THROTTLE_TEST_EMAIL_PER_HOUR", "many", "MAILER_THROTTLE_TEST_EMAIL_PER_HOUR: expected"),
        ("MAILER_CIRCUIT_BREAKER_THRESHOLD", "ten", "MAILER_CIRCUIT_BREAKER_THRESHOLD: expected"),
        ("MAILER_TRANSIENT_RETRY_DELAY_MINUTES", "5m", "MAILER_TRANSIENT_RETRY_DELAY_MINUTES: expected"),
        ("MAILER_LOG_PII_LEVEL", "LOUD", "MAILER_LOG_PII_LEVEL: expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ("MAILER_LOG_FULL_EMAILS", "maybe", "MAILER_LOG_FULL_EMAILS: expected true or false"),
        ("APP_ENV", "staging", "APP_ENV: expected one of production, development"),
        ("LOG_FORMAT", "xml", "LOG_FORMAT: expected one of json, pretty"),
        ("DATABASE_URL", "mysql://x/y", "DATABASE_URL: expected a sqlite:// or postgres:// URL"),
        ("REDIS_URL", "http://localhost", "REDIS_URL: expected a redis://"),
        ("SMTP_URL", "imap://mail.example.com", "SMTP_URL: expected a scheme among smtp, smtp+starttls, smtps"),
        ("SMTP_URL", "smtp://mail.example.com:port", "SMTP_URL: the port is not a number"),
        ("MAIL_FROM", "nobody", "MAIL_FROM: expected one address"),
        ("PORT", "http", "PORT: expected a whole number"),
    ],
)
def test_a_bad_value_is_refused_naming_the_variable(name, value, expected):
    with pytest.raises(SettingsError) as caught:
        load_settings({name: value})
    message = str(caught.value)
    assert message.startswith(expected)
    assert "\n" not in message


def test_heroku_postgres_url_is_accepted():
    s = load_settings({"DATABASE_URL": "postgres://u:p@db.example.com:5432/app"})
    assert s.database_url == "postgresql+psycopg://u:p@db.example.com:5432/app"


def test_production_refuses_a_missing_or_weak_secret_key():
    with pytest.raises(SettingsError, match="^SECRET_KEY: production needs"):
        load_settings({**PRODUCTION, "SECRET_KEY": ""})
    with pytest.raises(SettingsError, match="^SECRET_KEY: production needs"):
        load_settings({**PRODUCTION, "SECRET_KEY": "short"})


def test_production_refuses_the_default_hash_salt():
    with pytest.raises(SettingsError, match="^MAILER_LOG_HASH_SALT: production refuses the default salt"):
        load_settings({**PRODUCTION, "MAILER_LOG_HASH_SALT": ""})


def test_production_defaults_to_json_logs():
    assert load_settings(PRODUCTION).log_format == "json"


def test_importing_the_package_has_no_side_effects():
    """A bad environment must not break a mere import (only create_app validates)."""
    code = "import mailadmin, mailadmin.models, mailadmin.extensions, mailadmin.settings; print('ok')"
    env = {"MAILER_SMTP_MAX_PER_HOUR": "abc", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=".")
    assert result.stdout.strip() == "ok", result.stderr


def test_web_process_refuses_to_start_with_a_bad_value():
    code = "import wsgi"
    env = {"MAILER_SMTP_MAX_PER_HOUR": "abc", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "MAILER_SMTP_MAX_PER_HOUR: expected a whole number >= 1, got 'abc'" in result.stderr


# --- PUBLIC_URL, TRUSTED_PROXIES, the development key ---------------------------------------


def test_production_refuses_a_missing_public_url_and_names_it():
    without = {k: v for k, v in PRODUCTION.items() if k != "PUBLIC_URL"}
    with pytest.raises(SettingsError, match="^PUBLIC_URL: required in production"):
        load_settings(without)


def test_the_web_process_refuses_to_start_in_production_without_public_url():
    env = {k: v for k, v in PRODUCTION.items() if k != "PUBLIC_URL"} | {"PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", "import wsgi"], env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "PUBLIC_URL: required in production" in result.stderr


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://mail.example.com\r", "PUBLIC_URL: must not contain spaces, line breaks or other control"),
        ("https://mail.example.com/\n", "PUBLIC_URL: must not contain spaces, line breaks or other control"),
        ("https://mail.exa mple.com", "PUBLIC_URL: must not contain spaces, line breaks or other control"),
        ("https://mail.example.com\x00", "PUBLIC_URL: must not contain spaces, line breaks or other control"),
        ("ftp://mail.example.com", "PUBLIC_URL: expected an http:// or https:// URL"),
        ("mail.example.com", "PUBLIC_URL: expected an http:// or https:// URL"),
        ("https://", "PUBLIC_URL: expected a host"),
        ("https://user:pw@mail.example.com", "PUBLIC_URL: expected a host"),
        ("https://mail.example.com:port", "PUBLIC_URL: the port is not a number"),
        ("https://mail.example.com/?a=1", "PUBLIC_URL: expected no ?query"),
    ],
)
def test_a_malformed_public_url_is_refused_in_every_environment(value, expected):
    for env in (PRODUCTION, {}):
        with pytest.raises(SettingsError) as caught:
            load_settings({**env, "PUBLIC_URL": value})
        assert str(caught.value).startswith(expected)


def test_a_good_public_url_loses_its_trailing_slash():
    assert load_settings({**PRODUCTION, "PUBLIC_URL": "https://mail.example.com/news/"}).public_url == (
        "https://mail.example.com/news")


def test_trusted_proxies_defaults_to_none_and_must_be_a_whole_number():
    assert load_settings({}).trusted_proxies == 0
    assert load_settings({"TRUSTED_PROXIES": "1"}).trusted_proxies == 1
    with pytest.raises(SettingsError, match="^TRUSTED_PROXIES: expected a whole number >= 0"):
        load_settings({"TRUSTED_PROXIES": "-1"})


def test_the_development_key_is_random_per_install_and_kept(tmp_path):
    first_install, second_install = tmp_path / "one", tmp_path / "two"
    first = load_settings({}, instance_dir=first_install).secret_key
    second = load_settings({}, instance_dir=second_install).secret_key

    assert len(first) >= 32 and first != second
    assert load_settings({}, instance_dir=first_install).secret_key == first  # kept across restarts
    key_file = first_install / "secret_key"
    assert key_file.read_text().strip() == first
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert load_settings({"SECRET_KEY": "mine-" + "x" * 40}, instance_dir=second_install).secret_key.startswith("mine-")


def test_no_published_key_is_left_in_the_source():
    import mailadmin.settings as settings_module

    assert not hasattr(settings_module, "DEV_SECRET_KEY")
    assert "dev-secret-key" not in open(settings_module.__file__).read()


# --- every bad variable at once ---------------------------------------------------------------

SEVERAL_BAD = {
    "APP_ENV": "production",
    "SECRET_KEY": "short",
    "MAILER_SMTP_MAX_PER_HOUR": "lots",
    "LOG_FORMAT": "json",
}
EXPECTED_LINES = [
    "MAILER_SMTP_MAX_PER_HOUR: expected a whole number >= 1, got 'lots'",
    "PUBLIC_URL: required in production",
    "SECRET_KEY: production needs a random value of at least 32 characters",
    "MAILER_LOG_HASH_SALT: production refuses the default salt",
]


def test_every_bad_or_missing_variable_is_named_at_once_one_line_each():
    with pytest.raises(SettingsError) as caught:
        load_settings(SEVERAL_BAD)

    lines = str(caught.value).splitlines()
    assert caught.value.problems == lines
    assert len(lines) == len(EXPECTED_LINES)
    for expected in EXPECTED_LINES:
        assert sum(line.startswith(expected) for line in lines) == 1, (expected, lines)


def test_bad_values_of_every_kind_are_all_reported_together():
    with pytest.raises(SettingsError) as caught:
        load_settings({"PORT": "http", "SMTP_URL": "imap://x", "MAILER_BOUNCE_RATE_PAUSE_PERCENT": "101",
                       "MAILER_WEBHOOK_POSTMARK_SECRET": "short", "APP_ENV": "staging"})
    named = [line.split(":")[0] for line in caught.value.problems]
    assert sorted(named) == sorted(["PORT", "SMTP_URL", "MAILER_BOUNCE_RATE_PAUSE_PERCENT",
                                    "MAILER_WEBHOOK_POSTMARK_SECRET", "APP_ENV"])


def test_the_web_process_refuses_to_start_naming_every_bad_variable_on_stderr():
    env = {**SEVERAL_BAD, "LOG_FORMAT": "pretty", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", "import wsgi"], env=env, capture_output=True, text=True)

    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == len(EXPECTED_LINES), result.stderr
    for expected in EXPECTED_LINES:
        assert any(line == f"mailadmin: configuration error: {expected}" or
                   line.startswith(f"mailadmin: configuration error: {expected}") for line in lines), result.stderr
