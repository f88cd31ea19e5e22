"""Running the product's RQ jobs inside the test process (RQ's SimpleWorker in burst mode)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from flask import current_app
from rq import Queue, SimpleWorker

from mailadmin.extensions import QUEUE_NAMES


def rq_connection(redis_url: str) -> redis.Redis:
    """A Redis client for RQ itself (RQ changes the socket timeout of the client it is given)."""
    return redis.Redis.from_url(redis_url)


def run_queued_jobs(redis_url: str, *, max_jobs: int | None = None) -> bool:
    """Run the queued jobs (and the continuations they enqueue) in this process with RQ's
    SimpleWorker in burst mode; True when at least one job ran."""
    connection = rq_connection(redis_url)
    try:
        queues = [Queue(name, connection=connection) for name in QUEUE_NAMES]
        worker = SimpleWorker(queues, connection=connection)
        return worker.work(burst=True, max_jobs=max_jobs, logging_level="WARNING")
    finally:
        connection.close()


def queued_job_count(redis_url: str) -> int:
    """Jobs waiting in the product's queues."""
    connection = rq_connection(redis_url)
    try:
        return sum(Queue(name, connection=connection).count for name in QUEUE_NAMES)
    finally:
        connection.close()


RQ_LOGGERS = ("rq.worker", "rq.job")


@contextmanager
def preserved_rq_loggers() -> Iterator[None]:
    """Undo what an in-process RQ worker does to the stdlib loggers (`worker.work(logging_level=...)`
    sets their level and, without a root handler, adds its own handlers), so later tests start clean."""
    saved = {}
    for name in RQ_LOGGERS:
        stdlib_logger = logging.getLogger(name)
        saved[name] = (stdlib_logger.level, list(stdlib_logger.handlers), stdlib_logger.propagate)
    try:
        yield
    finally:
        for name, (level, handlers, propagate) in saved.items():
            stdlib_logger = logging.getLogger(name)
            stdlib_logger.setLevel(level)
            stdlib_logger.handlers = handlers
            stdlib_logger.propagate = propagate


def id_of_current_app() -> int:
    """A job that answers which app's context it runs in."""
    return id(current_app._get_current_object())
