"""Per-user throttles (campaign starts, test emails) and login brute-force protection. FAIL-CLOSED.

Why fail closed: a throttle exists to stop abuse (a stolen session starting campaigns, a script
spraying test emails, password guessing). If Redis cannot be asked, we cannot tell abuse from
normal use, so the action is refused with `throttle_backend_unavailable` and the page shows
`UNAVAILABLE_MESSAGE` — security first. (The SMTP rate limiter makes the opposite choice.)

Counting uses the shared sliding window (`mailadmin.limits.window`): atomic, one round trip, a
refused attempt is never counted, and a slot frees exactly `window_seconds` after it was taken.

Redis keys (all under `KEY_PREFIX`, the templates below are what `redis-cli` shows):
- `mailadmin:throttle:{action}:user:{user_id}` — one window per action and user (never per IP);
- `mailadmin:throttle:login:account-ip:{account_hash}:{ip}` — failed logins of one account from
  one client IP: the limit an attacker meets first (`MAILER_THROTTLE_LOGIN_PER_ACCOUNT_IP`);
- `mailadmin:throttle:login:account:{account_hash}` — failed logins of one account from anywhere,
  with a much higher bar (`MAILER_THROTTLE_LOGIN_PER_ACCOUNT`), so an attacker hammering from
  another address slows down without locking the owner out;
- `mailadmin:throttle:login:ip:{ip}` — failed logins per client IP, across accounts.

`account_hash` is `email_hash` of the address (HMAC-SHA256 keyed with `MAILER_LOG_HASH_SALT`, the
same value as the logs' `email_hash`), so no address appears in Redis and none can be guessed
from a key without the salt. The IP is the real client address (`TRUSTED_PROXIES`).
"""

from __future__ import annotations

from typing import NamedTuple

from flask_babel import gettext
from loguru import logger
from redis import Redis, RedisError

from mailadmin.i18n import count_of
from mailadmin.limits.window import KEY_PREFIX, add_to_window, reserve_in_window, window_moments, window_usage
from mailadmin.pii import email_hash

ACTION_CAMPAIGN_START = "campaign_start"
ACTION_TEST_EMAIL = "test_email"
ACTION_LOGIN = "login"

REASON_LIMIT_REACHED = "limit_reached"
THROTTLE_BACKEND_UNAVAILABLE = "throttle_backend_unavailable"

UNAVAILABLE_MESSAGE = "Service temporarily unavailable. Please try again later."
LOGIN_THROTTLED_MESSAGE = "Too many failed sign-in attempts. Please try again later."

THROTTLE_KEY_TEMPLATE = KEY_PREFIX + "throttle:{action}:user:{user_id}"
LOGIN_ACCOUNT_KEY_TEMPLATE = KEY_PREFIX + "throttle:login:account:{account_hash}"
LOGIN_ACCOUNT_IP_KEY_TEMPLATE = KEY_PREFIX + "throttle:login:account-ip:{account_hash}:{ip}"
LOGIN_IP_KEY_TEMPLATE = KEY_PREFIX + "throttle:login:ip:{ip}"

HOUR_SECONDS = 3600
LOGIN_WINDOW_SECONDS = 900

# action -> the sentence of throttle_message() in its two plural forms (msgids of the catalogue).
_ACTION_WORDING = {
    ACTION_CAMPAIGN_START: ("Campaign start limit reached (%(num)s start per hour).",
                            "Campaign start limit reached (%(num)s starts per hour)."),
    ACTION_TEST_EMAIL: ("Test email limit reached (%(num)s test email per hour).",
                        "Test email limit reached (%(num)s test emails per hour)."),
}


class LoginLimits(NamedTuple):
    """Failed logins allowed per login window: per account+IP pair, per account from anywhere, per IP."""

    per_account_ip: int
    per_account: int
    per_ip: int


class ThrottleResult(NamedTuple):
    """The SPEC's `(is_throttled, count, reason)`; reason is None when the action may go ahead."""

    is_throttled: bool
    count: int
    reason: str | None


def throttle_key(action: str, user_id: int | str) -> str:
    """Redis key of one user's window for one action."""
    return THROTTLE_KEY_TEMPLATE.format(action=action, user_id=user_id)


def login_account_hash(email: str, salt: str) -> str:
    """The account part of the login keys: the salted `email_hash` of the trimmed, lower-cased address."""
    return email_hash(email, salt)


def login_account_key(email: str, salt: str) -> str:
    """Redis key counting failed logins of one account from anywhere (hashed, never the raw address)."""
    return LOGIN_ACCOUNT_KEY_TEMPLATE.format(account_hash=login_account_hash(email, salt))


def _ip(ip: str | None) -> str:
    return (ip or "unknown").strip().lower()


def login_account_ip_key(email: str, ip: str | None, salt: str) -> str:
    """Redis key counting failed logins of one account from one client IP."""
    return LOGIN_ACCOUNT_IP_KEY_TEMPLATE.format(account_hash=login_account_hash(email, salt), ip=_ip(ip))


def login_ip_key(ip: str | None) -> str:
    """Redis key counting failed logins from one client IP."""
    return LOGIN_IP_KEY_TEMPLATE.format(ip=_ip(ip))


