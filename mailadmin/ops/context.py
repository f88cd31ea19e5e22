"""What the checks of one diagnosis run share: the clock, the connections, and data gathered once
(workers, scheduled jobs, active campaigns, waiting job ids) however many checks read it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from redis import Redis, RedisError
from rq import Queue
from sqlalchemy import select

from mailadmin.extensions import QUEUE_NAMES, db, get_redis, get_settings
from mailadmin.models import Campaign, CampaignQueue
from mailadmin.models.campaign import ACTIVE_STATUSES, PAUSED
from mailadmin.ops.in_effect import SHELL, SettingsInEffect, compare_settings, live_publications
from mailadmin.ops.rq_state import (
    SCHEDULER_INSTANCE_KEY_PREFIX,
    ScheduledJob,
    WorkerInfo,
    list_scheduled_jobs,
    list_scheduler_instances,
    list_workers,
)
from mailadmin.settings_in_effect import read_publications


@dataclass(frozen=True)
class CampaignState:
    """A started, not final campaign with its send-loop row."""

    id: int
    name: str
    status: str
    defer_reason: str | None
    deferred_until: datetime | None
    consecutive_transient_errors: int
    current_job_id: str | None
    heartbeat_at: datetime | None
    breaker_tripped_at: datetime | None
    last_error: str | None
    unknown_count: int
    # The pause it is in (see CampaignQueue): who (an address), when, and its detail.
    paused_by: str | None = None
    paused_at: datetime | None = None
    pause_detail: str | None = None


def list_active_campaigns(limit: int = 500) -> list[CampaignState]:
    """Started, not final campaigns (queued, sending, deferred, paused) with their send-loop state."""
    rows = db.session.execute(
        select(Campaign, CampaignQueue)
        .outerjoin(CampaignQueue, CampaignQueue.campaign_id == Campaign.id)
        .where(Campaign.status.in_((*ACTIVE_STATUSES, PAUSED)))
        .order_by(Campaign.id)
        .limit(limit)
    ).all()
    states = []
    for campaign, queue in rows:
        states.append(
            CampaignState(
                id=campaign.id,
                name=campaign.name,
                status=campaign.status,
                defer_reason=queue.defer_reason if queue else None,
                deferred_until=queue.deferred_until if queue else None,
                consecutive_transient_errors=queue.consecutive_transient_errors if queue else 0,
                current_job_id=queue.current_job_id if queue else None,
                heartbeat_at=(queue.heartbeat_at or queue.updated_at) if queue else campaign.updated_at,
                breaker_tripped_at=queue.breaker_tripped_at if queue else None,
                last_error=queue.last_error if queue else None,
                unknown_count=campaign.unknown_count,
                paused_by=queue.paused_by.email if queue and queue.paused_by else None,
                paused_at=queue.paused_at if queue else None,
                pause_detail=queue.pause_detail if queue else None,
            )
        )
    return states


class CheckContext:
    """What the checks share within one run: clock, connections, lazily gathered data."""

    def __init__(self, now: datetime, here: str = SHELL) -> None:
        self.now = now
        self.here = here  # how verdicts name the process running the diagnosis
        self.settings = get_settings()
        self.db_ok = False
        self.redis_ok = False
        self._cache: dict[str, Any] = {}

    @property
    def redis(self) -> Redis:
        """The app's Redis connection."""
        return get_redis()

    def cached(self, key: str, compute: Callable[[], Any]) -> Any:
        """`compute()` once per run, however many checks ask for `key`."""
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def workers(self) -> list[WorkerInfo]:
        """Every registered RQ worker, alive or dead."""
        return self.cached("workers", lambda: list_workers(self.redis, self.now))

    def scheduled(self) -> list[ScheduledJob]:
        """The jobs rq-scheduler holds, soonest first."""
        return self.cached("scheduled", lambda: list_scheduled_jobs(self.redis, self.now))

    def campaigns(self) -> list[CampaignState]:
        """Started, not final campaigns with their send-loop row."""
        return self.cached("campaigns", list_active_campaigns)

    def settings_in_effect(self) -> SettingsInEffect:
        """What the live processes run with, compared with this shell (nothing published when Redis is down)."""
        def compute() -> SettingsInEffect:
            try:
                live_workers = {w.name for w in self.workers() if w.alive}
                live_schedulers = {i.key.removeprefix(SCHEDULER_INSTANCE_KEY_PREFIX)
                                   for i in list_scheduler_instances(self.redis) if i.alive}
                publications = live_publications(read_publications(self.redis), live_workers, live_schedulers)
            except RedisError:
                publications = []
            return compare_settings(publications, self.settings, self.here)

        return self.cached("settings_in_effect", compute)

    def waiting_job_ids(self) -> set[str]:
        """Ids of the jobs waiting in the product's queues (first 1,000 of each)."""
        def compute() -> set[str]:
            ids: set[str] = set()
            for name in QUEUE_NAMES:
                ids.update(Queue(name, connection=self.redis).get_job_ids(0, 1000))
            return ids

        return self.cached("waiting", compute)
