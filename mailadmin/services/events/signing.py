"""Standard Webhooks signatures (https://www.standardwebhooks.com): `webhook-id`, `webhook-timestamp`,
`webhook-signature` = `v1,` + base64(HMAC-SHA256(secret, f"{id}.{timestamp}.{body}")).

The `standardwebhooks` library signs (the reference implementation receivers verify with); during a
secret rotation's overlap the header carries one signature per secret, space-separated, as the
specification allows, so a receiver still holding the previous secret keeps verifying.
"""

from __future__ import annotations

import base64
import secrets
from datetime import datetime

from standardwebhooks.webhooks import Webhook

from mailadmin.models.events import EventEndpoint

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32


def new_secret() -> str:
    """A fresh signing secret: `whsec_` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def signing_secrets(endpoint: EventEndpoint, at: datetime) -> list[str]:
    """The secrets that sign now: the current one, and the previous one while its overlap lasts."""
    keys = [endpoint.secret]
    if endpoint.previous_secret and endpoint.previous_secret_until and endpoint.previous_secret_until > at:
        keys.append(endpoint.previous_secret)
    return keys


def signature_headers(message_id: str, body: str, keys: list[str], at: datetime) -> dict[str, str]:
    """The three Standard Webhooks headers of `body` sent at `at`."""
    signatures = [Webhook(key).sign(message_id, at, body) for key in keys]
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": " ".join(signatures),
    }
