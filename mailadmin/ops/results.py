"""What a diagnosis run answers: a status per check (ok | warning | critical), a one-line verdict,
the playbook section to read, and the run's worst status."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mailadmin.ops.anchors import PlaybookRef

OK = "ok"
WARNING = "warning"
CRITICAL = "critical"
_RANK = {OK: 0, WARNING: 1, CRITICAL: 2}


@dataclass
class CheckResult:
    """One line of the diagnosis; `details` carries what the operations page shows in the block."""

    key: str
    title: str
    status: str
    verdict: str
    playbook: PlaybookRef
    details: dict[str, Any] = field(default_factory=dict)
    # Further lines a terminal report prints under the verdict (the settings in effect, one per variable).
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the status is ok."""
        return self.status == OK


@dataclass
class Diagnosis:
    """All checks of one run, in playbook order."""

    checked_at: datetime
    checks: list[CheckResult]

    @property
    def status(self) -> str:
        """The worst status of any check."""
        return max((c.status for c in self.checks), key=_RANK.__getitem__, default=OK)

    def check(self, key: str) -> CheckResult:
        """The check named `key` (KeyError if there is none)."""
        for result in self.checks:
            if result.key == key:
                return result
        raise KeyError(key)
