"""An import's record in Redis: what it is (list, file, mode), where it stands (rows read, added,
updated, rejected) and its outcome. The job writes it as it goes; the import page polls it as JSON.

One hash per import (`mailadmin:audience-import:<id>`), kept IMPORT_TTL after its last change; the
uploaded file and its rejected rows are in the database (`import_store`) for as long at most.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass, field
from enum import StrEnum

from mailadmin.extensions import get_redis
from mailadmin.services.audiences.bounds import IMPORT_TTL

IMPORT_KEY_TEMPLATE = "mailadmin:audience-import:{import_id}"


class ImportState(StrEnum):
    QUEUED = "queued"
    READING = "reading"  # inferring the columns' types
    LOADING = "loading"
    DONE = "done"
    FAILED = "failed"


@dataclass
class ImportRecord:
    """One import into a list, as the page shows it."""

    id: str
    list_id: int
    user_id: int
    filename: str
    mode: str
    new_status: str
    state: str = ImportState.QUEUED
    rows_total: int = 0
    rows_read: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    duplicates: int = 0
    message: str = ""
    columns: dict[str, str] = field(default_factory=dict)  # attribute -> its inferred type
    errors: list[list] = field(default_factory=list)  # [row, email, reason], the first ERRORS_SHOWN
    seconds: dict[str, float] = field(default_factory=dict)  # per phase: types, rows (check + stage), merge

    @property
    def finished(self) -> bool:
        return self.state in (ImportState.DONE, ImportState.FAILED)

    @property
    def percent(self) -> int:
        if self.state == ImportState.DONE:
            return 100
        return min(99, int(100 * self.rows_read / self.rows_total)) if self.rows_total else 0


def new_import_id() -> str:
    """A fresh import id: unguessable, usable as a file name."""
    return secrets.token_hex(12)


def save_record(record: ImportRecord) -> None:
    """Write the whole record (and keep it another IMPORT_TTL)."""
    get_redis().set(IMPORT_KEY_TEMPLATE.format(import_id=record.id), json.dumps(asdict(record)), ex=IMPORT_TTL)


def load_record(import_id: str) -> ImportRecord | None:
    """The record of an import, or None (unknown or expired)."""
    if not import_id.isalnum():
        return None
    raw = get_redis().get(IMPORT_KEY_TEMPLATE.format(import_id=import_id))
    return ImportRecord(**json.loads(raw)) if raw else None
