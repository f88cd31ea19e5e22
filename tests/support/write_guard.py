"""A test-session guard: every UPDATE / INSERT / DELETE of campaigns, recipients or campaign_queue
must be issued from `mailadmin/services/` (the one layer that owns those writes).

A SQLAlchemy `before_cursor_execute` listener (on every Engine) looks at each statement; for a
write to a guarded table it walks the Python stack to the innermost frame inside `mailadmin/`.
If that frame is not under `mailadmin/services/`, the write is a violation. Writes with no frame
inside `mailadmin/` at all (test factories in tests/, bench/, migrations) are allowed. The
autouse fixture in conftest.py fails the test that made a violation.
"""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from sqlalchemy import event
from sqlalchemy.engine import Engine

import mailadmin

GUARDED_TABLES = ("campaigns", "recipients", "campaign_queue")
PACKAGE_DIR = Path(mailadmin.__file__).resolve().parent
SERVICES_DIR = PACKAGE_DIR / "services"

_WRITE = re.compile(
    r"\b(?:UPDATE|INSERT\s+INTO|DELETE\s+FROM)\s+[\"`]?(" + "|".join(GUARDED_TABLES) + r")[\"`]?(?![\w.])",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Violation:
    """A guarded write issued from outside the services layer."""

    table: str
    where: str  # file:line of the innermost mailadmin/ frame
    statement: str

    def __str__(self) -> str:
        return f"{self.where} writes {self.table}: {self.statement[:120]!r}"


_violations: list[Violation] = []
_lock = threading.Lock()
_installed = False


def written_table(statement: str) -> str | None:
    """The guarded table a statement writes to, or None."""
    match = _WRITE.search(statement)
    return match.group(1).lower() if match else None


def innermost_package_frame(frame: FrameType | None) -> FrameType | None:
    """The innermost stack frame whose code lives in mailadmin/."""
    while frame is not None:
        filename = frame.f_code.co_filename
        if filename.startswith(str(PACKAGE_DIR)):
            return frame
        frame = frame.f_back
    return None


def check_write(statement: str, frame: FrameType | None) -> Violation | None:
    """A Violation when `statement` writes a guarded table from a mailadmin/ frame outside services/."""
    table = written_table(statement)
    if table is None:
        return None
    origin = innermost_package_frame(frame)
    if origin is None or origin.f_code.co_filename.startswith(str(SERVICES_DIR)):
        return None
    where = f"{Path(origin.f_code.co_filename).relative_to(PACKAGE_DIR.parent)}:{origin.f_lineno}"
    return Violation(table, where, " ".join(statement.split()))


def _before_cursor_execute(conn, cursor, statement, parameters, context, executemany) -> None:
    violation = check_write(statement, sys._getframe(1))
    if violation is not None:
        with _lock:
            _violations.append(violation)


def install() -> None:
    """Listen on every Engine (once per process)."""
    global _installed
    if not _installed:
        event.listen(Engine, "before_cursor_execute", _before_cursor_execute)
        _installed = True


def take_violations() -> list[Violation]:
    """The violations since the last call (and forget them)."""
    with _lock:
        found = list(_violations)
        _violations.clear()
    return found


def guard() -> Iterator[None]:
    """Body of the autouse fixture: install, run the test, fail it on any violation."""
    install()
    take_violations()
    yield
    found = take_violations()
    assert not found, "writes to campaigns/recipients/campaign_queue outside mailadmin/services/:\n" + "\n".join(
        map(str, found)
    )
