"""Importing a CSV of contacts into a list, of any size, as an RQ job with its progress on the page.

`begin_import` (the web request) checks who may import into the list, stores the upload in the
database (`import_store`: the worker may run on another host),
checks the file's head (empty, binary, header-less, too many columns: each a message, nothing
queued) and enqueues the job. `run_import` (the job) infers each column's type, reads every row,
rejects the bad ones (by spreadsheet row, with why: invalid address, too long a value, suppressed),
stages the good ones and merges them in ONE transaction (`import_loading`): a failure leaves the
list as it was. Progress and the outcome are in the import's record (`import_progress`).

Documented rules (README "Audiences"): the suppression list wins — a suppressed address is rejected
with the reason "suppressed", whatever the status asked for; an address twice in one file: the
last row wins; a contact already on the list keeps its status; a second import changes nothing.
New members may be imported "unconfirmed": each gets the double opt-in mail (`send_confirmations`)
once the import has committed.
"""

from __future__ import annotations

import csv
import functools
import io
import tempfile
import time
from collections.abc import Iterable
from enum import StrEnum
from typing import IO

from flask_babel import gettext
from loguru import logger
from sqlalchemy import String, any_, bindparam, select
from sqlalchemy.dialects import postgresql

from mailadmin.extensions import db
from mailadmin.i18n import N_, stored_english
from mailadmin.models import ListMembership, User
from mailadmin.models.audience import ChangeSource, MembershipStatus
from mailadmin.models.suppression import Suppression
from mailadmin.models.types import utcnow
from mailadmin.queue.dispatch import enqueue_audience_import
from mailadmin.services.audiences import import_files, import_loading, import_store
from mailadmin.services.audiences.access import ListAccess, get_list_for
from mailadmin.services.audiences.bounds import BATCH_ROWS, ERRORS_SHOWN
from mailadmin.services.audiences.import_files import ContactRow, RejectedRow
from mailadmin.services.audiences.import_progress import (
    ImportRecord,
    ImportState,
    load_record,
    new_import_id,
    save_record,
)
from mailadmin.services.audiences.import_store import FileKind
from mailadmin.services.audiences.memberships import AudienceError
from mailadmin.services.audiences.subscriptions import send_confirmations
from mailadmin.services.errors import ErrorKind
from mailadmin.services.transaction import transaction

SUPPRESSED = "suppressed"

FAILED_UNEXPECTEDLY = N_("The import failed unexpectedly; nothing was imported.")


class ImportMode(StrEnum):
    """What an import does with a contact that already exists."""

    ADD = "add"  # add new contacts and members only; existing contacts stay as they are
    UPDATE = "update"  # also merge the file's attributes into existing contacts
    REPLACE = "replace"  # also replace existing contacts' attributes with the file's


NEW_MEMBER_STATUSES = (MembershipStatus.SUBSCRIBED, MembershipStatus.UNCONFIRMED)


def begin_import(user: User, list_id: int, upload: IO[bytes], filename: str, mode: str,
                 new_status: str) -> ImportRecord:
    """Check, save and queue an import into a list `user` may edit; AudienceError says what is wrong."""
    get_list_for(user, list_id, ListAccess.EDIT)
    if mode not in ImportMode.__members__.values():
        raise AudienceError(gettext("Choose what to do with existing contacts: add new only, update or replace."))
    if new_status not in NEW_MEMBER_STATUSES:
        raise AudienceError(gettext("New members are subscribed or unconfirmed."))
    record = ImportRecord(new_import_id(), list_id, user.id, (filename or "upload.csv")[:200], mode, new_status)
    import_store.purge_expired()
    import_store.store(record.id, FileKind.UPLOAD, upload)
    try:
        layout = import_files.inspect_file(_upload_of(record.id))
    except AudienceError:
        import_store.discard(record.id, FileKind.UPLOAD)
        raise
    record.columns = dict.fromkeys(layout.attributes.values(), "")
    save_record(record)
    enqueue_audience_import(record.id)
    return record


def _upload_of(import_id: str) -> import_files.Opener:
    return functools.partial(import_store.open_binary, import_id, FileKind.UPLOAD)


def import_for(user: User, import_id: str) -> ImportRecord:
    """An import `user` started (an admin: any), on a list they may still edit; else "not found"."""
    record = load_record(import_id or "")
    if record is None or not (user.is_admin or record.user_id == user.id):
        raise AudienceError(gettext("No such import (imports are kept for 7 days)."), ErrorKind.NOT_FOUND)
    get_list_for(user, record.list_id, ListAccess.EDIT)
    return record


