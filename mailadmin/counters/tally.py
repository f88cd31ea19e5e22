"""The process's tally of counts, written to Redis inside a call the process makes anyway, or flushed.

`count` / `observe` add to `TALLY` (a lock and a dict: safe from the connection threads too).
`take_increments` empties it for a write — and drops what it held when metrics are off
(`MAILER_METRICS_TOKEN` unset: nobody may scrape them, so nothing is written); the check is made
once per write, not per count. `APPLY_COUNTS_LUA` defines `apply_counts(first)` for a script whose
ARGV ends with the tally's triples (hash key, field, amount, from `as_args`); `Tally.restore` puts
them back when the call failed. `flush` writes the tally in one pipelined
round trip (the end of a job, of a web request). The scrape reads the hashes back
(`metrics/gauges.py`, in the pipeline that reads the gauges).
"""

from __future__ import annotations

import os
import threading
from bisect import bisect_left
from collections.abc import Iterable

from flask import has_app_context
from redis import Redis, RedisError

from mailadmin.counters.families import EVENT_DELIVERIES, EVENT_DELIVERY_OUTCOMES, Family
from mailadmin.extensions import get_settings

# Lua: HINCRBY for whole amounts, HINCRBYFLOAT for those written with a decimal point.
APPLY_COUNTS_LUA = """
local function apply_counts(first)
  for i = first, #ARGV - 2, 3 do
    if string.find(ARGV[i + 2], '.', 1, true) then
      redis.call('HINCRBYFLOAT', ARGV[i], ARGV[i + 1], ARGV[i + 2])
    else
      redis.call('HINCRBY', ARGV[i], ARGV[i + 1], ARGV[i + 2])
    end
  end
end
"""
FIELD_SEPARATOR = "|"
HISTOGRAM_SUM_FIELD = "sum"
HISTOGRAM_INF_FIELD = "+Inf"


class Tally:
    """Increments not written to Redis yet: (hash key, field) -> amount."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._amounts: dict[tuple[str, str], float] = {}

    def add(self, key: str, field: str, amount: float = 1) -> None:
        with self._lock:
            self._amounts[(key, field)] = self._amounts.get((key, field), 0) + amount

    def add_many(self, increments: Iterable[tuple[str, str, float]]) -> None:
        """Several increments under one acquisition of the lock (the send path's per-message counts)."""
        with self._lock:
            amounts = self._amounts
            for key, field, amount in increments:
                amounts[(key, field)] = amounts.get((key, field), 0) + amount

    def drain(self) -> list[tuple[str, str, float]]:
        """Every increment held, removed from the tally."""
        with self._lock:
            amounts, self._amounts = self._amounts, {}
        return [(key, field, amount) for (key, field), amount in amounts.items()]

    def restore(self, increments: Iterable[tuple[str, str, float]]) -> None:
        """Put back increments whose write failed: the next write carries them."""
        for key, field, amount in increments:
            self.add(key, field, amount)

    def __bool__(self) -> bool:
        return bool(self._amounts)

    def forget(self) -> None:
        """Start empty (a forked child: its parent's increments are its parent's to write)."""
        self._lock = threading.Lock()
        self._amounts = {}


TALLY = Tally()
os.register_at_fork(after_in_child=TALLY.forget)


def counting_enabled() -> bool:
    """Metrics are on when this app has a `MAILER_METRICS_TOKEN` (outside an app: on)."""
    return not has_app_context() or bool(get_settings().metrics_token)


def _field(family: Family, labels: tuple[str, ...]) -> str:
    if len(labels) != len(family.labels):
        raise ValueError(f"{family.name} takes labels {family.labels}, got {labels!r}")
    return FIELD_SEPARATOR.join(str(label) for label in labels)


def count(family: Family, *labels: str, amount: int = 1) -> None:
    """Add `amount` to `family` (with its label values, in its order)."""
    TALLY.add(family.key, _field(family, labels), amount)


def observation(family: Family, value: float) -> tuple[tuple[str, str, float], tuple[str, str, float]]:
    """The increments of one observation of histogram `family`: its bucket, its sum (the count is the buckets' total)."""
    index = bisect_left(family.buckets, value)
    bucket = HISTOGRAM_INF_FIELD if index == len(family.buckets) else repr(family.buckets[index])
    return (family.key, bucket, 1), (family.key, HISTOGRAM_SUM_FIELD, float(value))


def observe(family: Family, value: float) -> None:
    """One observation of histogram `family`."""
    TALLY.add_many(observation(family, value))


def take_increments(tally: Tally = TALLY) -> list[tuple[str, str, float]]:
    """What the tally holds, to be written now; nothing when metrics are off (then it is dropped: the
    check is made once per write, not once per count)."""
    increments = tally.drain()
    return increments if increments and counting_enabled() else []


def count_event_delivery(outcome: str) -> None:
    """One outgoing webhook delivery attempt: `delivered`, `failed` (retried later) or `given_up`."""
    if outcome not in EVENT_DELIVERY_OUTCOMES:
        raise ValueError(f"event delivery outcome must be one of {EVENT_DELIVERY_OUTCOMES}, got {outcome!r}")
    count(EVENT_DELIVERIES, outcome)


def _amount_arg(amount: float) -> str:
    return f"{amount:.9f}" if isinstance(amount, float) else str(int(amount))


def as_args(increments: Iterable[tuple[str, str, float]]) -> list[str]:
    """Increments as the ARGV triples `apply_counts` reads."""
    return [arg for key, field, amount in increments for arg in (key, field, _amount_arg(amount))]


def flush(redis: Redis, tally: Tally = TALLY) -> bool:
    """Write what the tally holds in one round trip (nothing to do: no call). False when Redis failed
    (the increments stay for the next write)."""
    increments = take_increments(tally)
    if not increments:
        return True
    pipe = redis.pipeline(transaction=False)
    for key, field, amount in increments:
        if isinstance(amount, float):
            pipe.hincrbyfloat(key, field, amount)
        else:
            pipe.hincrby(key, field, int(amount))
    try:
        pipe.execute()
    except RedisError:
        tally.restore(increments)
        return False
    return True
