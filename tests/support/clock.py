"""A settable clock for the send slice (`run_send_slice(..., clock=...)`): tests drive time with it."""

from __future__ import annotations

from datetime import UTC, datetime


class SettableClock:
    """`clock()` returns `clock.now`; a test moves time by setting it."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now
