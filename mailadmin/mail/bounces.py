"""Bounces: which SMTP refusals mean "this mailbox does not exist" (the address goes on the
suppression list), and which campaign and recipient a bounce or complaint report is about.

Three ways lead from a report back to the campaign and recipient:

1. our own Message-ID (`<campaign-{campaign_id}.recipient-{recipient_id}.{random}@{domain}>`, written
   by `MessageBuilder`), as a report quotes it (a DSN's `Original-Message-ID`, the returned headers,
   a provider's `smtp-id` / `message-id` field) — the service checks it against the one stored;
2. a VERP return path (`bounces+{campaign}-{recipient}-{signature}@domain`), the envelope sender
   when MAILER_BOUNCE_ADDRESS is set: the signature keeps forged bounces out;
3. failing both, the address itself (its most recent `sent` recipient).

Mailed-back reports (RFC 3464 delivery-status notifications and the common non-standard
formats of qmail, Exim, Postfix, Yahoo, ...) are read with flufl.bounce, Mailman's detector set.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message

from flufl.bounce import all_failures

from mailadmin.settings import Settings

# 5xx replies that say "this mailbox does not exist": the address goes on the suppression list.
HARD_BOUNCE_CODES = frozenset({550, 551, 553})
HARD_BOUNCE_HINTS = (
    "5.1.0",
    "5.1.1",
    "5.1.2",
    "5.1.3",
    "5.1.6",
    "user unknown",
    "unknown user",
    "no such user",
    "unknown recipient",
    "mailbox unavailable",
    "mailbox not found",
    "does not exist",
    "invalid recipient",
    "recipient address rejected",
)

_OUR_MESSAGE_ID = re.compile(r"<?campaign-(\d+)\.recipient-(\d+)\.[0-9a-f]+@[^<>@\s]+>?")
# The same shape quoted inside a larger text (a DSN, returned headers): candidates for parse_message_id.
_OUR_MESSAGE_ID_IN_TEXT = re.compile(r"<?campaign-\d+\.recipient-\d+\.[0-9a-f]+@[^<>@\s\"',;()]+>?")


@dataclass(frozen=True, slots=True)
class SentMessageRef:
    """The campaign and recipient one of our Message-IDs names (recipient 0: a test email)."""

    campaign_id: int
    recipient_id: int


def is_hard_bounce(smtp_code: int | None, text: str) -> bool:
    """A permanent "no such mailbox" reply (550/551/553 with a user-unknown reason)."""
    if smtp_code not in HARD_BOUNCE_CODES:
        return False
    lowered = text.lower()
    return any(hint in lowered for hint in HARD_BOUNCE_HINTS)


def parse_message_id(value: str | None) -> SentMessageRef | None:
    """The campaign and recipient of a Message-ID we wrote, or None for anyone else's (or none).

    Accepts the bare header value with or without angle brackets and surrounding spaces; a
    `References` header's several ids are not split here (pass each one).
    """
    if not value:
        return None
    match = _OUR_MESSAGE_ID.fullmatch(value.strip())
    if match is None:
        return None
    return SentMessageRef(campaign_id=int(match.group(1)), recipient_id=int(match.group(2)))


# Kinds of bounce report (also `bounce_events.kind` and the log field `bounce_type`).
BOUNCE_HARD = "hard"
BOUNCE_SOFT = "soft"
BOUNCE_COMPLAINT = "complaint"
SOURCE_MAILBOX = "mailbox"

_VERP_LOCAL = re.compile(r"\+(\d{1,18})-(\d{1,18})-([0-9a-f]{16})$")
# Headers an MTA puts the envelope recipient of a returned message in (the VERP address).
ENVELOPE_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To")
_ADDRESS = re.compile(r"[^\s<>\"',;:()]+@[^\s<>\"',;:()]+")
_DSN_STATUS = re.compile(r"^Status:\s*([245]\.\d{1,3}\.\d{1,3})", re.M | re.I)


@dataclass(frozen=True)
class BounceReport:
    """One address reported as bounced or complained about by one notification."""

    email: str
    kind: str  # BOUNCE_HARD | BOUNCE_SOFT | BOUNCE_COMPLAINT
    source: str  # ses | sendgrid | postmark | mailgun | mailbox
    event_id: str  # the provider's id of the notification: the same id twice is applied once
    message_id: str | None = None  # the Message-ID header of the message that bounced, when known
    campaign_id: int | None = None  # from a verified VERP return path
    recipient_id: int | None = None
    status_code: str | None = None  # e.g. 5.1.1


def find_our_message_id(text: str | None) -> tuple[SentMessageRef, str] | None:
    """The first Message-ID of ours quoted anywhere in `text`: its reference and its `<...>` form."""
    for match in _OUR_MESSAGE_ID_IN_TEXT.finditer(text or ""):
        ref = parse_message_id(match.group(0))
        if ref is not None:
            return ref, "<" + match.group(0).strip("<>") + ">"
    return None


def _verp_signature(secret: str, campaign_id: int, recipient_id: int) -> str:
    payload = f"verp:{campaign_id}:{recipient_id}".encode()
    return hmac.new(secret.encode("utf-8"), payload, hashlib.sha256).hexdigest()[:16]


def make_verp_address(secret: str, bounce_address: str, campaign_id: int, recipient_id: int) -> str:
    """The signed envelope sender of one recipient's message: `local+{c}-{r}-{sig}@domain`."""
    local, _, domain = bounce_address.rpartition("@")
    return f"{local}+{campaign_id}-{recipient_id}-{_verp_signature(secret, campaign_id, recipient_id)}@{domain}"


