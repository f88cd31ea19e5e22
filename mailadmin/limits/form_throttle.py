"""Rate limits of the public subscription forms: per client address and per list. FAIL-CLOSED.

A public form is the one way in that needs no login, so it is what a bot hammers: one client
address may submit `SUBSCRIBE_PER_CLIENT_PER_HOUR` times an hour (across lists), one list may take
`SUBSCRIBE_PER_LIST_PER_HOUR` submissions an hour (across addresses). Both are sliding windows
(`limits.window`); a submission refused by the first is not counted by the second. When Redis
cannot be asked the submission is refused with `throttle_backend_unavailable` (the page says
"Service temporarily unavailable"), like the per-user throttles: a form nobody can limit is a
mail cannon pointed at strangers' inboxes.

Redis keys: `mailadmin:throttle:subscribe:client:{ip}` and `mailadmin:throttle:subscribe:list:{list_id}`.
"""

from __future__ import annotations

from loguru import logger
from redis import Redis, RedisError

from mailadmin.i18n import N_
from mailadmin.limits.throttle import (
    HOUR_SECONDS,
    REASON_LIMIT_REACHED,
    THROTTLE_BACKEND_UNAVAILABLE,
    ThrottleResult,
)
from mailadmin.limits.window import KEY_PREFIX, reserve_in_window

SUBSCRIBE_PER_CLIENT_PER_HOUR = 10
SUBSCRIBE_PER_LIST_PER_HOUR = 300
SUBSCRIBE_CLIENT_KEY_TEMPLATE = KEY_PREFIX + "throttle:subscribe:client:{ip}"
SUBSCRIBE_LIST_KEY_TEMPLATE = KEY_PREFIX + "throttle:subscribe:list:{list_id}"
FORM_THROTTLED_MESSAGE = N_("Too many sign-ups from here right now. Please try again in an hour.")


def subscribe_client_key(ip: str | None) -> str:
    """Redis key counting one client address's form submissions."""
    return SUBSCRIBE_CLIENT_KEY_TEMPLATE.format(ip=(ip or "unknown").strip().lower())


def subscribe_list_key(list_id: int) -> str:
    """Redis key counting one list's form submissions."""
    return SUBSCRIBE_LIST_KEY_TEMPLATE.format(list_id=int(list_id))


def check_subscribe_allowed(redis: Redis, ip: str | None, list_id: int, *, now: float | None = None,
                            per_client: int = SUBSCRIBE_PER_CLIENT_PER_HOUR,
                            per_list: int = SUBSCRIBE_PER_LIST_PER_HOUR) -> ThrottleResult:
    """Count one form submission from `ip` to `list_id` unless either limit is reached (fail-closed)."""
    try:
        for scope, key, limit in (("client", subscribe_client_key(ip), per_client),
                                  ("list", subscribe_list_key(list_id), per_list)):
            result = reserve_in_window(redis, key, limit, HOUR_SECONDS, now=now)
            if not result.allowed:
                # No address and no IP in the record: the key names them for on-call.
                logger.bind(action="subscribe", scope=scope, list_id=list_id, count=result.count,
                            limit=limit).warning("Subscription form throttled")
                return ThrottleResult(True, result.count, REASON_LIMIT_REACHED)
    except RedisError as exc:
        logger.bind(policy="fail_closed", action="subscribe", error_type=type(exc).__name__).error(
            "Throttle backend unavailable")
        return ThrottleResult(True, 0, THROTTLE_BACKEND_UNAVAILABLE)
    return ThrottleResult(False, result.count, None)