def run_import(import_id: str) -> ImportRecord:
    """The job: read, check and merge the whole file; the record says how it went."""
    record = load_record(import_id)
    if record is None:
        raise AudienceError(f"Import {import_id} is unknown or expired.", ErrorKind.NOT_FOUND)
    if record.finished:
        return record  # a redelivered job: the import ran already
    try:
        _run(record)
    except AudienceError as exc:  # the file itself is wrong: a message on the page, nothing stored
        record.state, record.message = ImportState.FAILED, getattr(exc, "stored", None) or exc.message
        import_store.discard(record.id, FileKind.UPLOAD)
    except Exception:
        record.state, record.message = ImportState.FAILED, FAILED_UNEXPECTEDLY
        save_record(record)
        raise  # RQ records the failure with its traceback; the upload stays for a look until purged
    save_record(record)
    logger.bind(import_id=record.id, list_id=record.list_id, state=record.state, added=record.added,
                updated=record.updated, rejected=record.rejected).info("Audience import finished")
    return record


def _run(record: ImportRecord) -> None:
    upload = _upload_of(record.id)
    if not import_store.exists(record.id, FileKind.UPLOAD):
        raise AudienceError(gettext("The uploaded file is gone; upload it again."))
    layout = import_files.inspect_file(upload)
    record.state = ImportState.READING
    save_record(record)
    started = time.monotonic()
    types, record.rows_total = import_files.infer_column_types(upload, layout)
    record.seconds["types"] = round(time.monotonic() - started, 1)
    record.columns = {key: kind.value for key, kind in types.items()}
    record.state = ImportState.LOADING
    save_record(record)
    # The rejected rows go to a scratch file of this job's, then into the database with the merge.
    with tempfile.TemporaryFile() as scratch, io.TextIOWrapper(scratch, "utf-8", newline="") as rejected_file:
        rejected = csv.writer(rejected_file)
        rejected.writerow(["row", "reason", *layout.header])
        with transaction():
            import_loading.create_staging()
            started = time.monotonic()
            for batch in _batches(import_files.contact_rows(upload, layout, types)):
                _stage_batch(record, batch, rejected)
            record.seconds["rows"] = round(time.monotonic() - started, 1)
            started = time.monotonic()
            merged_at = utcnow()
            counts = import_loading.merge_staging(record.list_id, record.mode, record.new_status,
                                                  record.user_id, merged_at)
            if record.new_status == MembershipStatus.UNCONFIRMED:
                _confirm_new_members(record.list_id, merged_at)
            record.seconds["merge"] = round(time.monotonic() - started, 1)
            rejected_file.flush()
            scratch.seek(0)
            import_store.store(record.id, FileKind.REJECTED, scratch)  # downloadable for IMPORT_TTL
            import_store.discard(record.id, FileKind.UPLOAD)  # done with, in the same transaction
    record.added, record.updated, record.duplicates = counts.added, counts.updated, counts.duplicates
    record.state = ImportState.DONE


def _confirm_new_members(list_id: int, merged_at) -> None:
    """The members this import added unconfirmed get the double opt-in mail once the import commits."""
    joined = db.session.scalars(select(ListMembership.contact_id).where(
        ListMembership.list_id == list_id, ListMembership.status == MembershipStatus.UNCONFIRMED,
        ListMembership.source == ChangeSource.IMPORT, ListMembership.created_at == merged_at)).all()
    send_confirmations(list_id, joined)


def _batches(rows: Iterable[ContactRow | RejectedRow]) -> Iterable[list[ContactRow | RejectedRow]]:
    batch: list[ContactRow | RejectedRow] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= BATCH_ROWS:
            yield batch
            batch = []
    if batch:
        yield batch


def _suppressed(emails: set[str]) -> set[str]:
    """Which of `emails` are on the suppression list. On PostgreSQL the batch is ONE array parameter
    (`= ANY(:emails)`): 5,000 separate parameters cost the driver 0.1 s a batch just to parse."""
    if db.engine.dialect.name == "postgresql":
        emails_param = bindparam("emails", list(emails), type_=postgresql.ARRAY(String))
        return set(db.session.scalars(select(Suppression.email).where(Suppression.email == any_(emails_param))))
    return set(db.session.scalars(select(Suppression.email).where(Suppression.email.in_(emails))))


def _stage_batch(record: ImportRecord, batch: list[ContactRow | RejectedRow], rejected) -> None:
    """Reject the batch's bad and suppressed rows, stage the rest, save the progress."""
    good = [row for row in batch if isinstance(row, ContactRow)]
    suppressed = _suppressed({row.email for row in good}) if good else set()
    staged = []
    for row in batch:
        if isinstance(row, ContactRow) and row.email in suppressed:
            row = RejectedRow(row.row, SUPPRESSED, row.cells, row.email)
        if isinstance(row, RejectedRow):
            _reject(record, row, rejected)
        else:
            staged.append(row)
    import_loading.stage_rows(staged)
    record.rows_read += len(batch)
    save_record(record)


def _reject(record: ImportRecord, row: RejectedRow, rejected) -> None:
    record.rejected += 1
    # The rejected-rows file keeps each cell whole but bounded (a 100 kB value is cut, not copied).
    rejected.writerow([row.row, stored_english(row.reason), *(cell[:import_files.VALUE_MAX] for cell in row.cells)])
    if len(record.errors) < ERRORS_SHOWN:
        record.errors.append([row.row, row.email[:120], row.reason])
