"""The set-based half of an import: good rows go into a temporary staging table (PostgreSQL: COPY
through psycopg 3's `cursor.copy`; SQLite: executemany in batches), then a handful of statements
merge the whole file at once — never a statement per row.

The merge, in the caller's transaction (all or nothing: a failed import leaves no trace):
1. `import_last`: the last row of each address (an address twice in one file: the last row wins);
2. existing contacts whose name or attributes differ get them (mode update: merged; replace: the
   file's attributes only; add: untouched);
3. new addresses become contacts;
4. contacts not yet on the list become members with the chosen status, each with its history row
   (source "import"). On PostgreSQL steps 3 and 4 are ONE statement (`_MERGE_NEW_POSTGRES`); an
   address a form adds at the same moment as the import is left to the form's own membership. A contact already on the list keeps its status: an import never re-subscribes
   someone who unsubscribed. A second import of the same file therefore changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, text

from mailadmin.extensions import db
from mailadmin.models.audience import ChangeSource
from mailadmin.models.types import UTCDateTime
from mailadmin.services.audiences import list_counts
from mailadmin.services.audiences.bounds import SQLITE_BATCH
from mailadmin.services.audiences.import_files import ContactRow


@dataclass(frozen=True)
class MergeCounts:
    """What the merge did: members added to the list, existing contacts updated, earlier duplicate rows."""

    added: int
    updated: int
    duplicates: int


def _sql(statement: str):
    """A statement whose :now is bound as the product stores moments (naive UTC text on SQLite)."""
    query = text(statement)
    return query.bindparams(bindparam("now", type_=UTCDateTime())) if ":now" in statement else query


def _postgres() -> bool:
    return db.engine.dialect.name == "postgresql"


def create_staging() -> None:
    """A fresh, empty staging table for this transaction's import."""
    session = db.session
    if _postgres():
        session.execute(text("DROP TABLE IF EXISTS pg_temp.import_staging, pg_temp.import_last"))
        session.execute(text("CREATE TEMP TABLE import_staging (row_number integer, email text, name text, "
                             "attributes jsonb) ON COMMIT DROP"))
    else:
        session.execute(text("DROP TABLE IF EXISTS temp.import_staging"))
        session.execute(text("DROP TABLE IF EXISTS temp.import_last"))
        session.execute(text("CREATE TEMP TABLE import_staging (row_number integer, email text, name text, "
                             "attributes text)"))


def _attributes_json(attributes: dict) -> str:
    return json.dumps(attributes, separators=(",", ":"), ensure_ascii=False)


def stage_rows(rows: Sequence[ContactRow]) -> None:
    """Append good rows to the staging table."""
    if not rows:
        return
    if _postgres():
        cursor = db.session.connection().connection.driver_connection.cursor()
        with cursor.copy("COPY import_staging (row_number, email, name, attributes) FROM STDIN") as copy:
            for row in rows:
                copy.write_row((row.row, row.email, row.name, _attributes_json(row.attributes)))
        return
    raw = db.session.connection().connection.driver_connection
    for start in range(0, len(rows), SQLITE_BATCH):
        raw.executemany("INSERT INTO import_staging VALUES (?, ?, ?, ?)",
                        [(row.row, row.email, row.name, _attributes_json(row.attributes))
                         for row in rows[start:start + SQLITE_BATCH]])


def _last_rows() -> int:
    """Keep the last row of each address in `import_last`; returns how many earlier rows were dropped."""
    session = db.session
    if _postgres():
        session.execute(text("CREATE TEMP TABLE import_last ON COMMIT DROP AS SELECT DISTINCT ON (email) "
                             "email, name, attributes FROM import_staging ORDER BY email, row_number DESC"))
    else:
        session.execute(text(
            "CREATE TEMP TABLE import_last AS SELECT s.email, s.name, s.attributes FROM import_staging s "
            "JOIN (SELECT email, MAX(row_number) AS last_row FROM import_staging GROUP BY email) l "
            "ON l.email = s.email AND l.last_row = s.row_number"))
    session.execute(text("CREATE UNIQUE INDEX import_last_email ON import_last (email)"))
    if _postgres():
        session.execute(text("ANALYZE import_last"))
    staged = session.execute(text("SELECT count(*) FROM import_staging")).scalar_one()
    kept = session.execute(text("SELECT count(*) FROM import_last")).scalar_one()
    return staged - kept


