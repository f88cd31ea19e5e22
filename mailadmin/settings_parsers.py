"""How one environment variable's text becomes a value, or a problem naming the variable: the parsers
`mailadmin/settings.py` applies (kept apart so that module stays the list of settings)."""

from __future__ import annotations

import base64
import binascii
import re
from pathlib import Path
from urllib.parse import urlsplit

SMTP_SCHEMES = ("smtp", "smtp+starttls", "smtps")
PROJECT_ROOT = Path(__file__).resolve().parent.parent
INSTANCE_DIR = PROJECT_ROOT / "instance"

class SettingsError(ValueError):
    """Configuration values are missing or malformed: one line per problem, each naming its variable."""

    def __init__(self, *problems: str) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(problems))


def _positive_int(name: str, raw: str, minimum: int = 1) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise SettingsError(f"{name}: expected a whole number >= {minimum}, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name}: expected a whole number >= {minimum}, got {raw!r}")
    return value


def _percent(name: str, raw: str) -> float:
    """A percentage from 0 (off) to 100; decimals allowed (0.3)."""
    try:
        value = float(raw.strip())
    except ValueError:
        value = -1.0
    if not 0 <= value <= 100:  # also NaN
        raise SettingsError(f"{name}: expected a percentage from 0 (off) to 100, e.g. 0.3, got {raw!r}")
    return value


def _bool(name: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise SettingsError(f"{name}: expected true or false, got {raw!r}")


def _choice(name: str, raw: str, choices: tuple[str, ...], *, upper: bool = False) -> str:
    value = raw.strip().upper() if upper else raw.strip().lower()
    if value not in choices:
        raise SettingsError(f"{name}: expected one of {', '.join(choices)}, got {raw!r}")
    return value


def _database_url(raw: str | None) -> str:
    if not raw:
        return f"sqlite:///{INSTANCE_DIR / 'mailadmin.sqlite3'}"
    # Heroku still hands out the pre-SQLAlchemy-1.4 scheme.
    if raw.startswith("postgres://"):
        raw = "postgresql://" + raw[len("postgres://") :]
    if raw.startswith("postgresql://"):
        raw = "postgresql+psycopg://" + raw[len("postgresql://") :]
    scheme = urlsplit(raw).scheme
    if not (scheme.startswith("sqlite") or scheme.startswith("postgresql")):
        raise SettingsError(f"DATABASE_URL: expected a sqlite:// or postgres:// URL, got scheme {scheme!r}")
    return raw


def _redis_url(_name: str, raw: str) -> str:
    if urlsplit(raw).scheme not in ("redis", "rediss", "unix"):
        raise SettingsError("REDIS_URL: expected a redis://, rediss:// or unix:// URL")
    return raw


def _smtp_url(_name: str, raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in SMTP_SCHEMES:
        raise SettingsError(f"SMTP_URL: expected a scheme among {', '.join(SMTP_SCHEMES)}, got {parts.scheme!r}")
    try:
        _ = parts.port  # urlsplit validates the port lazily
    except ValueError:
        raise SettingsError("SMTP_URL: the port is not a number") from None
    if not parts.hostname:
        raise SettingsError("SMTP_URL: expected a host, e.g. smtp://user:password@smtp.example.com:587")
    return raw


def _mail_from(_name: str, raw: str) -> str:
    if "\r" in raw or "\n" in raw or "@" not in raw:
        raise SettingsError("MAIL_FROM: expected one address, e.g. 'News <news@example.com>'")
    return raw


def _public_url(_name: str, raw: str) -> str:
    """An absolute http(s) base URL with a host, no whitespace or control characters (they end up in headers)."""
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in raw):
        raise SettingsError("PUBLIC_URL: must not contain spaces, line breaks or other control characters")
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https"):
        raise SettingsError("PUBLIC_URL: expected an http:// or https:// URL (used in unsubscribe links)")
    try:
        _ = parts.port  # urlsplit validates the port lazily
    except ValueError:
        raise SettingsError("PUBLIC_URL: the port is not a number") from None
    if not parts.hostname or parts.username or parts.password:
        raise SettingsError("PUBLIC_URL: expected a host and nothing else before it, e.g. https://mail.example.com")
    if parts.query or parts.fragment:
        raise SettingsError("PUBLIC_URL: expected no ?query or #fragment, e.g. https://mail.example.com")
    return raw.rstrip("/")


_SNS_TOPIC_ARN = re.compile(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}")
_MIN_SHARED_SECRET = 16


def _bounce_address(raw: str) -> str:
    local, at, domain = raw.strip().rpartition("@")
    if not at or not local or not domain or "+" in local or any(c in raw for c in " <>\r\n"):
        raise SettingsError("MAILER_BOUNCE_ADDRESS: expected a plain address without '+', e.g. bounces@example.com")
    return raw.strip()


def _imap_url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("imaps", "imap"):
        raise SettingsError("MAILER_BOUNCE_IMAP_URL: expected imaps://user:password@host:993/INBOX")
    try:
        _ = parts.port
    except ValueError:
        raise SettingsError("MAILER_BOUNCE_IMAP_URL: the port is not a number") from None
    if not parts.hostname or not parts.username or parts.password is None:
        raise SettingsError("MAILER_BOUNCE_IMAP_URL: expected a user, a password and a host")
    return raw


def _sns_topic_arns(raw: str) -> tuple[str, ...]:
    arns = tuple(part.strip() for part in raw.split(",") if part.strip())
    for arn in arns:
        if not _SNS_TOPIC_ARN.fullmatch(arn):
            raise SettingsError("MAILER_WEBHOOK_SNS_TOPIC_ARNS: expected arn:aws:sns:<region>:<account>:<topic>, ...")
    return arns


def _sendgrid_public_key(raw: str) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    try:
        key = load_der_public_key(base64.b64decode(raw.strip(), validate=True))
    except (ValueError, binascii.Error):
        raise SettingsError("MAILER_WEBHOOK_SENDGRID_PUBLIC_KEY: expected the base64 verification key SendGrid shows") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise SettingsError("MAILER_WEBHOOK_SENDGRID_PUBLIC_KEY: expected an ECDSA P-256 public key")
    return raw.strip()


def _shared_secret(name: str, raw: str) -> str:
    if len(raw.strip()) < _MIN_SHARED_SECRET:
        raise SettingsError(f"{name}: expected at least {_MIN_SHARED_SECRET} characters")
    return raw.strip()


# Whole-number variables -> their Settings attribute.
