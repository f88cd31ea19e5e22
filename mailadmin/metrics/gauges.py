"""The gauges and the counters' hashes, read at scrape time with bounded queries: one statement over
the campaigns (grouped by status; no recipient row is read: their counts are the campaigns'
counters) and three Redis round trips (two pipelines around a scan of the scheduler's instance
keys) whose size is the number of workers, queues and counter families — never the number of
recipients or campaigns.

Each reading is (family name, help, labels, [(label values, value)]).
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from datetime import UTC, datetime

from redis import Redis, RedisError
from rq.utils import utcparse
from sqlalchemy import func, literal, select, union_all
from sqlalchemy.exc import SQLAlchemyError

from mailadmin.counters import FAMILIES, Family
from mailadmin.extensions import QUEUE_NAMES, db, get_settings
from mailadmin.limits.rate_limiter import RATE_LIMIT_KEY, RATE_LIMIT_WINDOW_SECONDS
from mailadmin.models import AppState, Campaign
from mailadmin.models.app_state import APP_STATE_ID
from mailadmin.models.campaign import ACTIVE_STATUSES, CAMPAIGN_STATUSES, PAUSED
from mailadmin.ops.probes import process_alive
from mailadmin.ops.rq_state import (
    RQ_QUEUE_KEY_PREFIX,
    RQ_WORKER_KEY_PREFIX,
    RQ_WORKERS_KEY,
    SCHEDULED_JOBS_KEY,
    SCHEDULER_INSTANCE_KEY_PREFIX,
    WORKER_HEARTBEAT_GRACE_SECONDS,
    expected_heartbeat_interval,
)
from mailadmin.settings_in_effect import WORKER, settings_key

Reading = tuple[str, str, tuple[str, ...], list[tuple[tuple[str, ...], float]]]
# Campaigns whose recipients still wait to be sent (a draft's are not started; a final one's never will be).
_STARTED = (*ACTIVE_STATUSES, PAUSED)


# The sending switch rides in the same statement, as a row of its own.
_SWITCH_ROW = "~sending_switch"


def database_gauges() -> list[Reading]:
    """Campaigns by status, the recipients still to send and the sending switch: one statement, one round trip."""
    left = (Campaign.recipients_total - Campaign.sent_count - Campaign.failed_count - Campaign.skipped_count
            - Campaign.unknown_count)
    by_campaign_status = select(Campaign.status, func.count(), func.coalesce(func.sum(left), 0)).group_by(Campaign.status)
    switch = select(literal(_SWITCH_ROW), func.count(), literal(0)).where(
        AppState.id == APP_STATE_ID, AppState.sending_paused.is_(True))
    rows = db.session.execute(union_all(by_campaign_status, switch)).all()
    db.session.rollback()
    by_status = {status: 0 for status in CAMPAIGN_STATUSES}
    pending = switched_off = 0
    for status, campaigns, recipients_left in rows:
        if status == _SWITCH_ROW:
            switched_off = campaigns
            continue
        by_status[status] = campaigns
        if status in _STARTED:
            pending += max(0, int(recipients_left))
    return [
        ("mailadmin_campaigns", "Campaigns by status.", ("status",),
         [((str(status),), count) for status, count in by_status.items()]),
        ("mailadmin_recipients_pending", "Recipients of started campaigns not sent, failed or skipped yet.", (),
         [((), pending)]),
        ("mailadmin_sending_switched_off", "1 while an admin has switched all sending off.", (),
         [((), 1 if switched_off else 0)]),
    ]


@dataclass(frozen=True)
class RedisReading:
    """What one scrape reads from Redis: the gauges and each counter family's hash."""

    gauges: list[Reading]
    families: dict[Family, dict[str, str]]


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else ("" if value is None else str(value))


def _worker_alive(fields: list, now: datetime, here: str) -> bool:
    """The diagnosis' rule (ops/rq_state.py), from the worker hash's heartbeat, state, host and pid."""
    heartbeat, state, hostname, pid = (_text(value) for value in fields)
    if not heartbeat or state == "dead":
        return False
    age = (now - utcparse(heartbeat).replace(tzinfo=UTC)).total_seconds()
    if age > expected_heartbeat_interval(state) + WORKER_HEARTBEAT_GRACE_SECONDS:
        return False
    return not (hostname == here and pid.isdigit() and not process_alive(int(pid)))


def _quota_limit(publications: list, live: list[bool]) -> int:
    """MAILER_SMTP_MAX_PER_HOUR as the live workers publish it (the lowest), else this process's."""
    values = []
    for raw, alive in zip(publications, live, strict=True):
        try:
            values.append(int(json.loads(raw)["values"]["MAILER_SMTP_MAX_PER_HOUR"]) if raw and alive else None)
        except (ValueError, KeyError, TypeError):
            values.append(None)
    published = [value for value in values if value is not None]
    return min(published) if published else get_settings().smtp_max_per_hour


