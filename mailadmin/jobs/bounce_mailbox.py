"""The bounce mailbox job: read delivery-status reports from IMAP and apply them (periodic, by the scheduler).

Each message is applied, then marked processed. A run that dies between the two re-reads that
message next time; the reports are then recognised as applied (`BounceEvent.event_key`), so no
recipient is marked twice.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
from dataclasses import asdict, dataclass

from loguru import logger

from mailadmin.extensions import get_settings
from mailadmin.jobs import job_app_context
from mailadmin.mail.bounces import BounceReport, parse_returned_message
from mailadmin.mail.mailbox import BounceMailbox
from mailadmin.services.bounces import record_bounce


@dataclass
class MailboxReport:
    """What one run did."""

    messages: int = 0
    # Bounce reports found in them, and how many of those changed a recipient.
    reports: int = 0
    applied: int = 0
    # Messages that are no bounce report, and messages that could not be parsed.
    not_bounces: int = 0
    unreadable: int = 0


def poll_bounce_mailbox() -> dict:
    """RQ job (scheduled every MAILER_BOUNCE_POLL_SECONDS): read and apply the bounce mailbox."""
    with job_app_context():
        return asdict(read_bounce_mailbox())


def _event_id(raw: bytes, message: email.message.Message) -> str:
    """A stable id of one returned message: its Message-ID, else a digest of its bytes."""
    message_id = str(message.get("Message-ID") or "").strip()
    digest = hashlib.sha256(message_id.encode("utf-8") if message_id else raw).hexdigest()
    return f"msg-{digest[:40]}"


def _reports_in(raw: bytes, settings, report: MailboxReport) -> list[BounceReport]:
    """The bounce reports of one returned message; none (counted unreadable) when the parsers choke on it."""
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    try:
        return parse_returned_message(message, _event_id(raw, message), secret=settings.secret_key,
                                      bounce_address=settings.bounce_address)
    except Exception as exc:  # noqa: BLE001 - heuristic parsers on hostile input: one bad message must not block the rest
        report.unreadable += 1
        logger.bind(error_type=type(exc).__name__).warning("Bounce message unreadable; flagged processed")
        return []


def read_bounce_mailbox() -> MailboxReport:
    """Apply every unprocessed message of the bounce mailbox (needs an app context)."""
    settings = get_settings()
    report = MailboxReport()
    if not settings.bounce_imap_url:
        return report
    with BounceMailbox(settings.bounce_imap_url) as mailbox:
        for uid, raw in mailbox.messages():
            report.messages += 1
            reports = _reports_in(raw, settings, report)
            report.not_bounces += 0 if reports else 1
            report.reports += len(reports)
            report.applied += sum(1 for item in reports if record_bounce(item).applied)
            mailbox.mark_processed(uid)
    logger.bind(**asdict(report)).info("Bounce mailbox read")
    return report
