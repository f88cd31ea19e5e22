"""Per-recipient MIME messages, built fast (the unsubscribe links they carry: `mail/unsubscribe.py`).

`email.message.EmailMessage` re-parses and re-folds every header and walks a policy
object for each part; per recipient of a campaign that caps out near 700 messages/s.
Everything that is the same for the whole campaign (From, MIME structure, part
headers, List-Unsubscribe-Post, List-Id) is rendered to bytes once by `MessageBuilder`; per
recipient only Subject, To, Date, Message-ID, List-Unsubscribe and the two
quoted-printable bodies are produced and the pieces joined. The output is plain
RFC 5322 / MIME (RFC 2045-2047) that `email.parser` reads back exactly.

Header values can never carry CR or LF: every value that reaches a header passes
`check_header_value()`, which raises `HeaderInjectionError`. Error messages never
quote the offending value (it may be an address; see the PII rules in SPEC).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parseaddr
from typing import Any

from mailadmin.mail.templates import CampaignTemplates

LIST_UNSUBSCRIBE_POST = "List-Unsubscribe=One-Click"  # RFC 8058
_MAX_LINE = 78  # RFC 5322 2.1.1 "SHOULD"; 998 is the hard limit
_WORD_BYTES = 42  # UTF-8 bytes per encoded-word: "=?utf-8?b?" + 56 base64 chars + "?=" = 68 chars
# Characters that would change the structure of an address header around a bare addr-spec.
_ADDRESS_FORBIDDEN = re.compile(r'[\s<>(),;:"\[\]\\\x00-\x1f\x7f]')
# Printable ASCII: may go in a header as is (unless it contains "=?", which reads as an encoded-word).
_PLAIN_HEADER_TEXT = re.compile(r"[\x20-\x7e]+")
_FOLD_CHUNKS = re.compile(r" *[^ ]+| +$")
# RFC 2919: list-id = list-label "." list-id-namespace, both dot-atom-text (RFC 5322 3.2.3), at most 255.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM_TEXT = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*")
_MAX_LIST_ID = 255
# RFC 2919's namespace for a list whose owner has no domain of its own.
UNMANAGED_LIST_NAMESPACE = "localhost"
# The List-Id's description is a name for people: one short line, whatever the list's name holds.
_LIST_DESCRIPTION_CHARS = 60
_NOT_TEXT = re.compile(r"[\s\x00-\x1f\x7f-\x9f\u2028\u2029]+")


class MessageBuildError(ValueError):
    """A recipient's message cannot be built; the message never contains the offending value."""


class HeaderInjectionError(MessageBuildError):
    """A header value contains CR or LF (or NUL): refused, whatever its origin."""


class InvalidAddressError(MessageBuildError):
    """An address is not a single plain `local@domain` that can go in a header and an SMTP envelope."""


class InvalidListIdError(MessageBuildError):
    """A List-Id's label or namespace is not dot-atom text, or the whole id is longer than 255 octets."""


def check_header_value(name: str, value: str) -> str:
    """Return `value` unchanged, or raise HeaderInjectionError when it contains CR, LF or NUL."""
    if "\r" in value or "\n" in value or "\x00" in value:
        raise HeaderInjectionError(f"line break in the {name} header is not allowed")
    return value


def normalize_address(address: str, header: str = "To") -> str:
    """A bare addr-spec ready for headers and the SMTP envelope; an IDN domain becomes its ASCII form."""
    check_header_value(header, address)
    address = address.strip()
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or _ADDRESS_FORBIDDEN.search(address):
        raise InvalidAddressError(f"the {header} address is not a single plain address")
    if not local.isascii():
        raise InvalidAddressError(f"the {header} address has a non-ASCII local part (SMTPUTF8 is not used)")
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            raise InvalidAddressError(f"the {header} address has an invalid domain") from None
    return f"{local}@{domain}"


def _encoded_words(value: str) -> str:
    """RFC 2047 base64 encoded-words, folded, never splitting a UTF-8 sequence."""
    raw = value.encode("utf-8", errors="replace")
    if len(raw) <= _WORD_BYTES:
        return f"=?utf-8?b?{base64.b64encode(raw).decode('ascii')}?="
    words = []
    start, size = 0, len(raw)
    while start < size:
        end = min(start + _WORD_BYTES, size)
        while end < size and (raw[end] & 0xC0) == 0x80:  # continuation byte: back off
            end -= 1
        words.append(f"=?utf-8?b?{base64.b64encode(raw[start:end]).decode('ascii')}?=")
        start = end
    return "\r\n ".join(words)


def _fold_plain(prefix_len: int, value: str) -> str | None:
    """Fold printable ASCII before runs of spaces to ~78 columns; None when a word cannot fit in 998."""
    # Each chunk is a run of spaces plus the word after it; folding puts CRLF in front of a
    # chunk, so unfolding (removing the CRLF) gives back the exact text.
    chunks = _FOLD_CHUNKS.findall(value)
    lines = []
    current, length = chunks[0], prefix_len + len(chunks[0])
    for chunk in chunks[1:]:
        if length + len(chunk) > _MAX_LINE and current.strip() and chunk.strip():
            lines.append(current)
            current, length = chunk, len(chunk)
        else:
            current += chunk
            length += len(chunk)
    lines.append(current)
    if any(len(line) > 990 for line in lines):
        return None
    return "\r\n".join(lines)


