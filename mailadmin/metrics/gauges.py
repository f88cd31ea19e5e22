"""The gauges, read at scrape time with bounded queries: one grouped query over the campaigns (no
recipient row is read: their counts are the campaigns' counters), and Redis reads whose size is the
number of workers and queues — never the number of recipients.

Each reading is (family name, help, labels, [(label values, value)]).
"""

from __future__ import annotations

from datetime import datetime

from redis import Redis, RedisError
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from mailadmin.extensions import QUEUE_NAMES, db, get_settings
from mailadmin.limits.rate_limiter import rate_limit_usage
from mailadmin.models import Campaign
from mailadmin.models.campaign import ACTIVE_STATUSES, CAMPAIGN_STATUSES, PAUSED
from mailadmin.ops.in_effect import compare_settings, live_publications
from mailadmin.ops.rq_state import (
    RQ_QUEUE_KEY_PREFIX,
    SCHEDULED_JOBS_KEY,
    SCHEDULER_INSTANCE_KEY_PREFIX,
    list_scheduler_instances,
    list_workers,
)
from mailadmin.services.sending_switch import sending_paused
from mailadmin.settings_in_effect import WORKER, read_publications

Reading = tuple[str, str, tuple[str, ...], list[tuple[tuple[str, ...], float]]]
# Campaigns whose recipients still wait to be sent (a draft's are not started; a final one's never will be).
_STARTED = (*ACTIVE_STATUSES, PAUSED)


def database_gauges() -> list[Reading]:
    """Campaigns by status and the recipients still to send, in one grouped query."""
    left = (Campaign.recipients_total - Campaign.sent_count - Campaign.failed_count - Campaign.skipped_count
            - Campaign.unknown_count)
    rows = db.session.execute(
        select(Campaign.status, func.count(), func.coalesce(func.sum(left), 0)).group_by(Campaign.status)
    ).all()
    switched_off = sending_paused()
    db.session.rollback()
    by_status = {status: 0 for status in CAMPAIGN_STATUSES}
    pending = 0
    for status, campaigns, recipients_left in rows:
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


def _quota_limit(redis: Redis, live_workers: set[str], live_schedulers: set[str]) -> int:
    """MAILER_SMTP_MAX_PER_HOUR as the live workers apply it (the lowest), else this process's."""
    publications = live_publications(read_publications(redis), live_workers, live_schedulers)
    maximum, _source = compare_settings(publications, get_settings()).value_for(
        "MAILER_SMTP_MAX_PER_HOUR", WORKER, get_settings().smtp_max_per_hour)
    return int(maximum)


def redis_gauges(redis: Redis, now: datetime) -> list[Reading]:
    """Quota, queues, workers, the scheduler and the oldest overdue continuation."""
    workers = list_workers(redis, now)
    live_workers = {worker.name for worker in workers if worker.alive}
    schedulers = [instance for instance in list_scheduler_instances(redis) if instance.alive]
    limit = _quota_limit(redis, live_workers,
                         {instance.key.removeprefix(SCHEDULER_INSTANCE_KEY_PREFIX) for instance in schedulers})
    usage = rate_limit_usage(redis, limit, now=now.timestamp())
    if not usage.backend_available:
        raise RedisError("rate limit usage unavailable")
    next_token = 0.0
    if usage.current_count >= limit and usage.next_free_at is not None:
        next_token = max(0.0, (usage.next_free_at - now).total_seconds())
    pipe = redis.pipeline(transaction=False)
    for name in QUEUE_NAMES:
        pipe.llen(RQ_QUEUE_KEY_PREFIX + name)
    pipe.zrange(SCHEDULED_JOBS_KEY, 0, 0, withscores=True)
    *depths, oldest = pipe.execute()
    overdue = max(0.0, now.timestamp() - oldest[0][1]) if oldest else 0.0
    return [
        ("mailadmin_quota_used_messages", "SMTP quota tokens used in the rolling hour (all workers).", (), [((), usage.current_count)]),
        ("mailadmin_quota_limit_messages", "The hourly SMTP quota the live workers apply (MAILER_SMTP_MAX_PER_HOUR).", (),
         [((), limit)]),
        ("mailadmin_quota_next_token_seconds", "Seconds until a quota token frees (0 while the quota has room).", (),
         [((), next_token)]),
        ("mailadmin_queue_jobs", "Jobs waiting in each RQ queue.", ("queue",),
         [((name,), depth) for name, depth in zip(QUEUE_NAMES, depths, strict=True)]),
        ("mailadmin_workers_live", "RQ workers alive (heartbeat on time, process present).", (), [((), len(live_workers))]),
        ("mailadmin_scheduler_alive", "1 while an rq-scheduler instance is alive.", (), [((), 1 if schedulers else 0)]),
        ("mailadmin_continuation_overdue_seconds",
         "How late the oldest continuation the scheduler holds is (0: none is due).", (), [((), overdue)]),
    ]


def read_gauges(redis: Redis, now: datetime) -> tuple[list[Reading], bool, bool]:
    """(readings, database up, Redis up): a part that is down leaves its gauges out."""
    readings: list[Reading] = []
    database_up = redis_up = True
    try:
        readings += database_gauges()
    except SQLAlchemyError:
        db.session.rollback()
        database_up = False
    try:
        readings += redis_gauges(redis, now)
    except RedisError:
        redis_up = False
    return readings, database_up, redis_up
