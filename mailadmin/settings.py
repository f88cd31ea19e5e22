"""Every environment variable the product reads, parsed and validated in one place.

`load_settings()` is called by the app factory and by `worker.py`; importing this
module has no side effect. Every bad or missing value is reported at once: `SettingsError`
holds one line per problem (`problems`), each naming its variable and what was expected, so
an operator fixes the whole configuration in one round instead of one variable per restart.

The limits marked `published(...)` in `Settings` are the ones every running process publishes
with its heartbeat (`mailadmin/settings_in_effect.py`) and the doctor compares: marking one
more field is all it takes to have it published, shown and compared.

Outside production, a missing `SECRET_KEY` is replaced by this install's own random key,
generated once and kept in `instance/secret_key` (mode 0600): no published key ever signs
a session or an unsubscribe link.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mailadmin.settings_parsers import (  # noqa: F401  (PROJECT_ROOT, INSTANCE_DIR, SettingsError: imported from here)
    INSTANCE_DIR,
    PROJECT_ROOT,
    SMTP_SCHEMES,
    SettingsError,
    _bool,
    _bounce_address,
    _choice,
    _database_url,
    _imap_url,
    _mail_from,
    _percent,
    _positive_int,
    _public_url,
    _redis_url,
    _sendgrid_public_key,
    _shared_secret,
    _smtp_url,
    _sns_topic_arns,
)

DEFAULT_HASH_SALT = "default-salt-change-in-production"
SECRET_KEY_FILE = "secret_key"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


_PUBLISHED = "published"


def published(default: Any) -> Any:
    """A `Settings` field every process publishes with its heartbeat, for the doctor to show and compare."""
    return field(default=default, metadata={_PUBLISHED: True})


@dataclass(frozen=True)
class Settings:
    """The validated configuration. Attribute names are the variables' names, lower-cased."""

    # Limits (SPEC "Limits")
    max_campaign_recipients: int = published(10000)
    throttle_campaign_start_per_hour: int = published(10)
    throttle_test_email_per_hour: int = published(5)
    circuit_breaker_threshold: int = published(10)
    transient_retry_delay_minutes: int = published(5)
    smtp_max_per_hour: int = published(100)
    # SPEC "Sending fast and politely": SMTP connections one worker uses at once for a
    # campaign, and the provider's per-second cap across all workers (0 = off).
    smtp_connections: int = published(4)
    smtp_max_per_second: int = published(0)
    # Login brute-force protection: failed attempts per 15 minutes, per account from one IP, per
    # account from anywhere (a much higher bar: the owner is not locked out by others), per IP.
    throttle_login_per_account_ip: int = published(10)
    throttle_login_per_account: int = published(100)
    throttle_login_per_ip: int = published(50)
    # Send loop slicing: a job claims `send_batch_size` recipients at a time and hands over to a
    # fresh job after `send_slice_seconds`, so SIGTERM never catches a long job.
    send_batch_size: int = published(50)
    send_slice_seconds: int = published(20)
    # How many slices of one campaign may run at once on different workers (fan-out at start);
    # 0 = as many as there are workers on the send queue when the campaign starts sending.
    send_parallel_slices: int = published(0)
    # A recipient left `sending` longer than this by a dead job becomes `unknown`.
    stale_claim_seconds: int = published(120)
    schedule_max_late_minutes: int = published(60)
    max_upload_mb: int = published(5)
    api_requests_per_minute: int = published(120)  # per API token (SPEC "The REST API")
    # Logging / PII
    log_pii_level: str = "ERROR"
    log_full_emails: bool = False
    log_hash_salt: str = DEFAULT_HASH_SALT
    log_format: str = "pretty"
    # Infrastructure
    app_env: str = "development"
    database_url: str = ""
    redis_url: str = "redis://127.0.0.1:6379/0"
    secret_key: str = ""
    smtp_url: str = "smtp://127.0.0.1:8025"
    smtp_timeout_seconds: int = published(30)
    mail_from: str = "mailadmin <noreply@localhost>"
    public_url: str = "http://127.0.0.1:5000"
    # Reverse proxies in front of the web process whose X-Forwarded-* headers are believed.
    trusted_proxies: int = 0
    port: int = 5000
    # Bounces and complaints (SPEC "Bounces and complaints")
    bounce_rate_pause_percent: int = published(5)
    # Spam complaints alone that pause a campaign (after 1,000 sent): the mailbox providers' own line.
    complaint_rate_pause_percent: float = published(0.3)
    bounce_address: str = ""
    bounce_imap_url: str = ""
    bounce_poll_seconds: int = published(300)
    webhook_sns_topic_arns: tuple[str, ...] = ()
    webhook_sendgrid_public_key: str = ""
    webhook_postmark_secret: str = ""
    webhook_mailgun_signing_key: str = ""
    metrics_token: str = ""  # the bearer token of /metrics; empty: no endpoint, nothing counted
    webhook_max_age_seconds: int = published(300)
    # Events out (SPEC "Events out"): attempts of one event, the first retry's delay (doubling), per-attempt time-out.
    events_max_attempts: int = published(15)
    events_retry_base_seconds: int = published(5)
    events_timeout_seconds: int = published(5)

    @property
    def is_production(self) -> bool:
        return self.app_env == "production"


