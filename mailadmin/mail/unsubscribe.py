"""One-click unsubscribe links (RFC 8058): the signed token naming one recipient of one campaign,
and the URL every message carries (`unsubscribe_url_for`, used by the send loop and the test email)."""

from __future__ import annotations

import functools
from collections.abc import Callable

from itsdangerous import BadSignature, URLSafeSerializer

from mailadmin.settings import Settings


class BadUnsubscribeToken(ValueError):
    """An unsubscribe token is forged, truncated or not one of ours."""


def unsubscribe_url_for(settings: Settings, campaign_id: int) -> Callable[[int], str]:
    """The campaign's unsubscribe URL for a recipient id: `<settings.public_url>/u/<signed token>`."""
    base, secret = settings.public_url, settings.secret_key

    def url(recipient_id: int) -> str:
        return f"{base}/u/{make_unsubscribe_token(secret, campaign_id, recipient_id)}"

    return url


@functools.lru_cache(maxsize=8)
def _unsubscribe_serializer(secret_key: str | bytes) -> URLSafeSerializer:
    # Cached: the send loop signs one token per recipient with the same key.
    return URLSafeSerializer(secret_key, salt="unsubscribe")


def make_unsubscribe_token(secret_key: str | bytes, campaign_id: int, recipient_id: int) -> str:
    """A signed, URL-safe token naming one recipient of one campaign; it never expires."""
    return _unsubscribe_serializer(secret_key).dumps([int(campaign_id), int(recipient_id)])


def read_unsubscribe_token(secret_key: str | bytes, token: str) -> tuple[int, int]:
    """(campaign_id, recipient_id) of a token made by `make_unsubscribe_token`, else BadUnsubscribeToken."""
    try:
        payload = _unsubscribe_serializer(secret_key).loads(token)
    except (BadSignature, UnicodeError, ValueError):
        raise BadUnsubscribeToken("invalid unsubscribe token") from None
    if (
        not isinstance(payload, list)
        or len(payload) != 2
        or not all(isinstance(part, int) and not isinstance(part, bool) for part in payload)
    ):
        raise BadUnsubscribeToken("invalid unsubscribe token")
    return payload[0], payload[1]
