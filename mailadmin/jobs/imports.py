"""The contacts import job: one CSV into one list (queued by `services.audiences.imports.begin_import`).

All its work is `run_import`: the record in Redis shows progress and the outcome; a bad file ends as
a FAILED record with its message (the job itself succeeds); an unexpected error fails the job too,
so RQ keeps its traceback in the failed registry.
"""

from __future__ import annotations

from dataclasses import asdict

from mailadmin.jobs import job_app_context
from mailadmin.services.audiences.imports import run_import


def import_contacts(import_id: str) -> dict:
    """RQ job: run the import `import_id`; returns its final record."""
    with job_app_context():
        record = asdict(run_import(import_id))
        record.pop("errors", None)  # the record in Redis keeps them; the job result stays small
        return record