def encode_header_text(name: str, value: str) -> str:
    """An unstructured header value (e.g. Subject) as header-safe ASCII: plain, folded, or RFC 2047."""
    check_header_value(name, value)
    if not value:
        return ""
    if _PLAIN_HEADER_TEXT.fullmatch(value) and "=?" not in value:
        if len(name) + 2 + len(value) <= _MAX_LINE:
            return value
        folded = _fold_plain(len(name) + 2, value)
        if folded is not None:
            return folded
    return _encoded_words(value)


def _phrase(text: str, longest_quoted: int) -> str:
    """A display name as an RFC 5322 phrase: a quoted-string when it is short printable ASCII, else RFC 2047 words."""
    if text.isascii() and text.isprintable() and "=?" not in text:
        quoted = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if len(quoted) <= longest_quoted:
            return quoted
    return _encoded_words(text)


def format_address(name: str | None, address: str, header: str = "To") -> str:
    """`"Display Name" <local@domain>` (RFC 2047 for non-ASCII names) or the bare address."""
    address = normalize_address(address, header)
    name = check_header_value(header, "" if name is None else str(name).strip())
    if not name:
        return address
    return f"{_phrase(name, 201)} <{address}>"


def list_description(name: str | None) -> str:
    """A list's name as a List-Id description: line breaks and controls become spaces, one short line."""
    text = _NOT_TEXT.sub(" ", name or "").strip()
    return text[:_LIST_DESCRIPTION_CHARS].rstrip()


def format_list_id(label: str, namespace: str, description: str | None = None) -> str:
    """The List-Id header value (RFC 2919) `"description" <label.namespace>`; raises InvalidListIdError.

    `label` names the list within `namespace` (a domain its owner controls, or "localhost"); the
    description is optional and may be any text: it is cleaned by `list_description` and encoded.
    """
    list_id = f"{label}.{namespace.lower()}"
    if not _DOT_ATOM_TEXT.fullmatch(label) or not _DOT_ATOM_TEXT.fullmatch(namespace):
        raise InvalidListIdError("the List-Id label and namespace must be dot-atom text (RFC 2919)")
    if len(list_id) > _MAX_LIST_ID:
        raise InvalidListIdError(f"the List-Id is longer than {_MAX_LIST_ID} characters")
    description = list_description(description)
    if not description:
        return f"<{list_id}>"
    phrase = _phrase(description, _MAX_LINE - len("List-Id: "))
    # The id goes on a continuation line (CFWS) when the phrase leaves no room for it.
    _, newline, last = phrase.rpartition("\n")
    last_line = len(last) if newline else len("List-Id: ") + len(phrase)
    separator = " " if last_line + len(list_id) + 3 <= _MAX_LINE else "\r\n "
    return f"{phrase}{separator}<{list_id}>"


def campaign_list_label(campaign_id: int) -> str:
    """The List-Id label of a campaign sent to its own one-off recipients: `campaign-<id>`."""
    return f"campaign-{campaign_id}"


def _quoted_printable(text: str) -> bytes:
    """UTF-8 quoted-printable with CRLF line ends, soft-wrapped at 76 columns."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return binascii.b2a_qp(text.replace("\n", "\r\n").encode("utf-8", errors="replace"), istext=True)


@dataclass(frozen=True, slots=True)
class BuiltMessage:
    """One recipient's message: its Message-ID header value and the bytes to hand to SMTP DATA."""

    message_id: str
    data: bytes
    envelope_to: str = ""  # the address as it must be given to RCPT TO (ASCII domain)
    envelope_from: str = ""  # MAIL FROM: where bounces go (a signed VERP address when configured)


class _LastEncoded:
    """One-slot cache: a body that does not depend on the recipient is encoded only once."""

    __slots__ = ("source", "encoded")

    def __init__(self) -> None:
        self.source: str | None = None
        self.encoded = b""

    def get(self, text: str) -> bytes:
        if text != self.source:
            self.encoded = _quoted_printable(text)
            self.source = text
        return self.encoded


