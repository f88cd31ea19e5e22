"""Reading an uploaded CSV: its text (UTF-8/16/32 with or without a BOM, else Windows-1252),
its delimiter (comma, semicolon or tab), whether its first row is a header, and which column
holds the address, the name and the merge fields. No database: the recipient import
(`services.recipients`) and the suppression import share it."""

from __future__ import annotations

import codecs
import csv
from dataclasses import dataclass, field
from typing import IO, Any

from mailadmin.mail.templates import merge_field_name

DELIMITERS = (",", ";", "\t")
EMAIL_COLUMN_NAMES = ("email", "e_mail", "email_address", "e_mail_address", "mail", "address")
NAME_COLUMN_NAMES = ("name", "full_name", "fullname", "display_name")
SNIFF_ROWS = 50


def decode_upload(data: bytes) -> str:
    """Text of an uploaded file: UTF-16/32 with a BOM, UTF-8 (BOM or not), else Windows-1252 as Excel writes it."""
    # UTF-32's little-endian BOM begins with UTF-16's: look for it first.
    for bom, encoding in ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
                          (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if data.startswith(bom):
            try:
                return data.decode(encoding)
            except UnicodeDecodeError:
                break  # not really that encoding: the binary-data check below refuses it
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def sniff_delimiter(text: str) -> str:
    """Comma, semicolon or tab: the one that splits the first rows most consistently into 2+ columns."""
    sample_lines = [line for line in text.splitlines()[: SNIFF_ROWS * 2] if line.strip()][:SNIFF_ROWS]
    if not sample_lines:
        return ","
    best, best_score = ",", (0, 0)
    for delimiter in DELIMITERS:
        try:
            rows = list(csv.reader(sample_lines, delimiter=delimiter))
        except csv.Error:  # e.g. a cell over the field size limit: parse_rows reports it with its row
            continue
        widths = [len(row) for row in rows]
        multi = sum(1 for width in widths if width > 1)
        if not multi:
            continue
        # Most rows split, then most rows agreeing on the commonest width.
        commonest = max(set(widths), key=widths.count)
        score = (multi, widths.count(commonest) if commonest > 1 else 0)
        if score > best_score:
            best, best_score = delimiter, score
    return best


def looks_like_header(row: list[str]) -> bool:
    """A first row without any address in it whose columns name an email column (or are plain words)."""
    cells = [cell.strip() for cell in row]
    if not any(cells) or any("@" in cell for cell in cells):
        return False
    names = [merge_field_name(cell) for cell in cells]
    if any(name in EMAIL_COLUMN_NAMES or "email" in name for name in names):
        return True
    return len(cells) > 1 and all(name and not name[0].isdigit() for name in names)


@dataclass
class Columns:
    """Which column holds the address, the name, and each merge field (by its name)."""

    email: int = 0
    name: int | None = 1
    extra: dict[int, str] = field(default_factory=dict)


def columns_from_header(header: list[str]) -> Columns:
    """The columns a header row names (the address in the first column when none is named)."""
    names = [merge_field_name(cell) for cell in header]
    email = next((i for i, n in enumerate(names) if n in EMAIL_COLUMN_NAMES), None)
    if email is None:
        email = next((i for i, n in enumerate(names) if "email" in n), 0)
    name = next((i for i, n in enumerate(names) if n in NAME_COLUMN_NAMES and i != email), None)
    extra: dict[int, str] = {}
    for i, n in enumerate(names):
        if i in (email, name) or not n or n in ("email", "name") or n in extra.values():
            continue
        extra[i] = n
    return Columns(email, name, extra)


def cell_value(row: list[str], index: int | None) -> str:
    """The stripped cell at `index`, or "" when the row has no such column."""
    if index is None or index >= len(row):
        return ""
    return row[index].strip()


def read_upload(source: str | bytes | IO[Any]) -> str:
    """The text of an upload given as a file, bytes or text (a leading BOM dropped)."""
    if hasattr(source, "read"):
        source = source.read()
    if isinstance(source, bytes):
        return decode_upload(source)
    return source.lstrip("\ufeff")
