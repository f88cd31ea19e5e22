"""Background work, in layers that point one way:

* `dispatch.py` — hand-offs to RQ and rq-scheduler and their job ids (no database access);
* `signals.py` — the Redis stop signal services publish and send slices listen to (no database);
* `send.py` — the send loop (orchestration only; its writes go through `services.delivery`);
* `recovery.py` — the crash-recovery sweep (same);
* `continuations.py` — the rq-scheduler subclass the `scheduler` process runs;
* `workers.py` — the RQ worker class; the `scheduler` command is `cli/scheduler.py`.

Queue names live in `mailadmin.extensions` (SEND_QUEUE, DEFAULT_QUEUE).
"""

from __future__ import annotations

import importlib
from contextlib import AbstractContextManager, nullcontext

from flask import Flask, has_app_context

# The top-level module a plain `rq worker` (started without worker.py) builds the app from. It is
# named, not imported here: the jobs layer never imports the package root (`create_app`) — that
# would point a lower layer at the top. `wsgi` is the project's entry module, outside the package.
FALLBACK_APP_MODULE = "wsgi"

_job_app: Flask | None = None


def set_job_app(app: Flask | None) -> None:
    """The app whose context jobs run in when none is pushed (set by worker.py and `flask scheduler`)."""
    global _job_app
    _job_app = app


def job_app_context() -> AbstractContextManager:
    """The current app context if one is pushed (worker.py, in-process tests), else the job app's.

    A plain `rq worker` started without worker.py still works: on first use the app is taken
    from the entry module `wsgi` (which builds it from the environment).
    """
    global _job_app
    if has_app_context():
        return nullcontext()
    if _job_app is None:
        _job_app = importlib.import_module(FALLBACK_APP_MODULE).app
    return _job_app.app_context()