def throttle_message(action: str, limit: int, reason: str | None = REASON_LIMIT_REACHED) -> str:
    """The sentence shown to the user when `action` is refused for `reason`."""
    if reason == THROTTLE_BACKEND_UNAVAILABLE:
        return gettext("Service temporarily unavailable. Please try again later.")
    if action == ACTION_LOGIN:
        return gettext("Too many failed sign-in attempts. Please try again later.")
    if action in _ACTION_WORDING:
        return count_of(limit, *_ACTION_WORDING[action])
    subject = action.replace("_", " ").capitalize()
    return count_of(limit, "%(subject)s limit reached (%(num)s action per hour).",
                    "%(subject)s limit reached (%(num)s actions per hour).", subject=subject)


def _backend_unavailable(exc: RedisError, **fields: object) -> ThrottleResult:
    """Log the fail-closed ERROR and answer "refused"."""
    logger.bind(policy="fail_closed", error_type=type(exc).__name__, error=str(exc), **fields).error(
        "Throttle backend unavailable"
    )
    return ThrottleResult(True, 0, THROTTLE_BACKEND_UNAVAILABLE)


def is_user_throttled(
    redis: Redis,
    action: str,
    user_id: int | str,
    limit: int,
    window_seconds: float = HOUR_SECONDS,
    *,
    now: float | None = None,
) -> ThrottleResult:
    """Count one `action` by `user_id` unless the limit is reached; refuses (fail-closed) when Redis fails.

    Call it right before doing the action: an allowed call has already used one slot.
    """
    if user_id is None:
        raise ValueError("is_user_throttled needs a user id: throttles are per user, never per IP")
    try:
        result = reserve_in_window(redis, throttle_key(action, user_id), limit, window_seconds, now=now)
    except RedisError as exc:
        return _backend_unavailable(exc, action=action, user_id=user_id)
    if not result.allowed:
        logger.bind(action=action, user_id=user_id, count=result.count, limit=limit).info("Throttle limit reached")
        return ThrottleResult(True, result.count, REASON_LIMIT_REACHED)
    return ThrottleResult(False, result.count, None)


def _login_keys(email: str, ip: str | None, salt: str) -> dict[str, str]:
    """scope -> Redis key of the three login windows, in the order they are checked."""
    return {
        "account_ip": login_account_ip_key(email, ip, salt),
        "account": login_account_key(email, salt),
        "ip": login_ip_key(ip),
    }


def check_login_allowed(
    redis: Redis,
    email: str,
    ip: str | None,
    limits: LoginLimits,
    salt: str,
    window_seconds: float = LOGIN_WINDOW_SECONDS,
    *,
    now: float | None = None,
) -> ThrottleResult:
    """May this login attempt be checked at all? Looks at failed logins per account+IP, per account
    and per IP (fail-closed). Only looks: count failures with `record_login_failure`, reset the
    account+IP pair with `clear_login_failures` after a successful login."""
    limit_of = {"account_ip": limits.per_account_ip, "account": limits.per_account, "ip": limits.per_ip}
    try:
        usages = {
            scope: window_usage(redis, key, limit_of[scope], window_seconds, now=now)
            for scope, key in _login_keys(email, ip, salt).items()
        }
    except RedisError as exc:
        return _backend_unavailable(exc, action=ACTION_LOGIN)
    for scope, usage in usages.items():
        if not usage.allowed:
            # No email and no IP in the record: the key names above identify them for on-call.
            logger.bind(action=ACTION_LOGIN, scope=scope, count=usage.count, limit=usage.limit).warning(
                "Login throttled"
            )
            return ThrottleResult(True, usage.count, REASON_LIMIT_REACHED)
    return ThrottleResult(False, usages["account_ip"].count, None)


def record_login_failure(
    redis: Redis, email: str, ip: str | None, salt: str, window_seconds: float = LOGIN_WINDOW_SECONDS,
    *, now: float | None = None,
) -> None:
    """Count one failed login against the account+IP pair, the account and the client IP."""
    try:
        for key in _login_keys(email, ip, salt).values():
            add_to_window(redis, key, window_seconds, now=now)
    except RedisError as exc:
        # The login has already failed; the next check_login_allowed refuses while Redis is down.
        _backend_unavailable(exc, action=ACTION_LOGIN)


def clear_login_failures(redis: Redis, email: str, ip: str | None, salt: str) -> None:
    """Forget the owner's own failed logins from this IP after a successful login.

    The per-account and per-IP counts stay: a success must not hand an attacker elsewhere a fresh allowance.
    """
    try:
        redis.delete(login_account_ip_key(email, ip, salt))
    except RedisError as exc:
        _backend_unavailable(exc, action=ACTION_LOGIN)


def throttle_moments(redis: Redis, action: str, user_id: int | str, window_seconds: float = HOUR_SECONDS):
    """When each of `user_id`'s `action`s still counted in the window happened (oldest first; each frees its
    slot `window_seconds` later), without counting anything; None when Redis cannot say."""
    try:
        return window_moments(redis, throttle_key(action, user_id), window_seconds)
    except RedisError:
        return None
