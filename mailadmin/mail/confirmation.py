"""The double opt-in confirmation: its signed, expiring link and the message that carries it.

The token names one membership by (list id, contact id) and is timestamped: following the link
within `CONFIRMATION_TOKEN_MAX_AGE` confirms it. The message is plain text in the person's language (`ConfirmationRequest.language`: the browser's
when they signed up on the form, else English — see README "Languages"), built with
the same header helpers as campaign messages (`mail.message`: no CR/LF can reach a header, RFC 2047
for non-ASCII, a numeric `Date` zone, an unguessable Message-ID) and carries no List-Unsubscribe:
it is the answer to the person's own request, not a list message.
"""

from __future__ import annotations

import binascii
import functools
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parseaddr
from typing import Any

from flask_babel import force_locale, gettext, ngettext
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from mailadmin.mail.message import (
    BuiltMessage,
    InvalidAddressError,
    check_header_value,
    encode_header_text,
    format_address,
    normalize_address,
)

CONFIRMATION_TOKEN_MAX_AGE = timedelta(days=7)


class BadConfirmationToken(ValueError):
    """A confirmation token is forged, truncated or not one of ours."""


class ExpiredConfirmationToken(BadConfirmationToken):
    """A genuine confirmation token older than CONFIRMATION_TOKEN_MAX_AGE."""


@functools.lru_cache(maxsize=8)
def _serializer(secret_key: str | bytes) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key, salt="subscription-confirmation")


def make_confirmation_token(secret_key: str | bytes, list_id: int, contact_id: int) -> str:
    """A signed, URL-safe, timestamped token naming one membership (valid CONFIRMATION_TOKEN_MAX_AGE)."""
    return _serializer(secret_key).dumps([int(list_id), int(contact_id)])


def read_confirmation_token(secret_key: str | bytes, token: str) -> tuple[int, int]:
    """(list_id, contact_id) of a token made by `make_confirmation_token`; ExpiredConfirmationToken
    after 7 days, BadConfirmationToken for anything else."""
    try:
        payload: Any = _serializer(secret_key).loads(token, max_age=CONFIRMATION_TOKEN_MAX_AGE.total_seconds())
    except SignatureExpired:
        raise ExpiredConfirmationToken("expired confirmation token") from None
    except (BadSignature, UnicodeError, ValueError):
        raise BadConfirmationToken("invalid confirmation token") from None
    if (not isinstance(payload, list) or len(payload) != 2
            or not all(isinstance(part, int) and not isinstance(part, bool) for part in payload)):
        raise BadConfirmationToken("invalid confirmation token")
    return payload[0], payload[1]


@dataclass(frozen=True)
class ConfirmationRequest:
    """What one confirmation message says: to whom, for which list, and the link that confirms."""

    to_email: str
    to_name: str
    list_name: str
    confirm_url: str
    language: str = "en"  # the message's language: the browser's at sign-up, else English


def _body(request: ConfirmationRequest) -> str:
    days = CONFIRMATION_TOKEN_MAX_AGE.days
    return "".join((
        gettext("Hello,\n\nplease confirm that you want to receive emails from “%(list)s”:", list=request.list_name),
        f"\n\n{request.confirm_url}\n\n",
        ngettext("The link works for %(num)s day.", "The link works for %(num)s days.", days), " ",
        gettext("If you did not ask for this, ignore this message: you will not be subscribed and will hear"
                " nothing more from us."), "\n",
    ))


def build_confirmation_message(mail_from: str, request: ConfirmationRequest) -> BuiltMessage:
    """The confirmation message as bytes for SMTP DATA, with its envelope; raises MessageBuildError."""
    check_header_value("From", mail_from)
    from_name, from_addr = parseaddr(mail_from)
    if not from_addr:
        raise InvalidAddressError("MAIL_FROM is not an address")
    envelope_from = normalize_address(from_addr, "From")
    envelope_to = normalize_address(request.to_email)
    list_name = " ".join(request.list_name.split())[:80]
    with force_locale(request.language):
        subject = encode_header_text("Subject", gettext("Please confirm your subscription to %(list)s", list=list_name))
        text = _body(request)
    domain = envelope_from.rpartition("@")[2]
    message_id = f"<confirmation.{secrets.token_hex(12)}@{domain}>"
    body = binascii.b2a_qp(text.replace("\n", "\r\n").encode("utf-8"), istext=True)
    headers = (
        f"From: {format_address(from_name, envelope_from, 'From')}\r\n"
        f"To: {format_address(request.to_name or None, envelope_to)}\r\n"
        f"Subject: {subject}\r\nDate: {format_datetime(datetime.now(UTC))}\r\n"
        f"Message-ID: {message_id}\r\nAuto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
        'Content-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'
    ).encode("ascii")
    return BuiltMessage(message_id, headers + body + b"\r\n", envelope_to, envelope_from)
