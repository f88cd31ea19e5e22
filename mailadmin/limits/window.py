"""One atomic sliding-window counter in Redis, shared by the per-user throttles and the SMTP rate limiter.

A window is a sorted set (a "sliding log"): one member per counted event, scored by the event's
Unix time in whole **microseconds** (integers stay exact in Redis' double scores and in Lua, so
"the oldest frees at oldest + window" holds to the microsecond). A single Lua script prunes,
counts, reserves and sets the expiry in one round trip, so concurrent web and worker processes
can never both take the last slot.

Window semantics: an event at time `t` counts while `now - window < t`, i.e. it frees at exactly
`t + window`. Hence no half-open interval of `window` seconds ever holds more than `limit` events.

Redis errors are NOT handled here: each caller applies its own policy (throttles fail closed, the
rate limiter fails open).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from redis import Redis

# Every Redis key the product writes starts with this prefix.
KEY_PREFIX = "mailadmin:"

MODE_RESERVE = "reserve"
MODE_PEEK = "peek"
MODE_ADD = "add"

_MICROSECONDS = 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# KEYS[1] window key
# ARGV[1] limit, ARGV[2] window (µs), ARGV[3] now (µs) or "" for the Redis server clock,
# ARGV[4] unique member, ARGV[5] mode: reserve | peek | add (add = record without a limit check)
# Returns {allowed (0/1), count after, score (µs) whose expiry frees a slot, or -1}. That score is the
# oldest in the window; only when the limit was lowered below the count is it a later one.
def lua_now(argv: int) -> str:
    """Lua that sets `now` (µs) to ARGV[`argv`], or when that is '' to the Redis server's clock."""
    return f"""
local now
if ARGV[{argv}] == '' then
  -- One clock for every worker machine: the Redis server's.
  if redis.replicate_commands then redis.replicate_commands() end
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[{argv}])
end
"""


SLIDING_WINDOW_LUA = """
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local mode = ARGV[5]
""" + lua_now(3) + """
-- '%.0f' keeps integers exact (Lua's tostring would round them to 14 digits).
redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('%.0f', now - window))
local count = redis.call('ZCARD', key)
local allowed = 0
if mode == 'add' or count < limit then
  allowed = 1
  if mode ~= 'peek' then
    redis.call('ZADD', key, string.format('%.0f', now), ARGV[4])
    count = count + 1
  end
end
local frees_at = -1
if count > 0 then
  redis.call('PEXPIRE', key, string.format('%.0f', math.ceil(window / 1000)))
  local index = 0
  if limit > 0 and count > limit then index = count - limit end
  local entry = redis.call('ZRANGE', key, index, index, 'WITHSCORES')
  frees_at = tonumber(entry[2])
end
return {allowed, count, frees_at}
"""


@dataclass(frozen=True, slots=True)
class WindowResult:
    """Outcome of one window operation; `next_free_at` (UTC) is set when the window is full."""

    allowed: bool
    count: int
    limit: int
    next_free_at: datetime | None


def _to_microseconds(seconds: float) -> int:
    return round(seconds * _MICROSECONDS)


def registered_script(client: Redis, name: str, source: str):
    """The Lua `source` registered on `client` once, kept under `name` (registering hashes the source
    each time); every Lua script of limits/ is called through this."""
    attribute = f"_mailadmin_{name}_script"
    script = getattr(client, attribute, None)
    if script is None:
        script = client.register_script(source)
        setattr(client, attribute, script)
    return script


def _run(client: Redis, key: str, limit: int, window_seconds: float, now: float | None, mode: str) -> WindowResult:
    if window_seconds <= 0:
        raise ValueError(f"window_seconds must be positive, got {window_seconds!r}")
    window_us = _to_microseconds(window_seconds)
    script = registered_script(client, "window", SLIDING_WINDOW_LUA)
    allowed, count, slot_score_us = script(
        keys=[key],
        args=[
            int(limit),
            window_us,
            "" if now is None else _to_microseconds(now),
            uuid.uuid4().hex,
            mode,
        ],
    )
    count = int(count)
    next_free_at = None
    if mode != MODE_ADD and limit > 0 and count >= limit and int(slot_score_us) >= 0:
        next_free_at = _EPOCH + timedelta(microseconds=int(slot_score_us) + window_us)
    return WindowResult(allowed=bool(allowed), count=count, limit=int(limit), next_free_at=next_free_at)


def reserve_in_window(
    redis: Redis,
    key: str,
    limit: int,
    window_seconds: float,
    *,
    now: float | None = None,
    peek: bool = False,
) -> WindowResult:
    """Atomically take one slot in the window if fewer than `limit` are used (or only look, with `peek`).

    `now` is Unix time in seconds; None uses the Redis server's clock. A refused reservation is not counted.
    """
    return _run(redis, key, limit, window_seconds, now, MODE_PEEK if peek else MODE_RESERVE)


def window_usage(redis: Redis, key: str, limit: int, window_seconds: float, now: float | None = None) -> WindowResult:
    """How many slots of the window are used right now, without taking one."""
    return _run(redis, key, limit, window_seconds, now, MODE_PEEK)


def add_to_window(redis: Redis, key: str, window_seconds: float, now: float | None = None) -> int:
    """Record one event without a limit check (e.g. a failed login); returns the count in the window."""
    return _run(redis, key, 0, window_seconds, now, MODE_ADD).count


def window_moments(redis: Redis, key: str, window_seconds: float, now: float | None = None) -> list[datetime]:
    """When each event still counted in the window happened (UTC, oldest first); read-only.

    Each one frees its slot at that moment + `window_seconds`: what an estimate of "when can the
    next messages go" needs. `now` defaults to the Redis server's clock, as the reservations use.
    """
    if now is None:
        seconds, micros = redis.time()
        now_us = int(seconds) * _MICROSECONDS + int(micros)
    else:
        now_us = _to_microseconds(now)
    low = now_us - _to_microseconds(window_seconds)
    scores = redis.zrangebyscore(key, f"({low}", "+inf", withscores=True)
    return [_EPOCH + timedelta(microseconds=int(score)) for _, score in scores]
