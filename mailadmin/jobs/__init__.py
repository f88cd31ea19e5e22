"""Background work, the top layer: the RQ entry points and the processes that run them.

* `send/` — the send loop (orchestration only; its reads and writes go through `services.delivery`);
* `recovery.py` — the crash-recovery sweep (same);
* `bounce_mailbox.py` — the periodic bounce-mailbox job;
* `imports.py` — the contacts import into a list (services.audiences.imports);
* `events.py` — events out: the delivery job (its own queue) and the scheduler's sweep for due deliveries;
* `continuations.py` — the rq-scheduler subclass the `scheduler` process runs;
* `workers.py` — the RQ worker class `python worker.py` runs; the `scheduler` command is `cli/scheduler.py`.

Hand-offs to RQ and their job ids, the stop signal and outage handling sit one layer down in
`mailadmin.queue`; nothing from the services down imports this package. Queue names live in
`mailadmin.extensions` (SEND_QUEUE, DEFAULT_QUEUE, EVENTS_QUEUE).

A job runs in the app context its process pushes: `SendWorker` around each job, with the app
worker.py built; the scheduler around its loop, with the app of `flask scheduler`; tests that run
jobs in-process, with theirs.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

from flask import has_app_context


def job_app_context() -> AbstractContextManager:
    """The app context the job's process pushed; without one, an error that says how to run workers."""
    if not has_app_context():
        raise RuntimeError(
            "mailadmin jobs run inside the app context their worker pushes: start workers with "
            "`python worker.py` (a plain `rq worker` has no app)"
        )
    return nullcontext()
