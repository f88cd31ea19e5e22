"""Per-token request rate of the REST API: a fixed one-minute window counted in Redis.

Fixed windows (one INCR per request, the key expiring with its minute) are what the
`RateLimit-Limit / -Remaining / -Reset` headers describe exactly: how many this minute, how many
left, and seconds until the count starts again. Redis errors are not handled here: the API fails
closed (a throttle, SPEC "Throttles"), answering 503.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from redis import Redis

from mailadmin.limits.window import KEY_PREFIX

WINDOW_SECONDS = 60
_KEY = KEY_PREFIX + "api:rate:{token_id}:{window}"


@dataclass(frozen=True, slots=True)
class RateCount:
    """One request counted: the limit, what is left of it this minute, seconds until it resets."""

    limit: int
    remaining: int
    reset_seconds: int
    allowed: bool


def count_api_request(redis: Redis, token_id: int, limit: int, now: float | None = None) -> RateCount:
    """Count one request of `token_id` in the current minute; `allowed` False past `limit`."""
    now = time.time() if now is None else now
    window = int(now // WINDOW_SECONDS)
    key = _KEY.format(token_id=token_id, window=window)
    pipe = redis.pipeline()
    pipe.incr(key)
    pipe.expire(key, WINDOW_SECONDS + 5)
    count = int(pipe.execute()[0])
    reset = max(1, int((window + 1) * WINDOW_SECONDS - now + 0.999))
    return RateCount(limit, max(0, limit - count), reset, count <= limit)
