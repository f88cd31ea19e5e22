"""Short human forms of ages, times and counts for one-line verdicts (page, `flask doctor`, `flask campaigns`)."""

from __future__ import annotations

from datetime import datetime

from mailadmin.models.moments import TimedText, plain_time

__all__ = ["TimedText", "age_seconds", "format_age", "format_time", "plural"]


def age_seconds(moment: datetime | None, now: datetime) -> float | None:
    """Seconds from `moment` to `now` (None when there is no moment)."""
    return None if moment is None else (now - moment).total_seconds()


def format_age(seconds: float | None) -> str:
    """'42 s', '7 min', '3 h', '2 d' — short, for one-line verdicts."""
    if seconds is None:
        return "never"
    seconds = abs(seconds)
    if seconds < 90:
        return f"{round(seconds)} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    if seconds < 36 * 3600:
        return f"{round(seconds / 3600)} h"
    return f"{round(seconds / 86400)} d"


def format_time(moment: datetime | None) -> str:
    """UTC, to the second: what every log line and the SQL in the playbook show (terminals only:
    a verdict with a moment is a `TimedText`, so that the operations page shows it in the viewer's zone)."""
    return plain_time(moment)


def plural(count: int, word: str, plural: str | None = None) -> str:
    """'1 worker', '2 workers' (or the irregular `plural`)."""
    return f"{count} {word if count == 1 else (plural or word + 's')}"