def instance_secret_key(instance_dir: Path = INSTANCE_DIR) -> str:
    """This install's development key: random, made once, kept in `instance_dir/secret_key` (0600).

    Several processes may start at once (make run's web, worker, scheduler): the key is written to a
    private temporary file and hard-linked into place, so the first one wins and all read the same key.
    """
    path = instance_dir / SECRET_KEY_FILE
    if not path.exists():
        instance_dir.mkdir(parents=True, exist_ok=True)
        temporary = instance_dir / f".{SECRET_KEY_FILE}.{os.getpid()}"
        temporary.unlink(missing_ok=True)
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process got there first: use its key
        finally:
            temporary.unlink()
    return path.read_text().strip()


_INT_LIMITS = {
    "MAILER_MAX_CAMPAIGN_RECIPIENTS": "max_campaign_recipients",
    "MAILER_THROTTLE_CAMPAIGN_START_PER_HOUR": "throttle_campaign_start_per_hour",
    "MAILER_THROTTLE_TEST_EMAIL_PER_HOUR": "throttle_test_email_per_hour",
    "MAILER_CIRCUIT_BREAKER_THRESHOLD": "circuit_breaker_threshold",
    "MAILER_TRANSIENT_RETRY_DELAY_MINUTES": "transient_retry_delay_minutes",
    "MAILER_SMTP_MAX_PER_HOUR": "smtp_max_per_hour",
    "MAILER_THROTTLE_LOGIN_PER_ACCOUNT_IP": "throttle_login_per_account_ip",
    "MAILER_THROTTLE_LOGIN_PER_ACCOUNT": "throttle_login_per_account",
    "MAILER_THROTTLE_LOGIN_PER_IP": "throttle_login_per_ip",
    "MAILER_SEND_BATCH_SIZE": "send_batch_size",
    "MAILER_SEND_SLICE_SECONDS": "send_slice_seconds",
    "MAILER_STALE_CLAIM_SECONDS": "stale_claim_seconds",
    "MAILER_SCHEDULE_MAX_LATE_MINUTES": "schedule_max_late_minutes",
    "MAILER_MAX_UPLOAD_MB": "max_upload_mb",
    "MAILER_API_REQUESTS_PER_MINUTE": "api_requests_per_minute",
    "SMTP_TIMEOUT_SECONDS": "smtp_timeout_seconds",
    "MAILER_BOUNCE_POLL_SECONDS": "bounce_poll_seconds",
    "MAILER_WEBHOOK_MAX_AGE_SECONDS": "webhook_max_age_seconds",
    "TRUSTED_PROXIES": "trusted_proxies",
    "PORT": "port",
    "MAILER_SMTP_CONNECTIONS": "smtp_connections",
    "MAILER_SMTP_MAX_PER_SECOND": "smtp_max_per_second",
    "MAILER_SEND_PARALLEL_SLICES": "send_parallel_slices",
    **{f"MAILER_EVENTS_{attr.upper()}": f"events_{attr}" for attr in ("max_attempts", "retry_base_seconds", "timeout_seconds")},
}


