"""The suppression list: addresses that never get mail again (unsubscribed, bounced, complained, manual).

Addresses are compared lower-cased. `suppress()` is idempotent and safe under concurrency
(INSERT ... ON CONFLICT DO NOTHING): the unsubscribe endpoint, webhooks and several send workers
may add the same address at the same moment. An erased person's address is stored only as its
erasure marker (`erased:<salted hash>`), and every check below matches that marker too.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from email_validator import EmailNotValidError, validate_email
from flask_babel import gettext
from loguru import logger
from sqlalchemy import bindparam, func, select, union_all
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from mailadmin.extensions import db, get_settings
from mailadmin.models import Suppression, User
from mailadmin.models.suppression import REASON_UNSUBSCRIBED, SUPPRESSION_REASONS, SUPPRESSION_SOURCES
from mailadmin.models.types import utcnow
from mailadmin.pii import ERASED_PREFIX, erasure_hash, erasure_marker, get_pii_log_fields, mask_email
from mailadmin.services.audit import record_audit
from mailadmin.services.batches import read_in_batches
from mailadmin.services.errors import ErrorKind, ServiceError
from mailadmin.services.events.payloads import EventType, record_contact_event
from mailadmin.services.transaction import after_commit, in_transaction, transaction

# IN lists are chunked so that a 10,000-address import never builds one giant statement.
_CHUNK = 500
PAGE_SIZE = 50


class SuppressionError(ServiceError):
    """A suppression-list action that cannot be carried out; `.message` is shown as is."""


def normalise_suppressed_email(email: str) -> str:
    """The form an address is stored and compared in: stripped and lower-cased."""
    return email.strip().lower()


def _marker(address: str) -> str:
    return erasure_marker(address, get_settings().log_hash_salt)


@in_transaction
def suppress(
    email: str,
    reason: str,
    campaign_id: int | None = None,
    *,
    source: str | None = None,
    note: str | None = None,
) -> bool:
    """Put `email` on the suppression list; True when it was not there yet (in clear or erased).

    Inside a caller's transaction it joins it (the send loop records a hard bounce in the same
    transaction as the recipient's outcome).
    """
    if reason not in SUPPRESSION_REASONS:
        raise ValueError(f"unknown suppression reason {reason!r}")
    if source is not None and source not in SUPPRESSION_SOURCES:
        raise ValueError(f"unknown suppression source {source!r}")
    address = normalise_suppressed_email(email)
    added = False
    if not _erased(address):
        table = Suppression.__table__
        insert = pg_insert if db.session.get_bind().dialect.name == "postgresql" else sqlite_insert
        statement = (
            insert(table)
            .values(email=address, reason=reason, source=source, note=note, campaign_id=campaign_id,
                    created_at=utcnow())
            .on_conflict_do_nothing(index_elements=["email"])
            .returning(table.c.id)
        )
        added = db.session.execute(statement).first() is not None
    if added and reason == REASON_UNSUBSCRIBED:
        record_contact_event(EventType.CONTACT_UNSUBSCRIBED, email=address, campaign_id=campaign_id, source=source)
    if added:
        after_commit(lambda: logger.bind(reason=reason, source=source, campaign_id=campaign_id,
                                         **get_pii_log_fields(address, "INFO")).info("Address suppressed"))
    return added


def _erased(address: str) -> bool:
    marker = _marker(address)
    return db.session.scalar(select(Suppression.id).where(Suppression.email == marker).limit(1)) is not None


def is_suppressed(email: str) -> bool:
    """Is this address on the suppression list (in clear, or by hash after an erasure)?"""
    address = normalise_suppressed_email(email)
    wanted = (address, _marker(address))
    return db.session.scalar(select(Suppression.id).where(Suppression.email.in_(wanted)).limit(1)) is not None


_suppressions = Suppression.__table__
_STORED_AMONG = select(_suppressions.c.email).where(_suppressions.c.email.in_(bindparam("emails", expanding=True)))
# The same, plus at most one stored erasure marker: was anybody on the list ever erased? (Built once:
# the send loop asks this for every claim batch.)
_STORED_AMONG_AND_ANY_MARKER = union_all(
    _STORED_AMONG,
    select(
        select(_suppressions.c.email)
        .where(_suppressions.c.email.startswith(ERASED_PREFIX, autoescape=True))
        .limit(1)
        .subquery()
        .c.email
    ),
)


def suppressed_among(emails: Iterable[str]) -> set[str]:
    """The lower-cased addresses among `emails` that are on the suppression list.

    One query per 500 addresses; the first also asks whether anybody was ever erased (most lists:
    nobody), and only then are the addresses' markers computed and looked up.
    """
    wanted = sorted({normalise_suppressed_email(email) for email in emails if email})
    stored: set[str] = set()
    for start in range(0, len(wanted), _CHUNK):
        query = _STORED_AMONG_AND_ANY_MARKER if start == 0 else _STORED_AMONG
        stored.update(db.session.scalars(query, {"emails": wanted[start : start + _CHUNK]}))
    found = {address for address in wanted if address in stored}
    if any(email.startswith(ERASED_PREFIX) for email in stored):
        found.update(erased_among(wanted))
    return found


def erased_among(emails: Iterable[str]) -> dict[str, str]:
    """{address: its erasure marker} for the addresses among `emails` whose person was erased."""
    wanted = {_marker(normalise_suppressed_email(email)): normalise_suppressed_email(email) for email in emails if email}
    markers = list(wanted)
    found: dict[str, str] = {}
    for start in range(0, len(markers), _CHUNK):
        chunk = markers[start : start + _CHUNK]
        found.update({wanted[m]: m for m in db.session.scalars(select(Suppression.email).where(Suppression.email.in_(chunk)))})
    return found


# --- the admins' suppression page ---------------------------------------------------------


@dataclass(frozen=True)
class SuppressionFilter:
    """The search of the suppression page; empty fields do not filter."""

    query: str = ""  # part of an address, or "@domain"
    reason: str = ""
    source: str = ""
    since: datetime | None = None
    until: datetime | None = None


def suppression_query(search: SuppressionFilter):
    """SELECT of the entries matching `search` (unordered)."""
    return _filtered(search)


def _filtered(search: SuppressionFilter):
    statement = select(Suppression)
    if search.query.strip():
        statement = statement.where(Suppression.email.contains(search.query.strip().lower(), autoescape=True))
    if search.reason:
        statement = statement.where(Suppression.reason == search.reason)
    if search.source:
        statement = statement.where(Suppression.source == search.source)
    if search.since is not None:
        statement = statement.where(Suppression.created_at >= search.since)
    if search.until is not None:
        statement = statement.where(Suppression.created_at < search.until)
    return statement


def search_suppressions(search: SuppressionFilter, page: int = 1) -> tuple[list[Suppression], int]:
    """One page of matching entries, newest first, and the number of matches."""
    statement = _filtered(search)
    total = db.session.scalar(select(func.count()).select_from(statement.subquery())) or 0
    rows = db.session.scalars(
        statement.order_by(Suppression.created_at.desc(), Suppression.id.desc())
        .limit(PAGE_SIZE)
        .offset(max(0, page - 1) * PAGE_SIZE)
    ).all()
    return list(rows), total


def _address_log_fields(address: str) -> dict:
    """What the audit log keeps of an address: masked, and its short hash (never in clear)."""
    return {"email_masked": mask_email(address), "email_hash": erasure_hash(address, get_settings().log_hash_salt)[:16]}


def remove_suppression(suppression_id: int, why: str, actor: User) -> Suppression:
    """Remove one entry; the reason and the masked address go to the audit log. Commits."""
    why = why.strip()
    if not why:
        raise SuppressionError(gettext("Say why the address may receive mail again."))
    row = db.session.get(Suppression, suppression_id)
    if row is None:
        raise SuppressionError(gettext("This entry is no longer on the suppression list."), ErrorKind.NOT_FOUND)
    details = {"why": why[:200], "reason": row.reason, "source": row.source}
    if "@" in row.email:
        details.update(_address_log_fields(row.email))
    with transaction():
        db.session.delete(row)
        record_audit(actor, "suppression_removed", details=details)
    logger.bind(actor=actor.id, reason=row.reason).info("Suppression removed")
    return row


# --- adding many, CSV import and export ----------------------------------------------------

CSV_COLUMNS = ("email", "reason", "source", "note", "campaign_id", "created_at")


@dataclass
class AddressList:
    """Addresses read from pasted lines or a CSV, with a row-numbered reason for each refused row."""

    addresses: list[tuple[str, str]]  # (address, reason)
    refused: list[str]


def read_address_rows(text: str, default_reason: str) -> AddressList:
    """`email[,reason,...]` per row; a header row is skipped; bad rows are refused with their number."""
    result = AddressList([], [])
    for number, row in enumerate(csv.reader(io.StringIO(text, newline="")), start=1):
        cells = [cell.strip() for cell in row]
        if not cells or not cells[0]:
            continue
        if number == 1 and "@" not in cells[0]:
            continue  # a header row
        reason = cells[1] if len(cells) > 1 and cells[1] in SUPPRESSION_REASONS else default_reason
        try:
            address = validate_email(cells[0], check_deliverability=False).normalized.lower()
        except EmailNotValidError:
            result.refused.append(f"Row {number}: not a valid address.")
            continue
        result.addresses.append((address, reason))
    return result


@in_transaction
def add_address_rows(rows: AddressList, note: str, actor: User, *, source: str) -> tuple[int, int]:
    """Suppress every address read by `read_address_rows` (each with its reason); commits once."""
    added = already = 0
    for address, reason in rows.addresses:
        if suppress(address, reason, source=source, note=note[:200] or None):
            added += 1
        else:
            already += 1
    record_audit(actor, "suppressions_imported" if source == "import" else "suppressions_added",
                 details={"added": added, "already": already, "refused": len(rows.refused), "source": source,
                          "note": note[:200]})
    return added, already


def csv_cell(value: object) -> object:
    """A CSV cell a spreadsheet will not run as a formula."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


_EXPORTED = (Suppression.email, Suppression.reason, Suppression.source, Suppression.note, Suppression.campaign_id,
             Suppression.created_at, Suppression.id)


def export_rows(search: SuppressionFilter) -> Iterator[list[object]]:
    """The CSV export's header and every matching entry, oldest first (erased entries keep their marker).

    Read in batches, each in its own short transaction: call it in the request, iterate it while
    the download streams (it needs no request context then).
    """
    rows = read_in_batches(_filtered(search).with_only_columns(*_EXPORTED), Suppression.id)
    header = [list(CSV_COLUMNS)]
    return itertools.chain(header, (
        [csv_cell(row.email), row.reason, row.source or "", csv_cell(row.note or ""), row.campaign_id or "",
         row.created_at.isoformat()]
        for row in rows
    ))
