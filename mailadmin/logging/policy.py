"""The PII policy applied to one loguru record: the patcher every record passes through
(`enforce_pii_policy`), and the text masking the sinks apply to messages and exceptions. The
rules themselves are listed in the package docstring (`mailadmin.logging`)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import date, datetime
from datetime import time as clock_time
from enum import Enum
from typing import Any

from flask import g, has_request_context

from mailadmin import pii

# Fields whose value, when it is a full address, is dropped where the full address is not allowed.
FULL_ADDRESS_FIELDS = ("email", "recipient_email", "to")
_OWN_MESSAGE_ID = re.compile(r"<campaign-\d{1,18}\.recipient-\d{1,18}\.[0-9a-f]{12}@[A-Za-z0-9.-]{1,253}>")
# Fields whose values look like addresses by design but name nobody, kept as they are when (and only
# when) they have exactly their expected shape: the product's own Message-IDs (so a send can be
# matched with the provider's logs) and `get_pii_log_fields`' already-masked address.
TRUSTED_FIELD_SHAPES: dict[str, Callable[[str], bool]] = {
    "smtp_message_id": lambda value: _OWN_MESSAGE_ID.fullmatch(value) is not None,
    "email_masked": lambda value: pii.mask_email(value) == value,
}
LOGGER_NAME_FIELD = "_mailadmin_logger_name"  # set by the stdlib bridge, popped by the patcher
_MAX_DEPTH = 8
_INFO_NO = pii.LEVEL_NUMBERS["INFO"]


def text_masker(levelno: int, policy: pii.PiiPolicy) -> Callable[[str], str] | None:
    """How addresses in text of a record at `levelno` are shown; None when they may stay whole."""
    if policy.full_emails and levelno < _INFO_NO:
        return None
    replace = pii.mask_email if levelno >= pii.level_number(policy.pii_level) else pii.redact_email
    return lambda text: pii.mask_emails_in_text(text, replace)


def mask_text_for_level(text: str, level: str | int, policy: pii.PiiPolicy | None = None) -> str:
    """`text` with its addresses shown as a record of `level` may show them (active policy by default)."""
    masker = text_masker(pii.level_number(level), policy or pii.get_active_policy())
    return masker(text) if masker else text


def _json_safe(value: Any, mask: Callable[[str], str], depth: int = 0) -> Any:
    """`value` as JSON-compatible data with every string (keys included) passed through `mask`."""
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return mask(value)
    if depth >= _MAX_DEPTH:
        return mask(to_text(value))
    if isinstance(value, dict):
        return {mask(str(key)): _json_safe(item, mask, depth + 1) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_json_safe(item, mask, depth + 1) for item in value]
    if isinstance(value, (datetime, date, clock_time)):
        return value.isoformat()
    if isinstance(value, Enum):
        return _json_safe(value.value, mask, depth + 1)
    if isinstance(value, (bytes, bytearray)):
        return mask(bytes(value).decode("utf-8", "replace"))
    return mask(to_text(value))


def to_text(value: Any) -> str:
    """`str(value)`, or a placeholder when its `__str__` fails."""
    try:
        return str(value)
    except Exception:  # a broken __str__ must not lose the record
        return f"<unprintable {type(value).__name__}>"


def no_mask(text: str) -> str:
    """The masker of a record whose addresses may stay whole."""
    return text


def _request_fields() -> dict[str, Any]:
    """request_id and user_id of the current request, when `init_request_logging` is active."""
    if not has_request_context() or "request_id" not in g:
        return {}
    # flask-login caches the user it loaded in g._login_user; reading it never triggers a query.
    user = g.get("_login_user")
    user_id = getattr(user, "id", None) if getattr(user, "is_authenticated", False) else None
    return {"request_id": g.request_id, "user_id": user_id}


def enforce_pii_policy(record: dict[str, Any]) -> None:
    """Loguru patcher: apply the active PII policy to the message and the extra fields of `record`."""
    policy = pii.get_active_policy()
    levelno = record["level"].no
    extra = record["extra"]
    stdlib_name = extra.pop(LOGGER_NAME_FIELD, None)
    if stdlib_name:
        record["name"] = stdlib_name
    for key, value in _request_fields().items():
        extra.setdefault(key, value)

    allowed = pii.allowed_pii_fields(levelno, full_emails_allowed=policy.full_emails)
    mask = text_masker(levelno, policy) or no_mask
    record["message"] = mask(record["message"])

    cleaned: dict[str, Any] = {}
    dropped_address: str | None = None
    for key, value in extra.items():
        holds_address = isinstance(value, str) and pii.is_email(value)
        if key in pii.PII_FIELDS and key not in allowed:
            if holds_address and dropped_address is None:
                dropped_address = value
            continue
        if key in FULL_ADDRESS_FIELDS and holds_address and "email" not in allowed:
            dropped_address = dropped_address or value
            continue
        trusted = TRUSTED_FIELD_SHAPES.get(key)
        if trusted is not None and isinstance(value, str) and trusted(value):
            cleaned[key] = value
            continue
        cleaned[mask(str(key))] = _json_safe(value, mask)
    if dropped_address is not None and not any(name in cleaned for name in pii.PII_FIELDS):
        cleaned.update(
            pii.safe_email_for_logging(
                dropped_address,
                levelno,
                salt=policy.hash_salt,
                full_emails_allowed=policy.full_emails,
            )
        )
    record["extra"] = cleaned


def no_patch(record: dict[str, Any]) -> None:
    """Stands in for "no patcher": loguru's configure() cannot unset one."""
