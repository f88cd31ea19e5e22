"""Tokens for a batch of sends in one Redis call: the hourly quota, its waiting line and the per-second pace. FAIL-OPEN.

`reserve_send_tokens` takes up to `count` tokens of the global hourly quota (one sorted set,
`RATE_LIMIT_KEY`: "no rolling 60 minutes hold more than MAILER_SMTP_MAX_PER_HOUR sends") after
consulting the quota's waiting line in the same script (`waiting_line`: one batch of the free
tokens is held for each campaign that waits ahead of the asker; a refused campaign joins the line;
a campaign that got part of what it asked goes to the back), and, when MAILER_SMTP_MAX_PER_SECOND
is set, gives each token a *slot*: the moment before which its message must not go out. Slots are
spaced evenly across all workers (a GCRA / leaky bucket: one Redis key holds the next free slot),
so there is no burst at the start of each second. `settle_send_tokens` moves each counted token to
the moment its message really went out (later, never earlier) and gives back the others, in one
more call per batch; that call also writes the metrics the process counted since its last write
(`counters`), so a message costs the metrics no round trip of its own.

What counts (SPEC "Global SMTP rate limiter"): a message the relay **accepted** (250 after DATA),
even if it bounces later, and one whose verdict was lost after the whole message went out (it may
have been accepted). A message the relay **refused** (a 4xx or 5xx reply to MAIL, RCPT or DATA, or
a connection that failed before the message went out) gives its token back: providers count what
they accept (Amazon SES, SendGrid, Postmark, Mailgun and Google's SMTP relay count accepted
messages or recipients, bounces included; a refused transaction is not a sent message), so
counting refusals would only leave quota unused. Its per-second slot stays spent: the attempt
still reached the relay in that second.

Why 90 % of the cap: the provider counts messages on its own clock, after network and scheduling
delays that differ from message to message. Slots spaced for 90 % of the cap leave a tenth of a
second per second for that jitter, so the provider never counts cap + 1 in one second.

Redis keys: `RATE_LIMIT_KEY`, the waiting line's two keys and `PACE_KEY`
(`mailadmin:ratelimit:smtp:pace`, the next free slot in Unix microseconds on the Redis clock).
When Redis is unreachable the batch is granted (availability first, an ERROR with
`policy="fail_open"`) and paced by this process alone.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from loguru import logger
from redis import Redis, RedisError

from mailadmin.counters.tally import APPLY_COUNTS_LUA, TALLY, as_args, take_increments
from mailadmin.limits.handover import HandOver
from mailadmin.limits.rate_limiter import RATE_LIMIT_KEY, RATE_LIMIT_WINDOW_LABEL, RATE_LIMIT_WINDOW_SECONDS
from mailadmin.limits.waiting_line import (
    EXPIRE_LINE_LUA,
    WAITING_LINE_DEADLINE_KEY,
    WAITING_LINE_GRACE_SECONDS,
    WAITING_LINE_KEY,
)
from mailadmin.limits.window import KEY_PREFIX, lua_now, registered_script

PACE_KEY = KEY_PREFIX + "ratelimit:smtp:pace"
# Share of MAILER_SMTP_MAX_PER_SECOND the slots are spaced for (see the module docstring).
PER_SECOND_HEADROOM = 0.9

_MICROSECONDS = 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# KEYS[1] hourly window, KEYS[2] pace, KEYS[3] waiting line, KEYS[4] its deadlines. ARGV[1] wanted,
# ARGV[2] max per hour, ARGV[3] slot interval (µs, 0 = no per-second cap), ARGV[4] now (µs) or ''
# for the Redis clock, ARGV[5] reservation id, ARGV[6] window (µs), ARGV[7] campaign id ('' = none:
# never joins the line), ARGV[8] tokens held per campaign ahead (a batch), ARGV[9] grace (µs).
# Returns {granted, count after, first slot (µs) or, when nothing was granted, when to come back
# (µs), campaigns ahead in the line}. With KEYS[5..7] (the job's hand-over record, see `limits/handover.py`)
# and ARGV[10] its time to live (ms): ARGV[11] (the messages accepted since the last call) is appended to
# KEYS[7], and the ids in ARGV[12..] of the tokens granted to KEYS[5], in the same call.
RESERVE_LUA = """
local wanted, limit, interval = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local window, me, hold, grace = tonumber(ARGV[6]), ARGV[7], tonumber(ARGV[8]), tonumber(ARGV[9])
""" + lua_now(4) + EXPIRE_LINE_LUA + """
local function us(x) return string.format('%.0f', x) end
-- The job's messages the relay accepted since its last reservation, whatever this one grants.
if KEYS[7] and ARGV[11] ~= '' then
  redis.call('APPEND', KEYS[7], ARGV[11])
  redis.call('PEXPIRE', KEYS[7], ARGV[10])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', us(now - window))
