"""Reading a contacts CSV for an import into a list, streamed from wherever it is kept: every reader
takes an `Opener`, a callable that opens the file as a binary stream (`import_store.open_binary`).

The file is checked before anything is queued (`inspect_file`: empty, binary, header-less, too many
columns, no address column: each a message), then read twice by the job: once to infer each
column's type (`infer_column_types`: number, date, boolean, else text) and count the rows, once to
turn each row into a contact (`contact_rows`) or a rejection naming its spreadsheet row.

Rules (README "Audiences"): the first row names the columns; the address column is the one named
email (or like it), the name column one named name; every other named column is an attribute,
stored typed in the contact's JSON (a date as its ISO text, which sorts as the date). An empty cell
sets nothing. A row with more cells than the header, or an attribute value over VALUE_MAX
characters, is rejected with its row number; an address twice in one file: the last row wins.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import IO, TextIO

from flask_babel import gettext

from mailadmin.i18n import N_, stored_form
from mailadmin.i18n import number as local_number
from mailadmin.mail.templates import merge_field_name
from mailadmin.services.audiences.bounds import CELL_LIMIT, HEAD_BYTES, MAX_COLUMNS, NAME_MAX, VALUE_MAX
from mailadmin.services.audiences.memberships import AudienceError, normalise_contact_email
from mailadmin.services.csv_upload import EMAIL_COLUMN_NAMES, columns_from_header, looks_like_header, sniff_delimiter

_LOCAL_PART = re.compile(r"^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_NUMBER = re.compile(r"^-?(?:0|[1-9]\d{0,17})(?:\.\d+)?$")  # no leading zeros: "01234" is a code, not a number
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_BOOLEANS = {"true": True, "false": False, "yes": True, "no": False}

# A row's refusals that carry values: stored as `stored_form`s, shown in the viewer's language on the
# result page, written in English in the rejected-rows file (i18n.stored_english).
WRONG_WIDTH = N_("it has %(cells)s cells; the header names %(columns)s columns")
NAME_TOO_LONG = N_("the name is %(length)s characters long (at most %(most)s)")
VALUE_TOO_LONG = N_("the value of %(key)s is %(length)s characters long (at most %(most)s)")
# What is wrong with the file as a whole: said on the upload page, or stored by the import job.
UNREADABLE_FIRST_ROW = N_("Row 1 cannot be read as CSV: %(problem)s.")
TOO_MANY_COLUMNS = N_("The file has %(columns)s columns; at most %(most)s can be imported (an address, a name and attributes).")
NO_HEADER = N_("The first row must name the columns (for example: email,name,plan); this one looks like data: %(row)s")
UNREADABLE_ROW = N_("Row %(row)s cannot be read as CSV (%(problem)s); nothing was imported.")


def file_refusal(msgid: str, **params: str | int) -> AudienceError:
    """A refusal of the whole file: its `.message` in this request's language (the upload page), its
    `.stored` as the import job keeps it (`stored_form`: shown later in the viewer's language)."""
    error = AudienceError(gettext(msgid, **{key: local_number(value) if isinstance(value, int) else value
                                            for key, value in params.items()}))
    error.stored = stored_form(msgid, **params)
    return error

Opener = Callable[[], IO[bytes]]  # opens the file afresh, from its start


class ColumnType(StrEnum):
    """The type of an attribute column, inferred from every value in it."""

    NUMBER = "number"
    DATE = "date"
    BOOLEAN = "boolean"
    TEXT = "text"


@dataclass(frozen=True)
class FileLayout:
    """How the file is read: its encoding, delimiter, and which column holds what."""

    encoding: str
    delimiter: str
    header: list[str]
    email: int
    name: int | None
    attributes: dict[int, str]  # column index -> attribute key


@dataclass(slots=True)  # not frozen: a million of them are made, and a frozen __init__ costs twice as much
class ContactRow:
    """One good row: the spreadsheet row, the normalised address, the name ("" = none), typed attributes."""

    row: int
    email: str
    name: str
    attributes: dict
    cells: list[str] = field(default_factory=list, repr=False)


@dataclass(frozen=True)
class RejectedRow:
    """One refused row: its spreadsheet row, why, and its cells as read."""

    row: int
    reason: str  # plain English or an i18n.stored_form
    cells: list[str]
    email: str = ""  # the address cell as given


def detect_encoding(head: bytes) -> str:
    """The encoding to read the file with: a BOM's, else UTF-8 when the head is UTF-8, else Windows-1252."""
    for bom, encoding in ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
                          (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"),
                          (codecs.BOM_UTF8, "utf-8-sig")):
        if head.startswith(bom):
            return encoding
    try:
        head.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError as exc:
        if exc.start >= len(head) - 3:  # a character cut by the end of the head
            return "utf-8"
    return "cp1252"


def open_text(opener: Opener, encoding: str) -> TextIO:
    """The file as text; undecodable bytes become U+FFFD rather than stopping the import."""
    return io.TextIOWrapper(opener(), encoding=encoding, errors="replace", newline="")


def inspect_file(opener: Opener) -> FileLayout:
    """Check the file's head and find its layout; AudienceError says what is wrong with it."""
    with opener() as stream:
        head = stream.read(HEAD_BYTES)
    if not head.strip():
        raise AudienceError(gettext("The file is empty: nothing to import."))
    encoding = detect_encoding(head)
    text = head.decode(encoding, errors="replace").lstrip("\ufeff")
    if "\x00" in text or sum(1 for ch in text[:4096] if ord(ch) < 32 and ch not in "\r\n\t") > 8:
        raise AudienceError(gettext("This file is not CSV text (it holds binary data). Save it as CSV (UTF-8) and try again."))
    delimiter = sniff_delimiter(text)
    header = _first_row(opener, encoding, delimiter)
    return layout_of(header, encoding, delimiter)


@contextmanager
def _cell_limit() -> Iterator[None]:
    """csv's cell limit at CELL_LIMIT for this read only: the limit is the process's, and the other CSV
    readers (a campaign's recipients) keep theirs."""
    before = csv.field_size_limit(CELL_LIMIT)
    try:
        yield
    finally:
        csv.field_size_limit(before)


def _first_row(opener: Opener, encoding: str, delimiter: str) -> list[str]:
    with _cell_limit(), open_text(opener, encoding) as handle:
        try:
            return next(csv.reader(handle, delimiter=delimiter), [])
        except csv.Error as exc:
            raise file_refusal(UNREADABLE_FIRST_ROW, problem=str(exc)) from None


def layout_of(header: list[str], encoding: str, delimiter: str) -> FileLayout:
    """The layout a header row gives; a header-less file, too many columns or no address column is refused."""
    header = [cell.strip().lstrip("\ufeff") for cell in header]
    if len(header) > MAX_COLUMNS:
        raise file_refusal(TOO_MANY_COLUMNS, columns=len(header), most=MAX_COLUMNS)
    if not looks_like_header(header):
        raise file_refusal(NO_HEADER, row=", ".join(header)[:120])
    names = [merge_field_name(cell) for cell in header]
    if not any(name in EMAIL_COLUMN_NAMES or "email" in name for name in names):
        raise AudienceError(gettext("No column is named email: name the address column \"email\"."))
    columns = columns_from_header(header)
    return FileLayout(encoding, delimiter, header, columns.email, columns.name, dict(columns.extra))


def read_rows(opener: Opener, layout: FileLayout) -> Iterator[tuple[int, list[str]]]:
    """(spreadsheet row, cells) of every non-blank row after the header; a broken file raises AudienceError."""
    with _cell_limit(), open_text(opener, layout.encoding) as handle:
        reader = csv.reader(handle, delimiter=layout.delimiter)
        number = 1
        try:
            next(reader, None)
            for number, cells in enumerate(reader, start=2):
                if cells and (cells[0].strip() or "".join(cells).strip()):  # not a blank row
                    yield number, cells
        except csv.Error as exc:
            raise file_refusal(UNREADABLE_ROW, row=number + 1, problem=str(exc)) from None


def _fits(kind: ColumnType, value: str) -> bool:
    if kind is ColumnType.NUMBER:
        return bool(_NUMBER.match(value))
    if kind is ColumnType.BOOLEAN:
        return value.lower() in _BOOLEANS
    if kind is ColumnType.DATE and _DATE.match(value):
        try:
            date.fromisoformat(value)
            return True
        except ValueError:
            return False
    return False


def infer_column_types(opener: Opener, layout: FileLayout) -> tuple[dict[str, ColumnType], int]:
    """Each attribute's type (the first of number, date, boolean that fits every value, else text) and
    the number of data rows."""
    candidates = {index: [ColumnType.NUMBER, ColumnType.DATE, ColumnType.BOOLEAN] for index in layout.attributes}
    rows = 0
    for rows, (_, cells) in enumerate(read_rows(opener, layout), start=1):  # noqa: B007  (the count is kept)
        for index, kinds in candidates.items():
            if kinds and index < len(cells) and (value := cells[index].strip()):
                kinds[:] = [kind for kind in kinds if _fits(kind, value)]
    types = {layout.attributes[i]: (kinds[0] if kinds else ColumnType.TEXT) for i, kinds in candidates.items()}
    return types, rows


class AddressNormaliser:
    """`normalise_contact_email` with its domain checked once per domain: a plain ASCII local part under a
    domain already accepted is the same address lower-cased (1M rows in seconds, not a minute)."""

    def __init__(self) -> None:
        self._domains: dict[str, str | None] = {}

    def __call__(self, raw: str) -> str:
        raw = raw.strip()
        local, at, domain = raw.lower().rpartition("@")
        if at and len(local) <= 64 and len(raw) <= 254 and _LOCAL_PART.match(local):
            if domain not in self._domains and len(self._domains) < 100_000:
                try:
                    self._domains[domain] = normalise_contact_email("a@" + domain).partition("@")[2]
                except AudienceError:
                    self._domains[domain] = None
            accepted = self._domains.get(domain)
            if accepted:
                return f"{local}@{accepted}"
        return normalise_contact_email(raw)


def contact_rows(opener: Opener, layout: FileLayout,
                 types: dict[str, ColumnType]) -> Iterator[ContactRow | RejectedRow]:
    """Each data row as a contact or a rejection naming why."""
    check = RowChecker(layout, types)
    for number, cells in read_rows(opener, layout):
        try:
            yield check(number, cells)
        except AudienceError as exc:
            address = cells[layout.email].strip() if layout.email < len(cells) else ""
            yield RejectedRow(number, exc.message, cells, address)


def _number(value: str) -> int | float:
    return float(value) if "." in value else int(value)


def _boolean(value: str) -> bool:
    return _BOOLEANS[value.lower()]


_CONVERTERS = {ColumnType.NUMBER: _number, ColumnType.BOOLEAN: _boolean}


class RowChecker:
    """One row's cells into a ContactRow (AudienceError: why not), with everything that is the same for
    every row — which cell is what, each column's converter — worked out once for the file."""

    def __init__(self, layout: FileLayout, types: dict[str, ColumnType]) -> None:
        self.width = len(layout.header)
        self.email, self.name = layout.email, layout.name
        self.attributes = [(index, key, _CONVERTERS.get(types[key])) for index, key in layout.attributes.items()]
        self.normalise = AddressNormaliser()

    def __call__(self, number: int, cells: list[str]) -> ContactRow:
        width = self.width
        if len(cells) != width:
            if len(cells) > width and any(cell.strip() for cell in cells[width:]):
                raise AudienceError(stored_form(WRONG_WIDTH, cells=len(cells), columns=width))
            cells = (cells + [""] * width)[:width]
        email = self.normalise(cells[self.email])
        name = cells[self.name].strip() if self.name is not None else ""
        if len(name) > NAME_MAX:
            raise AudienceError(stored_form(NAME_TOO_LONG, length=len(name), most=NAME_MAX))
        attributes = {}
        for index, key, convert in self.attributes:
            value = cells[index].strip()
            if value:
                if len(value) > VALUE_MAX:
                    raise AudienceError(stored_form(VALUE_TOO_LONG, key=key, length=len(value), most=VALUE_MAX))
                attributes[key] = convert(value) if convert else value
        return ContactRow(number, email, name, attributes, cells)
