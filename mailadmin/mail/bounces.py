"""Bounce reports: what a provider or a returned delivery-status report says about one address.

Three ways lead from a report back to the campaign and recipient:

1. our own Message-ID (`<campaign-{id}.recipient-{id}.{random}@domain>`, built by
   `mail.message.MessageBuilder`), checked against the one stored on the recipient;
2. a VERP return path (`bounces+{campaign}-{recipient}-{signature}@domain`), used as the envelope
   sender when MAILER_BOUNCE_ADDRESS is set: the signature keeps forged bounces out;
3. failing both, the address itself (its most recent `sent` recipient).

Mailed-back reports (RFC 3464 delivery-status notifications and the common non-standard
formats of qmail, Exim, Postfix, Yahoo, ...) are read with flufl.bounce, Mailman's detector set.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from email.message import Message

from flufl.bounce import all_failures

# Kinds of bounce report (also `bounce_events.kind` and the log field `bounce_type`).
BOUNCE_HARD = "hard"
BOUNCE_SOFT = "soft"
BOUNCE_COMPLAINT = "complaint"
SOURCE_MAILBOX = "mailbox"

_OUR_MESSAGE_ID = re.compile(r"<?campaign-(\d{1,18})\.recipient-(\d{1,18})\.[0-9a-f]{12}@[^\s<>\"]+?>?(?=[\s>\"\],;]|$)")
_VERP_LOCAL = re.compile(r"\+(\d{1,18})-(\d{1,18})-([0-9a-f]{16})$")
# Headers an MTA puts the envelope recipient of a returned message in (the VERP address).
ENVELOPE_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To")
_ADDRESS = re.compile(r"[^\s<>\"',;:()]+@[^\s<>\"',;:()]+")
_DSN_STATUS = re.compile(r"^Status:\s*([245]\.\d{1,3}\.\d{1,3})", re.M | re.I)


@dataclass(frozen=True)
class BounceReport:
    """One address reported as bounced or complained about by one notification."""

    email: str
    kind: str  # hard | soft | complaint (models.suppression.BOUNCE_*)
    source: str  # ses | sendgrid | postmark | mailgun | mailbox
    event_id: str  # the provider's id of the notification: the same id twice is applied once
    message_id: str | None = None  # the Message-ID header of the message that bounced, when known
    campaign_id: int | None = None  # from a verified VERP return path
    recipient_id: int | None = None
    status_code: str | None = None  # e.g. 5.1.1


def read_our_message_id(text: str | None) -> tuple[int, int, str] | None:
    """(campaign_id, recipient_id, message_id) of the first Message-ID of ours found in `text`."""
    if not text:
        return None
    match = _OUR_MESSAGE_ID.search(text)
    if match is None:
        return None
    message_id = match.group(0)
    if not message_id.startswith("<"):
        message_id = "<" + message_id
    if not message_id.endswith(">"):
        message_id += ">"
    return int(match.group(1)), int(match.group(2)), message_id


def _verp_signature(secret: str, campaign_id: int, recipient_id: int) -> str:
    payload = f"verp:{campaign_id}:{recipient_id}".encode()
    return hmac.new(secret.encode("utf-8"), payload, hashlib.sha256).hexdigest()[:16]


def make_verp_address(secret: str, bounce_address: str, campaign_id: int, recipient_id: int) -> str:
    """The signed envelope sender of one recipient's message: `local+{c}-{r}-{sig}@domain`."""
    local, _, domain = bounce_address.rpartition("@")
    return f"{local}+{campaign_id}-{recipient_id}-{_verp_signature(secret, campaign_id, recipient_id)}@{domain}"


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
    ours = read_our_message_id(text)
    message_id = ours[2] if ours else None
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