local count = redis.call('ZCARD', KEYS[1])
-- The waiting line, only while someone waits: drop the stale places, find who is ahead of us.
local ahead, in_line = {}, false
if redis.call('EXISTS', KEYS[3]) == 1 then
  local stale = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', us(now))
  for _, member in ipairs(stale) do
    redis.call('ZREM', KEYS[3], member)
    redis.call('ZREM', KEYS[4], member)
  end
  local rank = false
  if me ~= '' then rank = redis.call('ZRANK', KEYS[3], me) end
  if rank then
    in_line = true
    if rank > 0 then ahead = redis.call('ZRANGE', KEYS[3], 0, rank - 1) end
  else
    ahead = redis.call('ZRANGE', KEYS[3], 0, -1)
  end
end
-- One batch of the free tokens stays for each campaign ahead.
local granted = math.min(wanted, limit - count - #ahead * hold)
if granted <= 0 then
  -- Back when the token that makes room for the batches ahead and for us frees...
  local index = math.max(0, count - limit + #ahead * hold)
  local back_at = now + window
  if count > 0 then
    local entry = redis.call('ZRANGE', KEYS[1], math.min(index, count - 1), math.min(index, count - 1), 'WITHSCORES')
    back_at = tonumber(entry[2]) + window
  end
  -- ...but no later than a campaign ahead loses its place (one that never comes back).
  for _, member in ipairs(ahead) do
    local deadline = tonumber(redis.call('ZSCORE', KEYS[4], member) or '0')
    if deadline > 0 and deadline < back_at then back_at = deadline end
  end
  if me ~= '' then
    redis.call('ZADD', KEYS[3], 'NX', us(now), me)
    redis.call('ZADD', KEYS[4], us(back_at + grace), me)
    expire_line(KEYS[3], KEYS[4])
  end
  return {0, count, us(back_at), #ahead}
end
if me ~= '' and granted < wanted then
  -- A turn taken and more wanted: to the back of the line.
  redis.call('ZADD', KEYS[3], us(now), me)
  redis.call('ZADD', KEYS[4], us(now + grace), me)
  expire_line(KEYS[3], KEYS[4])
elseif in_line then
  redis.call('ZREM', KEYS[3], me)
  redis.call('ZREM', KEYS[4], me)
end
local first = now
if interval > 0 then
  local pace = tonumber(redis.call('GET', KEYS[2]) or '0')
  if pace > first then first = pace end
  local after = first + granted * interval
  redis.call('SET', KEYS[2], us(after), 'PX', us(math.ceil((after - now) / 1000) + 1000))
end
local args = {}
for i = 0, granted - 1 do
  args[#args + 1] = us(first + i * interval)
  args[#args + 1] = ARGV[5] .. ':' .. i
end
redis.call('ZADD', KEYS[1], unpack(args))
redis.call('PEXPIRE', KEYS[1], us(math.ceil((first + granted * interval - now + window) / 1000)))
if KEYS[5] then
  local handed = {}
  for i = 12, math.min(#ARGV, 11 + granted) do handed[#handed + 1] = ARGV[i] end
  redis.call('APPEND', KEYS[5], table.concat(handed, ',') .. ',')
  redis.call('PEXPIRE', KEYS[5], ARGV[10])
  local t = redis.call('TIME')
  redis.call('SET', KEYS[6], t[1], 'PX', ARGV[10])
end
return {granted, count + granted, us(first), #ahead}
"""

# KEYS[1] hourly window, KEYS[2] pace. ARGV[1] reservation id, ARGV[2] the pace value this batch
# left (µs, '' = none), ARGV[3] the pace value to go back to if nobody reserved since, ARGV[4] the
# number of tokens n, ARGV[5..4+n] per token: the moment its message went out (µs), or -1 when it
# does not count (unused, or refused); then the metrics counted since the last write
# (`counters.tally`: hash key, field, amount — written here, not in a round trip of their own).
SETTLE_LUA = APPLY_COUNTS_LUA + """
local tokens = tonumber(ARGV[4])
for i = 5, 4 + tokens do
  local member = ARGV[1] .. ':' .. (i - 5)
  local sent_at = tonumber(ARGV[i])
  if sent_at < 0 then
    redis.call('ZREM', KEYS[1], member)
  else
    local score = tonumber(redis.call('ZSCORE', KEYS[1], member) or '-1')
    if score >= 0 and sent_at > score then
      redis.call('ZADD', KEYS[1], 'XX', string.format('%.0f', sent_at), member)
    end
  end
end
if ARGV[2] ~= '' and tonumber(redis.call('GET', KEYS[2]) or '-1') == tonumber(ARGV[2]) then
  redis.call('SET', KEYS[2], ARGV[3], 'KEEPTTL')
end
apply_counts(5 + tokens)
return 1
"""


@dataclass
class TokenBatch:
    """Tokens granted for up to `len(slots)` sends; `slots[i]` is token i's earliest send time (Unix s)."""

    reservation_id: str
    slots: list[float]
    interval: float
    current_count: int
    max_per_hour: int
    # Set when nothing was granted: when to ask again (a token frees, or the campaigns ahead had their turn).
    next_free_at: datetime | None = None
    backend_available: bool = True
    waiting_ahead: int = 0  # campaigns ahead of this one in the waiting line when it asked
    sent_at: list[float | None] = field(default_factory=list)
    counted: list[bool] = field(default_factory=list)
    done: list[bool] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sent_at = self.sent_at or [None] * len(self.slots)
        self.counted = [True] * len(self.slots)
        self.done = [False] * len(self.slots)

    @property
    def granted(self) -> int:
        return len(self.slots)

    @property
    def pending(self) -> int:
        """Tokens whose message is neither sent nor given up yet."""
        return self.done.count(False)

    def begin(self, index: int, sent_at: float) -> None:
        """Token `index`'s message starts going out at `sent_at` (Unix s): it counts while its verdict is open.

        Safe from several threads: each token belongs to one message, and each call sets list items only.
        """
        self.sent_at[index] = sent_at

    def finish(self, index: int, sent_at: float | None, *, counted: bool = True) -> None:
        """Token `index` was spent on a message that went out at `sent_at` (Unix s), or not used (None).

        `counted=False`: the relay refused the message, so the hourly quota gets its token back
        (see the module docstring); its per-second slot stays spent.
        """
        self.sent_at[index] = sent_at
        self.counted[index] = counted
        self.done[index] = True


def slot_interval(max_per_second: int) -> float:
    """Seconds between two slots for a per-second cap (0 = no cap)."""
    return 1.0 / (max_per_second * PER_SECOND_HEADROOM) if max_per_second > 0 else 0.0


def _us(seconds: float) -> int:
    return round(seconds * _MICROSECONDS)


def reserve_send_tokens(
    redis: Redis,
    count: int,
    max_per_hour: int,
    max_per_second: int = 0,
    *,
    campaign_id: int | None = None,
    batch_size: int | None = None,
    now: float | None = None,
    handing_over: HandOver | None = None,
) -> TokenBatch:
    """Take up to `count` tokens in one call, after one `batch_size` (default `count`) for each campaign ahead
    in the waiting line; none granted means wait until `next_free_at` (the campaign then has its place in line).

    `handing_over`: the recipients the tokens are for, in order; those granted a token are added to the
    job's hand-over record in the same call (`limits/handover.py`).
    """
    interval = slot_interval(max_per_second)
    reservation_id = uuid.uuid4().hex
    keys = [RATE_LIMIT_KEY, PACE_KEY, WAITING_LINE_KEY, WAITING_LINE_DEADLINE_KEY]
    args = [count, max_per_hour, _us(interval), "" if now is None else _us(now), reservation_id,
            RATE_LIMIT_WINDOW_SECONDS * _MICROSECONDS, "" if campaign_id is None else campaign_id,
            batch_size or count, WAITING_LINE_GRACE_SECONDS * _MICROSECONDS]
    if handing_over is not None:
        keys += handing_over.keys
        args += [handing_over.ttl_ms, handing_over.sent, *handing_over.recipient_ids]
    try:
        granted, current, first_us, ahead = registered_script(redis, "reserve", RESERVE_LUA)(keys=keys, args=args)
    except RedisError as exc:
        # Fail open: availability first; the pace then holds for this process alone.
        logger.bind(policy="fail_open", campaign_id=campaign_id, error_type=type(exc).__name__,
                    max_per_hour=max_per_hour).error("Error reserving rate limit token (Redis unavailable)")
        start = time.time() if now is None else now
        return TokenBatch(reservation_id, [start + i * interval for i in range(count)], interval, 0, max_per_hour,
                          backend_available=False)
    granted, first, ahead = int(granted), int(first_us) / _MICROSECONDS, int(ahead)
    logger.bind(campaign_id=campaign_id, allowed=granted > 0, current_count=int(current), max_per_hour=max_per_hour,
                window=RATE_LIMIT_WINDOW_LABEL, wanted=count, granted=granted, waiting_ahead=ahead,
                max_per_second=max_per_second).debug("Rate limit token reserve")
    if granted == 0:
        next_free_at = _EPOCH + timedelta(microseconds=int(first_us))
        return TokenBatch(reservation_id, [], interval, int(current), max_per_hour, next_free_at=next_free_at,
                          waiting_ahead=ahead)
    slots = [first + i * interval for i in range(granted)]
    return TokenBatch(reservation_id, slots, interval, int(current), max_per_hour, waiting_ahead=ahead)


def settle_send_tokens(redis: Redis, batch: TokenBatch) -> None:
    """Record when each counted token's message went out and give back the others (one call)."""
    settle_send_token_batches(redis, [batch])


def settle_send_token_batches(redis: Redis, batches: list[TokenBatch]) -> None:
    """`settle_send_tokens` for several batches in one round trip (a pipeline of one script call each)."""
    calls = [_settle_args(batch) for batch in batches if batch.backend_available and batch.slots]
    if not calls:
        return
    counted = take_increments()  # the metrics ride along with the first call: no round trip of their own
    calls[0] += as_args(counted)
    try:
        script = registered_script(redis, "settle", SETTLE_LUA)
        pipe = redis.pipeline(transaction=False)
        for args in calls:
            script(keys=[RATE_LIMIT_KEY, PACE_KEY], args=args, client=pipe)
        pipe.execute()
    except RedisError as exc:
        TALLY.restore(counted)
        # The unused tokens simply expire with the hour: fewer sends, never more.
        logger.bind(error_type=type(exc).__name__).warning("Could not give back unused rate limit tokens (Redis unavailable)")


def _settle_args(batch: TokenBatch) -> list:
    used = [index for index, sent_at in enumerate(batch.sent_at) if sent_at is not None]
    pace_left = pace_back = ""
    if batch.interval > 0:
        pace_left = str(_us(batch.slots[0]) + batch.granted * _us(batch.interval))
        # Unused slots after the last used one go back when nobody has reserved behind them.
        pace_back = str(_us(batch.slots[0]) + (used[-1] + 1 if used else 0) * _us(batch.interval))
    sent = [-1 if sent_at is None or not counted else _us(sent_at)
            for sent_at, counted in zip(batch.sent_at, batch.counted, strict=True)]
    return [batch.reservation_id, pace_left, pace_back, len(sent), *sent]