def verp_return_path_for(settings: Settings, campaign_id: int) -> Callable[[int], str] | None:
    """The campaign's envelope sender per recipient id when MAILER_BOUNCE_ADDRESS is set, else None."""
    if not settings.bounce_address:
        return None
    secret, bounce_address = settings.secret_key, settings.bounce_address

    def return_path(recipient_id: int) -> str:
        return make_verp_address(secret, bounce_address, campaign_id, recipient_id)

    return return_path


def read_verp_address(secret: str, bounce_address: str, address: str) -> tuple[int, int] | None:
    """(campaign_id, recipient_id) of a VERP address we signed, else None (forged or not ours)."""
    local, _, domain = address.strip().strip("<>").rpartition("@")
    base_local, _, base_domain = bounce_address.rpartition("@")
    if domain.lower() != base_domain.lower() or not local.lower().startswith(base_local.lower() + "+"):
        return None
    match = _VERP_LOCAL.search(local)
    if match is None:
        return None
    campaign_id, recipient_id = int(match.group(1)), int(match.group(2))
    if not hmac.compare_digest(match.group(3), _verp_signature(secret, campaign_id, recipient_id)):
        return None
    return campaign_id, recipient_id


def find_verp_recipient(message: Message, secret: str, bounce_address: str) -> tuple[int, int] | None:
    """The campaign and recipient named by a VERP address in a returned message's envelope headers."""
    for header in ENVELOPE_HEADERS:
        for value in message.get_all(header) or ():
            for address in _ADDRESS.findall(str(value)):
                found = read_verp_address(secret, bounce_address, address)
                if found is not None:
                    return found
    return None


def _message_text(message: Message) -> str:
    try:
        return message.as_string()
    except (UnicodeError, LookupError, KeyError):
        return message.as_bytes().decode("utf-8", errors="replace")


def _feedback_report_address(message: Message) -> str | None:
    """The complained-about address of an ARF (RFC 5965) spam complaint, else None."""
    if message.get_content_type() != "multipart/report" or message.get_param("report-type") != "feedback-report":
        return None
    for part in message.walk():
        if part.get_content_type() == "message/feedback-report":
            payload = part.get_payload()
            text = payload[0].as_string() if isinstance(payload, list) and payload else str(payload)
            match = re.search(r"^Original-Rcpt-To:\s*(\S+@\S+)", text, re.M | re.I)
            return match.group(1).strip("<>") if match else ""
    return None


def parse_returned_message(
    message: Message, event_id: str, *, secret: str = "", bounce_address: str = ""
) -> list[BounceReport]:
    """The bounce reports in one message of the bounce mailbox (none when it is not a bounce)."""
    verp = find_verp_recipient(message, secret, bounce_address) if bounce_address else None
    text = _message_text(message)
    ours = find_our_message_id(text)
    message_id = ours[1] if ours else None
    campaign_id, recipient_id = verp if verp else (None, None)
    complained = _feedback_report_address(message)
    if complained is not None:
        return [BounceReport(complained, BOUNCE_COMPLAINT, SOURCE_MAILBOX, event_id, message_id, campaign_id, recipient_id)]
    temporary, permanent = all_failures(message)
    status = _DSN_STATUS.search(text)
    code = status.group(1) if status else None
    reports = [
        BounceReport(_decode(address), BOUNCE_HARD, SOURCE_MAILBOX, event_id, message_id, campaign_id, recipient_id, code)
        for address in sorted(permanent)
    ]
    reports += [
        BounceReport(_decode(address), BOUNCE_SOFT, SOURCE_MAILBOX, event_id, message_id, campaign_id, recipient_id, code)
        for address in sorted(temporary - permanent)
    ]
    return reports


def _decode(address: bytes | str) -> str:
    return address.decode("utf-8", errors="replace") if isinstance(address, bytes) else address