# Variables whose smallest valid value is 0: none (proxies), off (per-second cap), one per worker (parallel slices).
_ZERO_ALLOWED = {"TRUSTED_PROXIES", "MAILER_SMTP_MAX_PER_SECOND", "MAILER_SEND_PARALLEL_SLICES"}

Parser = Callable[[str, str], Any]
"""(variable name, raw value) -> the parsed value; raises SettingsError naming the variable."""


def _whole_number(minimum: int) -> Parser:
    return lambda name, raw: _positive_int(name, raw, minimum)


def _whole_percent(name: str, raw: str) -> int:
    value = _positive_int(name, raw, minimum=0)
    if value > 100:
        raise SettingsError(f"{name}: expected 0 (off) to 100")
    return value


def _as_given(_name: str, raw: str) -> str:
    return raw


# Every variable read as it is given (no default depending on another variable): name -> (attribute,
# parser). An unset or blank variable keeps the attribute's default. Adding a variable is one line here.
_VARIABLES: dict[str, tuple[str, Parser]] = {
    **{name: (attr, _whole_number(0 if name in _ZERO_ALLOWED else 1)) for name, attr in _INT_LIMITS.items()},
    "MAILER_LOG_PII_LEVEL": ("log_pii_level", lambda name, raw: _choice(name, raw, LOG_LEVELS, upper=True)),
    "MAILER_LOG_FULL_EMAILS": ("log_full_emails", _bool),
    "MAILER_LOG_HASH_SALT": ("log_hash_salt", _as_given),
    "REDIS_URL": ("redis_url", _redis_url),
    "SMTP_URL": ("smtp_url", _smtp_url),
    "MAIL_FROM": ("mail_from", _mail_from),
    "MAILER_BOUNCE_RATE_PAUSE_PERCENT": ("bounce_rate_pause_percent", _whole_percent),
    "MAILER_COMPLAINT_RATE_PAUSE_PERCENT": ("complaint_rate_pause_percent", _percent),
    "MAILER_BOUNCE_ADDRESS": ("bounce_address", lambda _name, raw: _bounce_address(raw)),
    "MAILER_BOUNCE_IMAP_URL": ("bounce_imap_url", lambda _name, raw: _imap_url(raw)),
    "MAILER_WEBHOOK_SNS_TOPIC_ARNS": ("webhook_sns_topic_arns", lambda _name, raw: _sns_topic_arns(raw)),
    "MAILER_WEBHOOK_SENDGRID_PUBLIC_KEY": ("webhook_sendgrid_public_key", lambda _name, raw: _sendgrid_public_key(raw)),
    "MAILER_WEBHOOK_POSTMARK_SECRET": ("webhook_postmark_secret", _shared_secret),
    "MAILER_WEBHOOK_MAILGUN_SIGNING_KEY": ("webhook_mailgun_signing_key", _shared_secret),
    "MAILER_METRICS_TOKEN": ("metrics_token", _shared_secret),
}
# An older name still read when the current one is not set.
_ALIASES = {"MAILER_WEBHOOK_SNS_TOPIC_ARN": "MAILER_WEBHOOK_SNS_TOPIC_ARNS"}


