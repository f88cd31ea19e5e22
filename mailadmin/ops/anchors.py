"""The playbook the diagnosis points to: its files, the sections each check links to, GitHub's heading slugs.

tests/test_playbook.py checks every anchor here against the headings of playbook/*.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from mailadmin.settings import PROJECT_ROOT

PLAYBOOK_DIR = PROJECT_ROOT / "playbook"
PLAYBOOK_FILES = {"oncall": "ONCALL.md", "observability": "OBSERVABILITY.md"}

# Sections of playbook/ONCALL.md the checks point to (GitHub-style heading slugs, see `heading_slug`).
A_DIAGNOSIS = "60-second-diagnosis"
A_DATABASE = "1-database"
A_REDIS = "2-redis"
A_SWITCH = "3-the-global-sending-switch"
A_QUEUES = "4-queues-and-failed-jobs"
A_WORKERS = "5-workers"
A_SCHEDULER = "6-the-scheduler-and-the-scheduled-continuations"
A_CAMPAIGNS = "7-campaigns-by-state"
A_STUCK = "8-stuck-and-overdue-campaigns"
A_UNKNOWN = "9-recipients-in-unknown"
A_BREAKER = "10-circuit-breaker-trips-in-the-last-24-h"
A_RATE_LIMIT = "11-rate-limit-usage"
A_SETTINGS = "12-settings-in-effect"
A_SYMPTOM_DB_DOWN = "database-unreachable"
A_SYMPTOM_REDIS_DOWN = "redis-unreachable"
A_SYMPTOM_MIGRATIONS = "migrations-not-applied"
A_SYMPTOM_GLOBAL_PAUSE = "global_pause-all-sending-switched-off"
A_SYMPTOM_FAILED_JOBS = "failed-jobs-in-rq"
A_SYMPTOM_QUEUE_BACKLOG = "jobs-wait-in-the-queue"
A_SYMPTOM_WORKER_DEAD = "worker-dead"
A_SYMPTOM_SCHEDULER_DEAD = "scheduler-dead"
A_SYMPTOM_STUCK = "campaign-stuck-in-sending"
A_SYMPTOM_UNKNOWN = "recipients-in-unknown"
A_SYMPTOM_BREAKER = "circuit_breaker-paused-after-repeated-smtp-errors"
A_SYMPTOM_RATE_LIMIT = "rate_limit-hourly-quota-used-up"
A_SYMPTOM_SETTINGS = "processes-run-with-different-settings"


def heading_slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces -> '-'."""
    plain = re.sub(r"[^\w\- ]", "", heading.strip().lower())  # keeps snake_case, drops ` * : . ( )
    return plain.replace(" ", "-")


def playbook_path(name: str) -> Path:
    """Path of a playbook file by its short name ('oncall', 'observability'); KeyError otherwise."""
    return PLAYBOOK_DIR / PLAYBOOK_FILES[name]


@dataclass(frozen=True)
class PlaybookRef:
    """A section of a playbook file: `name` is a key of PLAYBOOK_FILES, `anchor` a heading slug."""

    anchor: str
    name: str = "oncall"

    @property
    def path(self) -> str:
        """Where to read it in a checkout: playbook/ONCALL.md#anchor."""
        return f"playbook/{PLAYBOOK_FILES[self.name]}#{self.anchor}"


_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")


@lru_cache(maxsize=8)
def _section_titles(name: str, modified: float) -> dict[str, str]:
    """Heading slug -> heading text of one playbook file, outside code blocks (cached per file version)."""
    titles: dict[str, str] = {}
    in_code = False
    for line in playbook_path(name).read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
            continue
        heading = None if in_code else _HEADING.match(line)
        if heading:
            titles.setdefault(heading_slug(heading.group(1)), heading.group(1).replace("`", ""))
    return titles


def section_title(ref: PlaybookRef) -> str | None:
    """The title of the playbook section `ref` points to ("5. Workers"), or None if it has none."""
    path = playbook_path(ref.name)
    try:
        return _section_titles(ref.name, path.stat().st_mtime).get(ref.anchor)
    except OSError:
        return None
