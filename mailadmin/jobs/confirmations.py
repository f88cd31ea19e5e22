"""The double opt-in mails' job: send the confirmations owed to a few members, ahead of campaigns.

One job carries up to 50 members of one list (`queue.confirmations`). It asks which of them still
owe a mail (unconfirmed, not suppressed), takes the head of the quota's waiting line
(`CONFIRMATION_LANE`) and reserves its tokens from the same hourly quota as the campaigns
(`reserve_send_tokens`: a small priority lane, not a second limiter), sends what it was granted
over one SMTP connection at the slots the per-second pace gives, and hands the rest back to
rq-scheduler: at the moment the quota frees a token, or after MAILER_TRANSIENT_RETRY_DELAY_MINUTES
for a transient SMTP failure. A permanent refusal (5xx) is logged and not retried.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

from loguru import logger

from mailadmin.extensions import get_redis, get_settings
from mailadmin.jobs import job_app_context
from mailadmin.limits.send_pace import TokenBatch, reserve_send_tokens, settle_send_tokens
from mailadmin.limits.waiting_line import CONFIRMATION_LANE, take_head_of_line
from mailadmin.mail.confirmation import build_confirmation_message
from mailadmin.mail.message import MessageBuildError
from mailadmin.mail.transports import ErrorClass, SendError, Transport, transport_from_url
from mailadmin.pii import get_pii_log_fields
from mailadmin.queue.confirmations import enqueue_confirmations
from mailadmin.services.audiences.subscriptions import DueConfirmation, confirmations_due

# When the quota refuses without saying when a token frees (Redis answered oddly): ask again then.
QUOTA_FALLBACK_DELAY = timedelta(seconds=60)


@dataclass
class ConfirmationReport:
    """What one job did with its members."""

    due: int = 0
    sent: int = 0
    failed: int = 0
    later: list[int] = field(default_factory=list)  # contact ids handed back to rq-scheduler
    retry_at: str | None = None


def send_confirmation_batch(list_id: int, contact_ids: list[int], language: str = "en") -> dict:
    """RQ job (send queue): the confirmation mails owed to these members of `list_id`, in `language`."""
    with job_app_context():
        return asdict(deliver_confirmations(list_id, contact_ids, language))


def _reserve(count: int) -> TokenBatch:
    settings, redis = get_settings(), get_redis()
    take_head_of_line(redis, CONFIRMATION_LANE, datetime.now(UTC))
    return reserve_send_tokens(redis, count, settings.smtp_max_per_hour, settings.smtp_max_per_second,
                               campaign_id=CONFIRMATION_LANE, batch_size=settings.send_batch_size)


def _send_one(transport: Transport, list_id: int, due: DueConfirmation, batch: TokenBatch, index: int) -> bool | None:
    """Send one confirmation at its slot; True sent, False a permanent failure, None try again later."""
    settings = get_settings()
    delay = batch.slots[index] - time.time()
    if delay > 0:
        time.sleep(delay)  # the provider's per-second pace (MAILER_SMTP_MAX_PER_SECOND)
    fields = {"list_id": list_id, "contact_id": due.contact_id}
    try:
        built = build_confirmation_message(settings.mail_from, due.request)
    except MessageBuildError as exc:
        batch.finish(index, None)
        logger.bind(**fields, error=str(exc)).warning("Confirmation email could not be built")
        return False
    try:
        transport.send(built.envelope_from, built.envelope_to, built.data)
    except SendError as exc:
        batch.finish(index, time.time(), counted=False)
        logger.bind(**fields, smtp_code=exc.smtp_code, error_class=exc.error_class,
                    **get_pii_log_fields(due.request.to_email, "WARNING")).warning("Confirmation email failed")
        return None if exc.error_class == ErrorClass.TRANSIENT else False
    batch.finish(index, time.time())
    logger.bind(**fields, smtp_message_id=built.message_id, provider=transport.provider,
                **get_pii_log_fields(due.request.to_email, "INFO")).info("Confirmation email sent")
    return True


def _send_granted(list_id: int, granted: list[DueConfirmation], batch: TokenBatch, report: ConfirmationReport) -> list[int]:
    """Send the granted mails over one connection; the contact ids to try again after a transient failure."""
    settings = get_settings()
    transport = transport_from_url(settings.smtp_url, timeout=settings.smtp_timeout_seconds)
    retry: list[int] = []
    try:
        for index, due in enumerate(granted):
            outcome = _send_one(transport, list_id, due, batch, index)
            if outcome is None:
                retry.append(due.contact_id)
            elif outcome:
                report.sent += 1
            else:
                report.failed += 1
    finally:
        transport.close()
        settle_send_tokens(get_redis(), batch)
    return retry


def deliver_confirmations(list_id: int, contact_ids: list[int], language: str = "en") -> ConfirmationReport:
    """Send what the quota grants now; hand the others back to rq-scheduler (see the module docstring)."""
    report = ConfirmationReport()
    owed = confirmations_due(list_id, contact_ids, language)
    report.due = len(owed)
    if not owed:
        return report
    batch = _reserve(len(owed))
    granted, waiting = owed[: batch.granted], owed[batch.granted :]
    retry = _send_granted(list_id, granted, batch, report) if granted else []
    now = datetime.now(UTC)
    if waiting:
        report.later += [due.contact_id for due in waiting]
        at = batch.next_free_at or now + QUOTA_FALLBACK_DELAY
        enqueue_confirmations(list_id, [due.contact_id for due in waiting], at=at, language=language)
        report.retry_at = at.isoformat()
    if retry:
        report.later += retry
        enqueue_confirmations(list_id, retry, at=now + timedelta(minutes=get_settings().transient_retry_delay_minutes),
                              language=language)
    return report
