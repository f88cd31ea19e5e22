"""Living through Redis and database outages: one outage tracker per service and process, and
a capped, jittered backoff to wait until the service returns.

Every long-running process (worker, work horse, scheduler, web) reports a failed call to its
tracker and a successful one after it; the tracker logs ONE JSON record when an outage starts
("Redis unavailable" / "Database unavailable", field `process`) and ONE when it ends ("Redis
available again" / "Database available again", with `outage_seconds`) — never one per attempt.

It imports nothing of the app (no models, no send loop): every process uses it, from the web
pages' 503 to the worker class, and `queue.dispatch` reports Redis outages through it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from enum import Enum
from typing import TypeVar

import redis.exceptions
import sqlalchemy.exc
from loguru import logger

from mailadmin.queue.lifeline import raise_if_parent_gone

try:  # the PostgreSQL driver's own errors, should one reach us unwrapped by SQLAlchemy
    import psycopg
except ImportError:  # pragma: no cover - psycopg is in requirements.txt
    psycopg = None

T = TypeVar("T")

# What "Redis is down" looks like from redis-py (BusyLoadingError is a ConnectionError).
REDIS_DOWN: tuple[type[BaseException], ...] = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
DATABASE_DOWN: tuple[type[BaseException], ...] = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    *((psycopg.OperationalError, psycopg.InterfaceError) if psycopg else ()),
)


def is_database_outage(exc: BaseException) -> bool:
    """Did this error come from a database we cannot reach (rather than from a bad statement)?"""
    if isinstance(exc, DATABASE_DOWN):
        return True
    return isinstance(exc, sqlalchemy.exc.DBAPIError) and bool(exc.connection_invalidated)


def is_redis_outage(exc: BaseException) -> bool:
    """Did this error come from a Redis we cannot reach?"""
    return isinstance(exc, REDIS_DOWN)


class Service(Enum):
    """A backing service whose outages are tracked; the value starts the log messages."""

    REDIS = "Redis"
    DATABASE = "Database"

    def is_outage(self, exc: BaseException) -> bool:
        """Is `exc` this service being unreachable?"""
        return is_redis_outage(exc) if self is Service.REDIS else is_database_outage(exc)


class OutageTracker:
    """Logs when one service becomes unreachable for this process, and when it is back."""

    def __init__(self, service: Service, process: str) -> None:
        self.service = service
        self.process = process
        self.down_since: float | None = None
        self.recovered_at: float | None = None
        self.on_recovery: list[Callable[[float], None]] = []

    @property
    def down(self) -> bool:
        """Is the service unreachable as far as this process last saw?"""
        return self.down_since is not None

    def seconds_since_recovery(self) -> float:
        """How long ago the last outage this process saw ended (infinite when it saw none)."""
        return float("inf") if self.recovered_at is None else time.monotonic() - self.recovered_at

    def failed(self, exc: BaseException) -> None:
        """A call failed because the service is unreachable: log once when the outage starts."""
        if self.down_since is not None:
            return
        self.down_since = time.monotonic()
        logger.bind(process=self.process, service=self.service.value.lower(), error_type=type(exc).__name__).error(
            f"{self.service.value} unavailable"
        )

    def succeeded(self) -> float | None:
        """A call worked: when an outage was running, log its end and return its length in seconds."""
        if self.down_since is None:
            return None
        seconds = round(time.monotonic() - self.down_since, 1)
        self.down_since = None
        self.recovered_at = time.monotonic()
        logger.bind(process=self.process, service=self.service.value.lower(), outage_seconds=seconds).warning(
            f"{self.service.value} available again"
        )
        for callback in list(self.on_recovery):
            callback(seconds)
        return seconds


_process_name = "app"
_trackers: dict[Service, OutageTracker] = {}


def set_process_name(name: str) -> None:
    """Name this process in outage records (worker, horse, scheduler, web, cli); fresh trackers."""
    global _process_name
    _process_name = name
    _trackers.clear()


def outage_tracker(service: Service) -> OutageTracker:
    """This process's tracker for `service`."""
    tracker = _trackers.get(service)
    if tracker is None:
        tracker = _trackers[service] = OutageTracker(service, _process_name)
    return tracker


class Backoff:
    """Capped exponential backoff with jitter: 0.5 s, 1 s, 2 s ... up to `cap`, each ±50 %."""

    def __init__(self, base: float = 0.5, cap: float = 5.0) -> None:
        self.base = base
        self.cap = cap
        self.attempt = 0

    def next_delay(self) -> float:
        """The pause before the next attempt (grows until the cap)."""
        delay = min(self.cap, self.base * 2**self.attempt)
        self.attempt += 1
        # Jitter, so that every process does not hit a returning service in the same instant.
        return random.uniform(delay / 2, delay * 1.5 if delay < self.cap else delay)

    def reset(self) -> None:
        """Start again from the shortest pause (after a success)."""
        self.attempt = 0


def call_through_outage(
    call: Callable[[], T],
    *,
    services: tuple[Service, ...] = (Service.REDIS,),
    deadline: float | None = None,
    cap: float = 5.0,
    before_retry: Callable[[], None] | None = None,
) -> T:
    """Run `call`, retrying with backoff while one of `services` is unreachable, until it works.

    `deadline` (time.monotonic()) bounds the wait: past it, the last outage error is raised.
    `before_retry` runs before each new attempt (a rollback; it may raise to stop waiting).
    A work horse whose worker has exited stops waiting: `lifeline.ParentGone` is raised.
    """
    backoff = Backoff(cap=cap)
    while True:
        try:
            result = call()
        except Exception as exc:
            service = next((service for service in services if service.is_outage(exc)), None)
            if service is None:
                raise
            outage_tracker(service).failed(exc)
            # Nobody is left to take the result: a horse must not retry forever on its own.
            raise_if_parent_gone()
            pause = backoff.next_delay()
            if deadline is not None and time.monotonic() + pause > deadline:
                raise
            time.sleep(pause)
            if before_retry is not None:
                before_retry()
            continue
        for service in services:
            outage_tracker(service).succeeded()
        return result
