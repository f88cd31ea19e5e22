"""One diagnosis run: the checks in playbook order, each guarded so that a broken dependency or a
broken check is reported instead of hiding the others."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from mailadmin.extensions import db
from mailadmin.models.types import utcnow
from mailadmin.ops.anchors import (
    A_BREAKER,
    A_CAMPAIGNS,
    A_DIAGNOSIS,
    A_QUEUES,
    A_RATE_LIMIT,
    A_SCHEDULER,
    A_SETTINGS,
    A_STUCK,
    A_SWITCH,
    A_SYMPTOM_DB_DOWN,
    A_SYMPTOM_REDIS_DOWN,
    A_UNKNOWN,
    A_WORKERS,
    PlaybookRef,
)
from mailadmin.ops.checks import CHECKS
from mailadmin.ops.context import CheckContext
from mailadmin.ops.in_effect import SHELL
from mailadmin.ops.results import CRITICAL, WARNING, CheckResult, Diagnosis

CHECK_KEYS = tuple(c[0] for c in CHECKS)
# The database and Redis checks run first, always: every other check depends on them.
_DEPENDENCY_KEYS = ("database", "redis")
# Where a check that raised points the reader (its own section of the 60-second diagnosis).
_DEFAULT_ANCHORS = {
    "sending_switch": A_SWITCH, "queues": A_QUEUES, "workers": A_WORKERS, "scheduler": A_SCHEDULER,
    "campaigns": A_CAMPAIGNS, "stuck": A_STUCK, "unknown": A_UNKNOWN, "breaker": A_BREAKER, "rate_limit": A_RATE_LIMIT,
    "settings": A_SETTINGS,
}


def run_diagnosis(only: Iterable[str] | None = None, now: datetime | None = None, here: str = SHELL) -> Diagnosis:
    """Run the checks (all, or those named in `only`) in playbook order; never raises for a broken dependency.

    Needs an app context. A check whose dependency (database, Redis) is down is reported as
    `warning` "not checked" — the dependency's own check is the critical one. `here` names the
    process running it in the verdicts ("this shell" for the doctor).
    """
    ctx = CheckContext(now or utcnow(), here)
    wanted = set(only) if only is not None else None
    results: list[CheckResult] = []
    for key, title, needs_db, needs_redis, function in CHECKS:
        if key in _DEPENDENCY_KEYS:
            result = function(ctx)  # always run: the others depend on them
        elif wanted is not None and key not in wanted:
            continue
        else:
            result = _guarded_check(ctx, key, title, needs_db, needs_redis, function)
        if wanted is None or key in wanted:
            results.append(result)
    return Diagnosis(checked_at=ctx.now, checks=results)


def _guarded_check(ctx: CheckContext, key: str, title: str, needs_db: bool, needs_redis: bool,
                   function: Callable[[CheckContext], CheckResult]) -> CheckResult:
    """Run one check, or say why it was not run (its dependency is down) or how it broke."""
    missing = [name for name, needed, ok in (("database", needs_db, ctx.db_ok), ("Redis", needs_redis, ctx.redis_ok))
               if needed and not ok]
    if missing:
        anchor = A_SYMPTOM_DB_DOWN if "database" in missing else A_SYMPTOM_REDIS_DOWN
        return CheckResult(key, title, WARNING, f"not checked: {' and '.join(missing)} unreachable", PlaybookRef(anchor))
    try:
        return function(ctx)
    except Exception as exc:  # one broken check must not hide the others
        db.session.rollback()
        return CheckResult(key, title, CRITICAL, f"check failed: {type(exc).__name__}: {exc}",
                           PlaybookRef(_DEFAULT_ANCHORS.get(key, A_DIAGNOSIS)))