class _Reader:
    """Reads variables from one environment, keeping every problem instead of stopping at the first."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = dict(env)
        for old, current in _ALIASES.items():
            if self.get(current) is None and self.get(old) is not None:
                self.env[current] = self.env[old]
        self.problems: list[str] = []

    def get(self, name: str) -> str | None:
        """The raw value, or None when unset or blank."""
        raw = self.env.get(name)
        return None if raw is None or raw.strip() == "" else raw

    def read(self, name: str, parse: Parser) -> Any:
        """The parsed value of `name` (None when unset, or when bad: the problem is kept)."""
        raw = self.get(name)
        if raw is None:
            return None
        try:
            return parse(name, raw)
        except SettingsError as exc:
            self.problems.extend(exc.problems)
            return None

    def read_all(self, variables: Mapping[str, tuple[str, Parser]]) -> dict[str, Any]:
        """{attribute: value} of every variable that is set and valid."""
        values = {}
        for name, (attr, parse) in variables.items():
            value = self.read(name, parse)
            if value is not None:
                values[attr] = value
        return values


def load_settings(environ: Mapping[str, str] | None = None, *, instance_dir: Path = INSTANCE_DIR) -> Settings:
    """Parse and validate the configuration from `environ` (default: the process environment).

    Raises `SettingsError` listing every invalid or missing variable, one line each.
    `instance_dir` holds the development secret key when `SECRET_KEY` is not set.
    """
    reader = _Reader(os.environ if environ is None else environ)
    values = reader.read_all(_VARIABLES)
    app_env = reader.read("APP_ENV", lambda name, raw: _choice(name, raw, ("production", "development")))
    values["app_env"] = app_env = app_env or "development"
    values["log_format"] = reader.read("LOG_FORMAT", lambda name, raw: _choice(name, raw, ("json", "pretty"))) or (
        "json" if app_env == "production" else "pretty")
    values["database_url"] = reader.read("DATABASE_URL", lambda _name, raw: _database_url(raw)) or _database_url(None)
    public_url = reader.read("PUBLIC_URL", _public_url)
    values["public_url"] = public_url or f"http://127.0.0.1:{values.get('port', Settings.port)}"
    if app_env == "production":
        reader.problems.extend(_production_problems(reader, values, public_url_given=reader.get("PUBLIC_URL")))
    if reader.problems:
        raise SettingsError(*reader.problems)
    values["secret_key"] = reader.get("SECRET_KEY") or instance_secret_key(instance_dir)
    return Settings(**values)


def _production_problems(reader: _Reader, values: dict[str, Any], *, public_url_given: str | None) -> list[str]:
    """What production requires beyond well-formed values: every missing or unsafe one."""
    problems = []
    if public_url_given is None:
        problems.append("PUBLIC_URL: required in production (the base of unsubscribe links, e.g. https://mail.example.com)")
    secret = reader.get("SECRET_KEY")
    if not secret or len(secret) < 32:
        problems.append("SECRET_KEY: production needs a random value of at least 32 characters")
    if values.get("log_hash_salt", DEFAULT_HASH_SALT) == DEFAULT_HASH_SALT:
        problems.append("MAILER_LOG_HASH_SALT: production refuses the default salt; set a random value")
    if urlsplit(values.get("bounce_imap_url", "")).scheme == "imap":
        problems.append("MAILER_BOUNCE_IMAP_URL: production needs imaps:// (the password would travel in clear)")
    return problems


def variable_names() -> dict[str, str]:
    """Settings attribute -> the environment variable it is read from."""
    names = {attr: name for name, (attr, _parse) in _VARIABLES.items()}
    names.update(app_env="APP_ENV", log_format="LOG_FORMAT", database_url="DATABASE_URL", public_url="PUBLIC_URL", secret_key="SECRET_KEY")
    return names


def published_values(settings: Settings) -> dict[str, Any]:
    """The published limits of `settings` by variable name, in the order `Settings` declares them."""
    names = variable_names()
    return {names[f.name]: getattr(settings, f.name) for f in fields(Settings) if f.metadata.get(_PUBLISHED)}