def _first_pass(redis: Redis, now: datetime) -> list:
    """One round trip: workers, the rolling hour, queues, the oldest continuation, every counter family."""
    low = f"({round((now.timestamp() - RATE_LIMIT_WINDOW_SECONDS) * 1_000_000)}"
    pipe = redis.pipeline(transaction=False)
    pipe.smembers(RQ_WORKERS_KEY)
    pipe.zcount(RATE_LIMIT_KEY, low, "+inf")
    pipe.zrangebyscore(RATE_LIMIT_KEY, low, "+inf", start=0, num=1, withscores=True)
    for name in QUEUE_NAMES:
        pipe.llen(RQ_QUEUE_KEY_PREFIX + name)
    pipe.zrange(SCHEDULED_JOBS_KEY, 0, 0, withscores=True)
    for family in FAMILIES:
        pipe.hgetall(family.key)
    return pipe.execute()


def _second_pass(redis: Redis, workers: list[str], schedulers: list[str]) -> tuple[list, list, list]:
    """One round trip: each worker's heartbeat and publication, each scheduler instance's death mark."""
    pipe = redis.pipeline(transaction=False)
    for name in workers:
        pipe.hmget(RQ_WORKER_KEY_PREFIX + name, "last_heartbeat", "state", "hostname", "pid")
    for name in workers:
        pipe.get(settings_key(WORKER, name))
    for key in schedulers:
        pipe.exists(key)
        pipe.hexists(key, "death")
    answers = pipe.execute()
    count = len(workers)
    return answers[:count], answers[count:2 * count], answers[2 * count:]


def read_redis(redis: Redis, now: datetime) -> RedisReading:
    """Quota, queues, workers, the scheduler, the oldest overdue continuation, and the counters: three
    round trips (a scan of the scheduler's instance keys between two pipelines) whatever the data size."""
    workers_raw, used, oldest, *rest = _first_pass(redis, now)
    depths, scheduled, stored = rest[:len(QUEUE_NAMES)], rest[len(QUEUE_NAMES)], rest[len(QUEUE_NAMES) + 1:]
    workers = sorted(_text(key).removeprefix(RQ_WORKER_KEY_PREFIX) for key in workers_raw)
    schedulers = [_text(key) for key in redis.scan_iter(match=SCHEDULER_INSTANCE_KEY_PREFIX + "*", count=1000)]
    heartbeats, publications, marks = _second_pass(redis, workers, schedulers)
    here = socket.gethostname()
    live = [_worker_alive(fields, now, here) for fields in heartbeats]
    scheduler_alive = any(exists and not dead for exists, dead in zip(marks[::2], marks[1::2], strict=True))
    limit = _quota_limit(publications, live)
    next_token = 0.0
    if used >= limit and oldest:
        # The token that frees next: the oldest counted one (the (used - limit)th when fail-open overshot).
        skip = used - limit
        first = oldest if skip == 0 else redis.zrangebyscore(
            RATE_LIMIT_KEY, f"({round((now.timestamp() - RATE_LIMIT_WINDOW_SECONDS) * 1_000_000)}", "+inf",
            start=skip, num=1, withscores=True)
        if first:
            next_token = max(0.0, first[0][1] / 1_000_000 + RATE_LIMIT_WINDOW_SECONDS - now.timestamp())
    overdue = max(0.0, now.timestamp() - scheduled[0][1]) if scheduled else 0.0
    gauges: list[Reading] = [
        ("mailadmin_quota_used_messages", "SMTP quota tokens used in the rolling hour (all workers).", (), [((), used)]),
        ("mailadmin_quota_limit_messages", "The hourly SMTP quota the live workers apply (MAILER_SMTP_MAX_PER_HOUR).", (),
         [((), limit)]),
        ("mailadmin_quota_next_token_seconds", "Seconds until a quota token frees (0 while the quota has room).", (),
         [((), next_token)]),
        ("mailadmin_queue_jobs", "Jobs waiting in each RQ queue.", ("queue",),
         [((name,), depth) for name, depth in zip(QUEUE_NAMES, depths, strict=True)]),
        ("mailadmin_workers_live", "RQ workers alive (heartbeat on time, process present).", (), [((), sum(live))]),
        ("mailadmin_scheduler_alive", "1 while an rq-scheduler instance is alive.", (), [((), 1 if scheduler_alive else 0)]),
        ("mailadmin_continuation_overdue_seconds",
         "How late the oldest continuation the scheduler holds is (0: none is due).", (), [((), overdue)]),
    ]
    families = {family: {_text(k): _text(v) for k, v in raw.items()} for family, raw in zip(FAMILIES, stored, strict=True)}
    return RedisReading(gauges, families)


def read_gauges(redis: Redis, now: datetime) -> tuple[list[Reading], dict[Family, dict[str, str]], bool, bool]:
    """(gauges, counter families, database up, Redis up): a part that is down leaves its readings out."""
    readings: list[Reading] = []
    families: dict[Family, dict[str, str]] = {}
    database_up = redis_up = True
    try:
        readings += database_gauges()
    except SQLAlchemyError:
        db.session.rollback()
        database_up = False
    try:
        reading = read_redis(redis, now)
        readings += reading.gauges
        families = reading.families
    except RedisError:
        redis_up = False
    return readings, families, database_up, redis_up