class _UnguessableHex:
    """Hex digits from the operating system's CSPRNG, drawn 4 KiB at a time: one getrandom call per
    message cost ~30 µs on some virtual machines. Per process (an RQ work horse is a fork) and
    safe across the connection threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool, self._at, self._pid = b"", 0, -1

    def __call__(self, nbytes: int) -> str:
        with self._lock:
            if self._pid != os.getpid() or self._at + nbytes > len(self._pool):
                self._pool, self._at, self._pid = os.urandom(4096), 0, os.getpid()
            chunk = self._pool[self._at : self._at + nbytes]
            self._at += nbytes
        return chunk.hex()


# The Message-ID's random part keeps a bounce report from naming a recipient it did not come from
# (services/bounces.py matches the whole stored Message-ID): it must stay unguessable.
_unguessable_hex = _UnguessableHex()


class MessageBuilder:
    """Builds the per-recipient messages of one campaign; constant parts are prepared once."""

    def __init__(
        self,
        campaign_id: int,
        mail_from: str,
        templates: CampaignTemplates,
        unsubscribe_url_for: Callable[[Any], str],
        message_id_domain: str | None = None,
        envelope_from_for: Callable[[Any], str] | None = None,
        *,
        list_name: str | None = None,
        list_label: str | None = None,
    ) -> None:
        """`list_label`/`list_name`: the List-Id's label (default `campaign-<id>`, a one-off list) and
        description; its namespace is MAIL_FROM's domain."""
        self.campaign_id = campaign_id
        # Per-recipient envelope sender (VERP, see mail.bounces); None: MAIL_FROM's address.
        self.envelope_from_for = envelope_from_for
        self.templates = templates
        self.unsubscribe_url_for = unsubscribe_url_for
        check_header_value("From", mail_from)
        from_name, from_addr = parseaddr(mail_from)
        if not from_addr:
            raise InvalidAddressError("MAIL_FROM is not an address")
        self.envelope_from = normalize_address(from_addr, "From")
        domain = message_id_domain or self.envelope_from.rpartition("@")[2]
        check_header_value("Message-ID", domain)
        if not domain.isascii() or _ADDRESS_FORBIDDEN.search(domain):
            raise InvalidAddressError("the Message-ID domain is not a plain host name")
        self._id_prefix = f"<campaign-{campaign_id}.recipient-"
        self._id_suffix = f"@{domain}>"
        self._from = f"From: {format_address(from_name, self.envelope_from, 'From')}\r\n".encode("ascii")
        self._text_cache = _LastEncoded()
        self._html_cache = _LastEncoded()
        self._date_second = -1
        self._date = ""

        list_id = format_list_id(list_label or campaign_list_label(campaign_id), self.list_namespace, list_name)
        common = (
            f"List-Unsubscribe-Post: {LIST_UNSUBSCRIBE_POST}\r\nList-Id: {list_id}\r\nMIME-Version: 1.0\r\n"
        )
        self._prepare_parts(common, templates.has_html)

    def _prepare_parts(self, common: str, has_html: bool) -> None:
        """The constant bytes around the text and HTML parts (one part, or multipart/alternative)."""
        text_part = 'Content-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n'
        html_part = 'Content-Type: text/html; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n'
        if has_html:
            # "=_" cannot occur in quoted-printable output and "-" not in base64: the boundary is safe.
            boundary = f"=_mailadmin_{secrets.token_hex(12)}"
            self._before_text = (
                f'{common}Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'
                f"--{boundary}\r\n{text_part}\r\n"
            ).encode("ascii")
            self._before_html = f"\r\n--{boundary}\r\n{html_part}\r\n".encode("ascii")
            self._end = f"\r\n--{boundary}--\r\n".encode("ascii")
        else:
            self._before_text = f"{common}{text_part}\r\n".encode("ascii")
            self._before_html = b""
            self._end = b"\r\n"

    @property
    def list_namespace(self) -> str:
        """The List-Id namespace: MAIL_FROM's domain (RFC 2919's "localhost" when it is not a dot-atom)."""
        domain = self.envelope_from.rpartition("@")[2].lower()
        return domain if _DOT_ATOM_TEXT.fullmatch(domain) else UNMANAGED_LIST_NAMESPACE

    def _date_header(self) -> str:
        now = int(time.time())
        if now != self._date_second:
            self._date_second = now
            # RFC 5322 3.3: a numeric zone; "GMT" is the obsolete form a message must not be generated with.
            self._date = format_datetime(datetime.fromtimestamp(now, UTC))
        return self._date

    def build(self, recipient_id: Any, to_email: str, fields: Mapping[str, Any]) -> BuiltMessage:
        """Render and assemble one recipient's message; raises MessageBuildError subclasses."""
        parts = self.templates.render(fields)
        envelope_to = normalize_address(to_email)
        to_header = format_address(fields.get("name"), envelope_to)
        subject = encode_header_text("Subject", parts.subject.strip())
        unsubscribe_url = check_header_value("List-Unsubscribe", self.unsubscribe_url_for(recipient_id))
        if not unsubscribe_url.isascii() or ">" in unsubscribe_url:
            raise MessageBuildError("the unsubscribe URL must be plain ASCII")
        message_id = f"{self._id_prefix}{recipient_id}.{_unguessable_hex(6)}{self._id_suffix}"
        check_header_value("Message-ID", message_id)
        headers = (
            f"To: {to_header}\r\nSubject: {subject}\r\nDate: {self._date_header()}\r\n"
            f"Message-ID: {message_id}\r\nList-Unsubscribe: <{unsubscribe_url}>\r\n"
        ).encode("ascii")
        chunks = [self._from, headers, self._before_text, self._text_cache.get(parts.text)]
        if parts.html is not None and self._before_html:
            chunks += [self._before_html, self._html_cache.get(parts.html)]
        chunks.append(self._end)
        envelope_from = self.envelope_from_for(recipient_id) if self.envelope_from_for else self.envelope_from
        return BuiltMessage(message_id, b"".join(chunks), envelope_to, envelope_from)
