"""The waiting line for the hourly quota: who gets freed tokens first. FAIL-OPEN, like the quota.

SPEC "Fairness": an earlier campaign is never starved by a later one. Campaigns waiting for the
quota resume in the order they started waiting, and campaigns sending at the same time take the
quota in turns, batch by batch.

The line is a sorted set of campaign ids scored by the moment each started waiting. It is read
and written by the same Lua script that reserves tokens (`send_pace.RESERVE_LUA`), so it costs no
extra round trip, and only while someone waits (an empty line is one EXISTS):

- **Holding**: a reservation leaves one batch (`MAILER_SEND_BATCH_SIZE`) of the free tokens for
  each campaign ahead of the asker in the line; it gets only what is left beyond those.
- **Joining**: a campaign refused joins at the back (a campaign already in line keeps its place),
  and is told to come back when a token beyond those held for the campaigns ahead frees.
- **Turns**: a campaign that got part of what it asked for goes to the back; one that got all of
  it leaves the line. So two campaigns short of quota alternate, a batch each.
- **Keeping a place**: a campaign deferred by a transient error (a 451) is still in the middle of
  its send: it keeps its place, and a batch of the quota, until its retry (`keep_place_in_line`).
- **Staleness**: every place has a deadline, the moment its campaign is due back plus
  `WAITING_LINE_GRACE_SECONDS`; a campaign that is not back by then (paused, cancelled, its worker
  died) loses its place at the next reservation, so it blocks the line for that long at most. A
  refused campaign is never told to come back later than the deadline of a campaign ahead of it.

- **The confirmation lane**: double opt-in confirmations go ahead of campaigns. Their sender
  stands in the line as `CONFIRMATION_LANE` (0, never a campaign id) and takes the head
  (`take_head_of_line`) before each reservation: campaigns then hold a batch for it, and it gets
  the free tokens first. Only a person's own request, rate-limited at the form, lands there.

Redis keys: `WAITING_LINE_KEY` (`mailadmin:ratelimit:smtp:line`, campaign id -> started waiting,
Unix µs) and `WAITING_LINE_DEADLINE_KEY` (`mailadmin:ratelimit:smtp:line:deadline`, campaign id ->
loses its place at, Unix µs). Both expire with their last deadline.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from loguru import logger
from redis import Redis, RedisError

from mailadmin.limits.rate_limiter import RATE_LIMIT_KEY
from mailadmin.limits.window import lua_now, registered_script

WAITING_LINE_KEY = RATE_LIMIT_KEY + ":line"
WAITING_LINE_DEADLINE_KEY = RATE_LIMIT_KEY + ":line:deadline"
# How long after the moment it was due back a campaign keeps its place. The recovery sweep
# re-enqueues a continuation that is a minute overdue and runs every minute, and a due slice may
# wait for a worker busy with another slice (MAILER_SEND_SLICE_SECONDS): three minutes cover all.
WAITING_LINE_GRACE_SECONDS = 180

# The confirmation mails' place in the line (campaign ids start at 1).
CONFIRMATION_LANE = 0

_MICROSECONDS = 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Lua shared by the scripts that write the line: both keys expire with the last deadline (needs `now`).
EXPIRE_LINE_LUA = """
local function expire_line(line_key, deadline_key)
  local last = redis.call('ZRANGE', deadline_key, -1, -1, 'WITHSCORES')
  if last[2] then
    local ttl = string.format('%.0f', math.ceil((tonumber(last[2]) - now) / 1000) + 1000)
    redis.call('PEXPIRE', line_key, ttl)
    redis.call('PEXPIRE', deadline_key, ttl)
  end
