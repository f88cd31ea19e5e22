"""Importing recipients into a draft campaign from a CSV upload or pasted lines.

The input is `email[,name,more columns...]`, with a header row or not, comma,
semicolon or tab separated (Excel in many locales writes semicolons), UTF-8 with or
without a BOM, UTF-16 with a BOM (Excel's "Unicode text"; a Windows-1252 file is read too). Rows are numbered like a
spreadsheet shows them (the header, when there is one, is row 1), so that every
invalid row can be reported as "Row 7: ...".

Addresses are checked for syntax only (email-validator, no DNS at import), folded to
lower case so that `Jane@Example.com` and `jane@example.com` are one recipient, and
de-duplicated within the file and against the campaign's earlier imports. Addresses
on the suppression list are stored as `skipped` (so the results show why they got
nothing) and counted. All rows go in with one bulk INSERT and the campaign's
counters are bumped in the same commit; the size cap applies at start, not here.
Reading the upload itself (encoding, delimiter, header, columns) is `services.csv_upload`.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import IO, Any

from email_validator import EmailNotValidError, validate_email
from flask_babel import gettext, lazy_gettext
from loguru import logger
from sqlalchemy import case, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from mailadmin import i18n
from mailadmin.extensions import db
from mailadmin.mail.message import InvalidAddressError, normalize_address
from mailadmin.models import Campaign, Recipient
from mailadmin.models.campaign import DRAFT, R_PENDING, R_SKIPPED
from mailadmin.models.types import utcnow
from mailadmin.services.csv_upload import (
    Columns,
    cell_value,
    columns_from_header,
    looks_like_header,
    read_upload,
    sniff_delimiter,
)
from mailadmin.services.errors import ErrorKind, ServiceError
from mailadmin.services.suppressions import erased_among, suppressed_among
from mailadmin.services.transaction import transaction

NAME_MAX = 200
EMAIL_MAX = 320
FIELD_VALUE_MAX = 500

NOT_A_DRAFT_MESSAGE = lazy_gettext("Recipients can only be imported into a draft campaign.")
NOT_A_DRAFT_CHANGE_MESSAGE = lazy_gettext(
    "Recipients can only be removed from a draft campaign. This campaign has already been started.")
EMPTY_MESSAGE = lazy_gettext("Nothing to import: the file or the text box is empty.")


class RecipientImportError(ServiceError):
    """The import (or a correction of a draft's recipients) was refused as a whole; `.message` says why.
    Nothing was stored."""


@dataclass
class ImportSummary:
    """What an import did: counts, and each invalid row with its number and reason."""

    added: int = 0
    duplicates: int = 0
    invalid: list[tuple[int, str]] = field(default_factory=list)
    suppressed: int = 0
    header: list[str] | None = None
    delimiter: str = ","
    batch: int | None = None  # the import's number in its campaign (what "undo the last import" removes)

    @property
    def invalid_count(self) -> int:
        return len(self.invalid)

    @property
    def text(self) -> str:
        """"9,812 added · 1 duplicate · 41 invalid · 27 suppressed"."""
        return " · ".join((
            gettext("%(count)s added", count=i18n.number(self.added)),
            i18n.count_of(self.duplicates, "%(num)s duplicate", "%(num)s duplicates"),
            gettext("%(count)s invalid", count=i18n.number(self.invalid_count)),
            gettext("%(count)s suppressed", count=i18n.number(self.suppressed)),
        ))

    def add(self, other: ImportSummary, label: str) -> None:
        """Fold a second import of the same request (a file and pasted lines) into this summary."""
        self.added += other.added
        self.duplicates += other.duplicates
        self.suppressed += other.suppressed
        self.invalid += [(row, f"({label}) {reason}") for row, reason in other.invalid]


def too_long_cell_message(row_number: int) -> str:
    return gettext("Row %(row)s: a cell is longer than %(max)s characters. Nothing was imported; shorten it or remove the row.",
                   row=row_number, max=i18n.number(csv.field_size_limit()))


def parse_rows(text: str) -> tuple[list[tuple[int, list[str]]], list[str] | None, str]:
    """(row number, cells) of every non-blank data row, the header (or None) and the delimiter.

    Raises RecipientImportError naming the row when a cell (or a line without separators) is longer
    than the csv module's field size limit.
    """
    delimiter = sniff_delimiter(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=False)
    rows: list[tuple[int, list[str]]] = []
    header: list[str] | None = None
    first = True
    number = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            if "field limit" in str(exc):
                raise RecipientImportError(too_long_cell_message(number + 1)) from None
            raise RecipientImportError(gettext("Row %(row)s: this row cannot be read as CSV (%(problem)s).", row=number + 1, problem=exc)) from None
        number += 1
        if not row or not any(cell.strip() for cell in row):
            continue
        if first:
            first = False
            if looks_like_header(row):
                header = [cell.strip() for cell in row]
                continue
        rows.append((number, row))
    return rows, header, delimiter


def _rows_of(source: str | bytes | IO[Any]) -> tuple[list[tuple[int, list[str]]], list[str] | None, str]:
    """The upload's non-empty rows (numbered), its header if it has one, and its delimiter."""
    try:
        text = read_upload(source)
    except (OSError, ValueError):
        raise RecipientImportError(gettext("The file could not be read. Upload a CSV text file.")) from None
    if "\x00" in text:
        raise RecipientImportError(gettext("This does not look like a CSV text file (it contains binary data)."))
    rows, header, delimiter = parse_rows(text)
    if not rows:
        raise RecipientImportError(EMPTY_MESSAGE)
    return rows, header, delimiter


def _valid_email(row: list[str], columns: Columns, number: int, summary: ImportSummary) -> str | None:
    """The row's normalised address, or None after noting why the row is invalid."""
    raw_email = cell_value(row, columns.email)
    if not raw_email:
        summary.invalid.append((number, gettext("No email address in this row.")))
        return None
    if len(raw_email) > EMAIL_MAX:
        summary.invalid.append((number, gettext("The email address is longer than %(max)s characters.", max=EMAIL_MAX)))
        return None
    try:
        email = validate_email(raw_email, check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        summary.invalid.append((number, f"{raw_email[:80]}: {exc}"))
        return None
    refusal = send_path_refusal(email)
    if refusal:
        summary.invalid.append((number, f"{raw_email[:80]}: {refusal}"))
        return None
    return email


def send_path_refusal(email: str) -> str | None:
    """Why the send path would refuse this (syntactically valid) address, or None.

    The check is the send path's own (`normalize_address`): an address that passes import is one
    a message can be built for. Non-ASCII before the @ needs SMTPUTF8, which mailadmin does not
    use, so such an address is refused here rather than skipped at send time.
    """
    try:
        normalize_address(email)
    except InvalidAddressError as exc:
        if not email.rpartition("@")[0].isascii():
            return gettext("non-ASCII characters before the @ cannot be sent (SMTPUTF8 is not supported).")
        return gettext("this address cannot be sent to (%(problem)s).", problem=exc)
    return None


def _accepted_rows(
    campaign: Campaign, rows: list[tuple[int, list[str]]], header: list[str] | None, summary: ImportSummary
) -> dict[str, dict[str, Any]]:
    """Valid, new addresses (folded, not yet in the campaign) with their name and extra fields."""
    columns = columns_from_header(header) if header else Columns()
    existing = set(db.session.scalars(select(Recipient.email).where(Recipient.campaign_id == campaign.id)))
    accepted: dict[str, dict[str, Any]] = {}
    for number, row in rows:
        email = _valid_email(row, columns, number, summary)
        if email is None:
            continue
        if email in accepted or email in existing:
            summary.duplicates += 1
            continue
        name = cell_value(row, columns.name)[:NAME_MAX] or None
        if header:
            extra = {key: cell_value(row, i)[:FIELD_VALUE_MAX] for i, key in columns.extra.items()}
        else:
            extra = {f"column_{i + 1}": cell.strip()[:FIELD_VALUE_MAX] for i, cell in enumerate(row) if i > 1}
        accepted[email] = {"name": name, "fields": extra or None}
    return accepted


def _recipient_rows(
    campaign: Campaign, accepted: dict[str, dict[str, Any]], suppressed: set[str], now, batch: int
) -> list[dict]:
    """INSERT values: suppressed addresses arrive `skipped` with the reason, the others `pending`."""
    return [
        {
            "campaign_id": campaign.id,
            "email": email,
            "name": data["name"],
            "fields": data["fields"],
            "status": R_SKIPPED if email in suppressed else R_PENDING,
            "last_error": "Suppressed: the address is on the suppression list." if email in suppressed else None,
            "attempts": 0,
            "updated_at": now,
            "import_batch": batch,
        }
        for email, data in accepted.items()
    ]


def _insert_recipients(campaign: Campaign, values: list[dict], suppressed: int, now) -> None:
    """Insert the rows and grow the counters, while the campaign is still a draft; commits once."""
    try:
        with transaction():
            # Lock the campaign row (PostgreSQL) and look again: a start racing the import waits
            # for it, or the import sees that the campaign has just been started.
            status = db.session.scalar(select(Campaign.status).where(Campaign.id == campaign.id).with_for_update())
            if status != DRAFT:
                raise RecipientImportError(NOT_A_DRAFT_MESSAGE, ErrorKind.CONFLICT)
            if values:
                _insert_rows(campaign, values, suppressed, now)
    except IntegrityError:
        raise RecipientImportError(
            gettext("Another import into this campaign ran at the same time. Nothing was added; please import again.")
        ) from None


def _insert_rows(campaign: Campaign, values: list[dict], suppressed: int, now) -> None:
    # After the lock: concurrent imports into one draft number their rows one after the other.
    last = db.session.scalar(select(func.max(Recipient.position)).where(Recipient.campaign_id == campaign.id))
    for place, row in enumerate(values, start=(last or 0) + 1):
        row["position"] = place
    db.session.execute(insert(Recipient), values)
    db.session.execute(
        update(Campaign)
        .where(Campaign.id == campaign.id)
        .values(
            recipients_total=Campaign.recipients_total + len(values),
            skipped_count=Campaign.skipped_count + suppressed,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )


def _keep_erased_people_erased(
    campaign: Campaign, accepted: dict[str, dict[str, Any]], suppressed: set[str], summary: ImportSummary
) -> None:
    """An erased person's address is stored as its erasure marker (skipped), never in clear again."""
    erased = erased_among([email for email in accepted if email in suppressed])
    if not erased:
        return
    present = set(db.session.scalars(select(Recipient.email).where(
        Recipient.campaign_id == campaign.id, Recipient.email.in_(list(erased.values())))))
    for email, marker in erased.items():
        data = accepted.pop(email)
        suppressed.discard(email)
        if marker in present or marker in accepted:
            summary.duplicates += 1
            continue
        data.update(name=None, fields=None)
        accepted[marker] = data
        suppressed.add(marker)


def next_import_batch(campaign: Campaign) -> int:
    """The number the next import into `campaign` is recorded under."""
    last = db.session.scalar(select(func.max(Recipient.import_batch)).where(Recipient.campaign_id == campaign.id))
    return (last or 0) + 1


def import_recipients(campaign: Campaign, source: str | bytes | IO[Any], batch: int | None = None) -> ImportSummary:
    """Validate, fold, check against the suppression list and bulk-insert; commits once.

    Every recipient added is recorded under import `batch` (the next number when None), so a
    file and pasted lines sent together are one import to undo.
    """
    if campaign.status != DRAFT:
        raise RecipientImportError(NOT_A_DRAFT_MESSAGE, ErrorKind.CONFLICT)
    rows, header, delimiter = _rows_of(source)
    summary = ImportSummary(header=header, delimiter=delimiter, batch=batch or next_import_batch(campaign))
    accepted = _accepted_rows(campaign, rows, header, summary)
    suppressed = suppressed_among(list(accepted)) if accepted else set()
    _keep_erased_people_erased(campaign, accepted, suppressed, summary)
    now = utcnow()
    values = _recipient_rows(campaign, accepted, suppressed, now, summary.batch)
    summary.suppressed = len(suppressed)
    summary.added = len(values) - summary.suppressed
    _insert_recipients(campaign, values, summary.suppressed, now)
    db.session.refresh(campaign)
    logger.bind(
        campaign_id=campaign.id,
        added=summary.added,
        duplicates=summary.duplicates,
        invalid=summary.invalid_count,
        suppressed=summary.suppressed,
    ).info("Recipients imported")
    return summary


# --- correcting a draft's recipients ---------------------------------------------------------


def _lock_draft(campaign: Campaign) -> None:
    """Lock the campaign row (PostgreSQL) and check it is still a draft: a start racing a removal waits."""
    status = db.session.scalar(select(Campaign.status).where(Campaign.id == campaign.id).with_for_update())
    if status != DRAFT:
        raise RecipientImportError(NOT_A_DRAFT_CHANGE_MESSAGE, ErrorKind.CONFLICT)


def _remove(campaign: Campaign, *conditions) -> int:
    """Delete the draft's recipients matching `conditions`, keep its counters true, commit once."""
    with transaction():
        _lock_draft(campaign)
        where = (Recipient.campaign_id == campaign.id, *conditions)
        total, skipped = db.session.execute(
            select(func.count(), func.coalesce(func.sum(case((Recipient.status == R_SKIPPED, 1), else_=0)), 0)).where(*where)
        ).one()
        if total:
            db.session.execute(delete(Recipient).where(*where).execution_options(synchronize_session=False))
            renumber_positions(campaign.id)
            db.session.execute(
                update(Campaign)
                .where(Campaign.id == campaign.id)
                .values(
                    recipients_total=Campaign.recipients_total - total,
                    skipped_count=Campaign.skipped_count - int(skipped),
                    updated_at=utcnow(),
                )
                .execution_options(synchronize_session=False)
            )
    db.session.refresh(campaign)
    logger.bind(campaign_id=campaign.id, removed=int(total)).info("Recipients removed")
    return int(total)


def renumber_positions(campaign_id: int) -> None:
    """Close the gaps a removal left in a draft's positions (1, 2, 3, ... in their old order); in the caller's
    transaction. Only rows whose place changes are written."""
    numbered = (
        select(
            Recipient.id.label("id"),
            func.row_number().over(order_by=(Recipient.position, Recipient.id)).label("place"),
        )
        .where(Recipient.campaign_id == campaign_id)
        .subquery()
    )
    db.session.execute(
        update(Recipient)
        .where(Recipient.id == numbered.c.id, Recipient.position.is_distinct_from(numbered.c.place))
        .values(position=numbered.c.place)
        .execution_options(synchronize_session=False)
    )


def remove_recipient(campaign: Campaign, recipient_id: int) -> int:
    """Remove one recipient from a draft; returns 1, or 0 when it is not in this campaign."""
    return _remove(campaign, Recipient.id == recipient_id)


def remove_all_recipients(campaign: Campaign) -> int:
    """Remove every recipient of a draft; returns how many."""
    return _remove(campaign)


def last_import_batch(campaign: Campaign) -> tuple[int, int] | None:
    """(batch number, recipients still in it) of the draft's last import, or None."""
    batch = db.session.scalar(select(func.max(Recipient.import_batch)).where(Recipient.campaign_id == campaign.id))
    if batch is None:
        return None
    count = db.session.scalar(
        select(func.count()).where(Recipient.campaign_id == campaign.id, Recipient.import_batch == batch)
    )
    return batch, int(count or 0)


def undo_last_import(campaign: Campaign) -> int:
    """Remove the recipients the draft's last import added; returns how many (0: nothing to undo)."""
    last = last_import_batch(campaign)
    if last is None:
        return 0
    return _remove(campaign, Recipient.import_batch == last[0])
