"""The 60-second diagnosis, in ONE place: the operations page (`admin/operations.py`) and
`flask --app wsgi doctor` (`cli/doctor.py`) both call `run_diagnosis()` and only differ in how they
show the result.

Each check answers with a `CheckResult`: a status (ok | warning | critical), a one-line verdict
and the playbook section (`playbook/ONCALL.md#...`) that explains what to do. Nothing here
changes the product's state.

  anchors.py     the playbook files and the sections the checks point to (GitHub heading slugs)
  rq_state.py    RQ / rq-scheduler key names; workers (alive or dead), scheduler instances, scheduled jobs
  probes.py      is a process alive on this machine?
  context.py     what the checks of one run share (clock, connections, data gathered once)
  checks.py      the twelve checks and their thresholds, in playbook order
  in_effect.py   the settings the live processes published, compared with each other and this shell
  gathering.py   run_diagnosis(): the runner, guarding each check
  results.py     CheckResult, Diagnosis, the statuses
  formatting.py  short ages, UTC times, counts

This module re-exports what the page, the CLI and the tests use.
"""

from mailadmin.ops.anchors import (
    A_SYMPTOM_SCHEDULER_DEAD,
    A_SYMPTOM_STUCK,
    PLAYBOOK_DIR,
    PLAYBOOK_FILES,
    PlaybookRef,
    heading_slug,
    playbook_path,
)
from mailadmin.ops.formatting import format_age, format_time
from mailadmin.ops.gathering import CHECK_KEYS, run_diagnosis
from mailadmin.ops.results import CRITICAL, OK, WARNING, CheckResult, Diagnosis
from mailadmin.ops.rq_state import (
    RQ_FAILED_KEY_TEMPLATE,
    RQ_JOB_KEY_PREFIX,
    RQ_QUEUE_KEY_PREFIX,
    RQ_QUEUES_KEY,
    RQ_STARTED_KEY_TEMPLATE,
    RQ_WORKER_KEY_PREFIX,
    RQ_WORKERS_BY_QUEUE_KEY_TEMPLATE,
    RQ_WORKERS_KEY,
    SCHEDULED_JOBS_KEY,
    SCHEDULER_INSTANCE_KEY_PREFIX,
    SCHEDULER_LOCK_KEY,
    SEND_QUEUE_KEY,
    list_scheduler_instances,
    list_workers,
)

__all__ = [
    "A_SYMPTOM_SCHEDULER_DEAD", "A_SYMPTOM_STUCK", "CHECK_KEYS", "CRITICAL", "OK", "PLAYBOOK_DIR",
    "PLAYBOOK_FILES", "RQ_FAILED_KEY_TEMPLATE", "RQ_JOB_KEY_PREFIX", "RQ_QUEUES_KEY", "RQ_QUEUE_KEY_PREFIX",
    "RQ_STARTED_KEY_TEMPLATE", "RQ_WORKERS_BY_QUEUE_KEY_TEMPLATE", "RQ_WORKERS_KEY", "RQ_WORKER_KEY_PREFIX",
    "SCHEDULED_JOBS_KEY", "SCHEDULER_INSTANCE_KEY_PREFIX", "SCHEDULER_LOCK_KEY", "SEND_QUEUE_KEY", "WARNING",
    "CheckResult", "Diagnosis", "PlaybookRef", "format_age", "format_time", "heading_slug", "list_scheduler_instances",
    "list_workers", "playbook_path", "run_diagnosis",
]