end
"""

# KEYS[1] line, KEYS[2] deadlines. ARGV[1] campaign id, ARGV[2] its deadline (µs) or '' to leave
# the line, ARGV[3] now (µs) or '' for the Redis clock. A campaign already in line keeps its place
# and the later of the two deadlines.
PLACE_LUA = lua_now(3) + EXPIRE_LINE_LUA + """
if ARGV[2] == '' then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 0
end
redis.call('ZADD', KEYS[1], 'NX', string.format('%.0f', now), ARGV[1])
if tonumber(ARGV[2]) > tonumber(redis.call('ZSCORE', KEYS[2], ARGV[1]) or '0') then
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
end
expire_line(KEYS[1], KEYS[2])
return 1
"""


# KEYS[1] line, KEYS[2] deadlines. ARGV[1] member, ARGV[2] its deadline (µs), ARGV[3] now (µs) or ''.
# The member goes to the head (score 0, before any moment a campaign started waiting).
HEAD_LUA = lua_now(3) + EXPIRE_LINE_LUA + """
redis.call('ZADD', KEYS[1], 0, ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
expire_line(KEYS[1], KEYS[2])
return 1
"""


@dataclass(frozen=True, slots=True)
class Waiter:
    """One place in the waiting line: a campaign, since when it waits, when it loses its place (UTC)."""

    campaign_id: int
    waiting_since: datetime
    deadline: datetime | None


def _moment(microseconds: float) -> datetime:
    return _EPOCH + timedelta(microseconds=int(microseconds))


def _set_place(redis: Redis, campaign_id: int, deadline_us: str, now: float | None) -> None:
    try:
        registered_script(redis, "place", PLACE_LUA)(
            keys=[WAITING_LINE_KEY, WAITING_LINE_DEADLINE_KEY],
            args=[campaign_id, deadline_us, "" if now is None else round(now * _MICROSECONDS)],
        )
    except RedisError as exc:
        # Fail open like the quota: without the line, freed tokens go to whoever asks first.
        logger.bind(campaign_id=campaign_id, error_type=type(exc).__name__).warning(
            "Could not update the quota's waiting line (Redis unavailable)"
        )


def keep_place_in_line(redis: Redis, campaign_id: int, until: datetime, *, now: float | None = None) -> None:
    """A campaign deferred mid-send (a transient error) keeps its place, and a batch of the quota, until `until`."""
    deadline = until + timedelta(seconds=WAITING_LINE_GRACE_SECONDS)
    _set_place(redis, campaign_id, str(round(deadline.timestamp() * _MICROSECONDS)), now)


def leave_waiting_line(redis: Redis, campaign_id: int) -> None:
    """The campaign no longer waits for the quota (paused by the breaker): its place and held batch go."""
    _set_place(redis, campaign_id, "", None)


def waiting_line(redis: Redis) -> list[Waiter]:
    """The line as stored, first in line first (read-only; stale places go at the next reservation)."""
    with redis.pipeline(transaction=True) as pipe:
        pipe.zrange(WAITING_LINE_KEY, 0, -1, withscores=True)
        pipe.zrange(WAITING_LINE_DEADLINE_KEY, 0, -1, withscores=True)
        places, deadlines = pipe.execute()
    deadline_of = {member: score for member, score in deadlines}
    return [
        Waiter(int(member), _moment(score), _moment(deadline_of[member]) if member in deadline_of else None)
        for member, score in places
    ]


def take_head_of_line(redis: Redis, member: int, until: datetime, *, now: float | None = None) -> None:
    """Put `member` (the confirmation lane) at the head of the line until `until` (+ grace); fail-open."""
    deadline = until + timedelta(seconds=WAITING_LINE_GRACE_SECONDS)
    script = getattr(redis, "_mailadmin_head_script", None)
    if script is None:
        script = redis.register_script(HEAD_LUA)
        redis._mailadmin_head_script = script
    try:
        script(keys=[WAITING_LINE_KEY, WAITING_LINE_DEADLINE_KEY],
               args=[member, round(deadline.timestamp() * _MICROSECONDS), "" if now is None else round(now * _MICROSECONDS)])
    except RedisError as exc:
        logger.bind(error_type=type(exc).__name__).warning("Could not update the quota's waiting line (Redis unavailable)")
