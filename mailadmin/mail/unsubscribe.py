"""One-click unsubscribe links (RFC 8058): the signed token naming one recipient of one campaign,
and the URL every message carries (`unsubscribe_url_for`, used by the send loop and the test email)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeSerializer, URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode
from itsdangerous.serializer import Serializer

from mailadmin.settings import Settings


class BadUnsubscribeToken(ValueError):
    """An unsubscribe token is forged, truncated or not one of ours."""


def unsubscribe_url_for(settings: Settings, campaign_id: int) -> Callable[[int], str]:
    """The campaign's unsubscribe URL for a recipient id: `<settings.public_url>/u/<signed token>`."""
    base, secret = settings.public_url, settings.secret_key

    def url(recipient_id: int) -> str:
        return f"{base}/u/{make_unsubscribe_token(secret, campaign_id, recipient_id)}"

    return url


# An unsubscribe link works this long after its message was built (RFC 8058 asks for "a
# reasonable time"; US CAN-SPAM asks for at least 30 days).
UNSUBSCRIBE_TOKEN_MAX_AGE = timedelta(days=180)
# Links built before tokens carried a timestamp keep working until this date, then expire too.
LEGACY_UNSUBSCRIBE_TOKENS_UNTIL = datetime(2027, 6, 1, tzinfo=UTC)


class ExpiredUnsubscribeToken(BadUnsubscribeToken):
    """A genuine unsubscribe token older than UNSUBSCRIBE_TOKEN_MAX_AGE."""


class _UncompressedTokens(URLSafeTimedSerializer):
    """itsdangerous's URL-safe timed tokens, whose payload is never zlib-compressed.

    Two ids never get shorter that way (zlib's own header and checksum take six bytes), yet the
    attempt cost a tenth of the send loop's CPU: one token per message. The loader reads both forms.
    """

    def dump_payload(self, obj: Any) -> bytes:
        return base64_encode(Serializer.dump_payload(self, obj))


@functools.lru_cache(maxsize=8)
def _unsubscribe_serializer(secret_key: str | bytes) -> URLSafeTimedSerializer:
    # Cached: the send loop signs one token per recipient with the same key.
    return _UncompressedTokens(secret_key, salt="unsubscribe")


@functools.lru_cache(maxsize=8)
def _legacy_unsubscribe_serializer(secret_key: str | bytes) -> URLSafeSerializer:
    return URLSafeSerializer(secret_key, salt="unsubscribe")


def make_unsubscribe_token(secret_key: str | bytes, campaign_id: int, recipient_id: int) -> str:
    """A signed, URL-safe, timestamped token naming one recipient of one campaign (valid 180 days)."""
    return _unsubscribe_serializer(secret_key).dumps([int(campaign_id), int(recipient_id)])


def _load_unsubscribe_payload(secret_key: str | bytes, token: str, now: datetime | None) -> Any:
    try:
        return _unsubscribe_serializer(secret_key).loads(token, max_age=UNSUBSCRIBE_TOKEN_MAX_AGE.total_seconds())
    except SignatureExpired:
        raise ExpiredUnsubscribeToken("expired unsubscribe token") from None
    except (BadSignature, UnicodeError, ValueError):
        pass
    if (now or datetime.now(UTC)) >= LEGACY_UNSUBSCRIBE_TOKENS_UNTIL:
        raise BadUnsubscribeToken("invalid unsubscribe token")
    try:
        return _legacy_unsubscribe_serializer(secret_key).loads(token)
    except (BadSignature, UnicodeError, ValueError):
        raise BadUnsubscribeToken("invalid unsubscribe token") from None


def read_unsubscribe_token(secret_key: str | bytes, token: str, *, now: datetime | None = None) -> tuple[int, int]:
    """(campaign_id, recipient_id) of a token made by `make_unsubscribe_token`; ExpiredUnsubscribeToken
    after 180 days, BadUnsubscribeToken for anything else."""
    payload = _load_unsubscribe_payload(secret_key, token, now)
    if (
        not isinstance(payload, list)
        or len(payload) != 2
        or not all(isinstance(part, int) and not isinstance(part, bool) for part in payload)
    ):
        raise BadUnsubscribeToken("invalid unsubscribe token")
    return payload[0], payload[1]


# --- the preference page's link ---------------------------------------------------------------

# Salted apart from the unsubscribe tokens: a preference token names a contact, not a recipient.
_PREFERENCES_SALT = "preferences"


@functools.lru_cache(maxsize=8)
def _preferences_serializer(secret_key: str | bytes) -> URLSafeTimedSerializer:
    return _UncompressedTokens(secret_key, salt=_PREFERENCES_SALT)


def make_preferences_token(secret_key: str | bytes, contact_id: int) -> str:
    """A signed, URL-safe, timestamped token naming one contact: the key of their preference page."""
    return _preferences_serializer(secret_key).dumps([int(contact_id)])


def read_preferences_token(secret_key: str | bytes, token: str) -> int:
    """The contact id of a token made by `make_preferences_token`; ExpiredUnsubscribeToken after
    UNSUBSCRIBE_TOKEN_MAX_AGE (like the unsubscribe link it comes from), BadUnsubscribeToken otherwise."""
    try:
        payload = _preferences_serializer(secret_key).loads(token, max_age=UNSUBSCRIBE_TOKEN_MAX_AGE.total_seconds())
    except SignatureExpired:
        raise ExpiredUnsubscribeToken("expired preferences token") from None
    except (BadSignature, UnicodeError, ValueError):
        raise BadUnsubscribeToken("invalid preferences token") from None
    if (not isinstance(payload, list) or len(payload) != 1 or not isinstance(payload[0], int)
            or isinstance(payload[0], bool)):
        raise BadUnsubscribeToken("invalid preferences token")
    return payload[0]
