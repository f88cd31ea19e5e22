"""The global SMTP quota, shared by every worker: a token per send, at most `max_per_hour` per rolling hour. FAIL-OPEN.

The send loop takes its tokens a batch at a time through `mailadmin.limits.send_pace` (which also
keeps the quota's waiting line, `mailadmin.limits.waiting_line`); this module holds the key and
what the pages read: usage and the moments tokens free.

Why fail open: the quota protects the SMTP account from its provider's hourly cap, which the
provider enforces anyway (usually a 4xx reply, handled as a transient error). Stopping every campaign
because Redis blinked would hurt more than a few sends over quota, so a Redis error lets the
send through and logs an ERROR with `policy="fail_open"` for alerting — availability first.
(The per-user throttles make the opposite choice.)

The seed counted per clock hour, which lets 2 x max through around a full hour (max at 10:59, max
at 11:00). Here the key is one sliding window (the sliding log of
`mailadmin.limits.window`) on the Redis server's clock: no 60-minute window, wherever it starts,
holds more than `max_per_hour` reservations.

Redis key: `RATE_LIMIT_KEY` = `mailadmin:ratelimit:smtp`, a sorted set of reservations scored by
Unix time in microseconds. Entries older than an hour are pruned on the next access, so
`ZCARD` may overcount; the exact usage is `ZCOUNT mailadmin:ratelimit:smtp (<now_us - 3600000000> +inf`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from loguru import logger
from redis import Redis, RedisError

from mailadmin.limits.window import KEY_PREFIX, WindowResult, window_moments, window_usage

RATE_LIMIT_KEY = KEY_PREFIX + "ratelimit:smtp"
RATE_LIMIT_WINDOW_SECONDS = 3600
RATE_LIMIT_WINDOW_LABEL = "rolling_3600s"


@dataclass(frozen=True, slots=True)
class TokenReservation:
    """The quota as the pages see it; `next_free_at` (UTC) is when a token frees if the quota is used up."""

    allowed: bool
    current_count: int
    max_per_hour: int
    next_free_at: datetime | None
    backend_available: bool


def _from_window(result: WindowResult) -> TokenReservation:
    return TokenReservation(
        allowed=result.allowed,
        current_count=result.count,
        max_per_hour=result.limit,
        next_free_at=result.next_free_at,
        backend_available=True,
    )


def rate_limit_usage(redis: Redis, max_per_hour: int, now: float | None = None) -> TokenReservation:
    """Tokens used in the rolling hour without reserving one (operations page: used / max, next free token)."""
    try:
        result = window_usage(redis, RATE_LIMIT_KEY, max_per_hour, RATE_LIMIT_WINDOW_SECONDS, now=now)
    except RedisError as exc:
        logger.bind(error_type=type(exc).__name__).warning("Rate limit usage unavailable (Redis unavailable)")
        return TokenReservation(
            allowed=True, current_count=0, max_per_hour=max_per_hour, next_free_at=None, backend_available=False
        )
    return _from_window(result)


def rate_limit_moments(redis: Redis) -> list[datetime] | None:
    """When each send counted in the rolling hour was reserved (oldest first); None when Redis cannot say."""
    try:
        return window_moments(redis, RATE_LIMIT_KEY, RATE_LIMIT_WINDOW_SECONDS)
    except RedisError as exc:
        logger.bind(error_type=type(exc).__name__).warning("Rate limit usage unavailable (Redis unavailable)")
        return None