def _update_existing(mode: str, now: datetime, source: ChangeSource) -> int:
    """Existing contacts whose name or attributes differ from the file's; returns how many changed."""
    if _postgres():
        new = "contacts.attributes || l.attributes" if mode == "update" else "l.attributes"
        differs = f"(contacts.attributes IS DISTINCT FROM {new} OR (l.name <> '' AND l.name <> contacts.name))"
    else:
        new = "json_patch(contacts.attributes, l.attributes)" if mode == "update" else "json(l.attributes)"
        differs = f"(json(contacts.attributes) IS NOT {new} OR (l.name <> '' AND l.name <> contacts.name))"
    result = db.session.execute(_sql(
        f"UPDATE contacts SET attributes = {new}, "  # noqa: S608  (fixed fragments; values are bound)
        "name = CASE WHEN l.name <> '' THEN l.name ELSE contacts.name END, source = :source, updated_at = :now "
        f"FROM import_last l WHERE contacts.email = l.email AND {differs}"
    ), {"source": source.value, "now": now})
    return result.rowcount


def _insert_new_contacts(now: datetime, source: ChangeSource) -> None:
    db.session.execute(_sql(
        "INSERT INTO contacts (email, name, attributes, source, created_at, updated_at) "
        "SELECT l.email, l.name, l.attributes, :source, :now, :now FROM import_last l "
        "WHERE NOT EXISTS (SELECT 1 FROM contacts c WHERE c.email = l.email) ON CONFLICT (email) DO NOTHING"
    ), {"source": source.value, "now": now})


_NEW_MEMBERS = (
    "INSERT INTO list_memberships (list_id, contact_id, status, source, created_at, status_changed_at) "
    "SELECT :list_id, c.id, :status, :source, :now, :now FROM import_last l JOIN contacts c ON c.email = l.email "
    "WHERE true ON CONFLICT (list_id, contact_id) DO NOTHING RETURNING id"
)
_HISTORY_COLUMNS = "membership_changes (membership_id, from_status, to_status, source, actor_id, created_at)"


def _add_members(list_id: int, status: str, actor_id: int | None, now: datetime, source: ChangeSource) -> int:
    """SQLite: new members, then their first history rows in batches; returns how many joined."""
    values = {"list_id": list_id, "status": status, "source": source.value, "now": now,
              "actor_id": actor_id}
    ids = db.session.execute(_sql(_NEW_MEMBERS), values).scalars().all()
    history = _sql(f"INSERT INTO {_HISTORY_COLUMNS} VALUES (:id, NULL, :status, :source, :actor_id, :now)")
    for start in range(0, len(ids), SQLITE_BATCH):  # executemany, a batch at a time
        db.session.execute(history, [{**values, "id": i} for i in ids[start:start + SQLITE_BATCH]])
    return len(ids)


# PostgreSQL: new contacts, new members and their history in ONE statement. Its parts share one snapshot,
# so the new contacts' ids come from the first INSERT's RETURNING (not from a second join on email).
_MERGE_NEW_POSTGRES = (
    "WITH new_contacts AS (INSERT INTO contacts (email, name, attributes, source, created_at, updated_at) "
    "SELECT l.email, l.name, l.attributes, :source, :now, :now FROM import_last l "
    "WHERE NOT EXISTS (SELECT 1 FROM contacts c WHERE c.email = l.email) ON CONFLICT (email) DO NOTHING "
    "RETURNING id), "
    "joining AS (SELECT id FROM new_contacts UNION ALL "
    "SELECT c.id FROM import_last l JOIN contacts c ON c.email = l.email), "
    "new AS (INSERT INTO list_memberships (list_id, contact_id, status, source, created_at, status_changed_at) "
    "SELECT :list_id, id, :status, :source, :now, :now FROM joining "
    "ON CONFLICT (list_id, contact_id) DO NOTHING RETURNING id) "
    f"INSERT INTO {_HISTORY_COLUMNS} SELECT id, NULL, :status, :source, :actor_id, :now FROM new"
)


def _merge_new(list_id: int, status: str, actor_id: int | None, now: datetime, source: ChangeSource) -> int:
    """New addresses become contacts, contacts not on the list become members with their first history
    row; returns how many joined."""
    if not _postgres():
        _insert_new_contacts(now, source)
        return _add_members(list_id, status, actor_id, now, source)
    return db.session.execute(_sql(_MERGE_NEW_POSTGRES), {
        "list_id": list_id, "status": status, "source": source.value, "now": now,
        "actor_id": actor_id}).rowcount


def merge_staging(list_id: int | None, mode: str, status: str, actor_id: int | None, now: datetime,
                  source: ChangeSource = ChangeSource.IMPORT) -> MergeCounts:
    """Merge the staged rows into contacts and the list (see the module's docstring); without a list
    (an admin's API upsert) into contacts only."""
    duplicates = _last_rows()
    updated = _update_existing(mode, now, source) if mode in ("update", "replace") else 0
    if list_id is None:
        _insert_new_contacts(now, source)
        return MergeCounts(0, updated, duplicates)
    added = _merge_new(list_id, status, actor_id, now, source)
    list_counts.record(list_id, {status: added}, joined=added, day=now.date())
    return MergeCounts(added, updated, duplicates)
