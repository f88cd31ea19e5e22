"""Background work: the send loop (send.py), hand-offs to RQ / rq-scheduler and crash recovery
(scheduling.py) and the RQ worker class (workers.py); the `scheduler` command is `cli/scheduler.py`.

Queue names live in `mailadmin.extensions` (SEND_QUEUE, DEFAULT_QUEUE).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

from flask import Flask, has_app_context

_job_app: Flask | None = None


def set_job_app(app: Flask | None) -> None:
    """The app whose context jobs run in when none is pushed (set by worker.py)."""
    global _job_app
    _job_app = app


def job_app_context() -> AbstractContextManager:
    """The current app context if one is pushed (worker.py, in-process tests), else a new one.

    A plain `rq worker` started without worker.py still works: the app is built once from the
    environment on first use.
    """
    global _job_app
    if has_app_context():
        return nullcontext()
    if _job_app is None:
        from mailadmin import create_app

        _job_app = create_app()
    return _job_app.app_context()
