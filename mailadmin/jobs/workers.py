"""The RQ worker class of the product: Heroku-style graceful SIGTERM for the send loop."""

from __future__ import annotations

from rq.job import Job
from rq.queue import Queue
from rq.worker import HerokuWorker

from mailadmin.extensions import db
from mailadmin.jobs.send import request_slice_stop


class SendWorker(HerokuWorker):
    """HerokuWorker (SIGTERM -> SIGRTMIN to the work horse -> ShutDownImminentException 6 s later)
    whose horse also asks the running send slice to stop before its next message, so a slice
    normally ends cleanly — outcomes recorded, continuation enqueued — well before that deadline."""

    def request_stop_sigrtmin(self, signum, frame):
        """In the horse, on SIGRTMIN: stop the slice between messages, and arm RQ's hard deadline."""
        request_slice_stop()
        super().request_stop_sigrtmin(signum, frame)

    def main_work_horse(self, job: Job, queue: Queue) -> None:
        """Run the job in the forked horse, on fresh database connections."""
        # The forked horse must not reuse the parent's pooled DB sockets (SQLAlchemy's fork recipe).
        db.engine.dispose(close=False)
        super().main_work_horse(job, queue)
