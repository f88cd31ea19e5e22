"""What the end-to-end engine tests share: their settings, and the checks that a campaign finished, no
claim is left, nobody was sent twice, and a SIGKILL left no more than the crash bound."""

from __future__ import annotations

from sqlalchemy import select

from mailadmin.extensions import db
from mailadmin.models import Campaign, Recipient
from tests.factories import fresh_campaign, recipient_statuses
from tests.support.waiting import wait_until


def fast_engine(slice_seconds: int, smtp_timeout_seconds: int, **more: str) -> dict[str, str]:
    """Short slices, batches of 5 and the hourly quota out of the way (plus `more`): the settings of
    the end-to-end engine tests, as environment overrides."""
    return {
        "MAILER_SEND_SLICE_SECONDS": str(slice_seconds),
        "MAILER_SEND_BATCH_SIZE": "5",
        "SMTP_TIMEOUT_SECONDS": str(smtp_timeout_seconds),
        "MAILER_SMTP_MAX_PER_HOUR": "100000",
        **more,
    }


def wait_finished(campaign_id: int, timeout: float = 60.0) -> Campaign:
    """Wait until the campaign is `finished`; its fresh row."""
    wait_until(lambda: fresh_campaign(campaign_id).status == "finished", timeout, 0.1, "the campaign to finish")
    return fresh_campaign(campaign_id)


def no_live_claims(campaign_id: int) -> bool:
    """No recipient of the campaign is `sending` (read in a fresh transaction)."""
    db.session.commit()
    found = db.session.scalar(
        select(Recipient.id).where(Recipient.campaign_id == campaign_id, Recipient.status == "sending").limit(1)
    )
    db.session.commit()
    return found is None


def assert_nobody_twice(smtp) -> None:
    """The SMTP server received no address more than once."""
    duplicates = {address: n for address, n in smtp.recipients().items() if n > 1}
    assert duplicates == {}, f"sent twice: {duplicates}"


def assert_within_the_crash_bound(smtp, campaign: Campaign, settings) -> None:
    """After a SIGKILL and recovery (the campaign finished): nobody sent twice, every recipient
    `sent` or `unknown`, at most the messages in flight (one per connection) plus one claim batch
    `unknown` (SPEC), the counters agree, and each `sent` recipient got exactly one message."""
    assert_nobody_twice(smtp)
    statuses = recipient_statuses(campaign.id)
    assert set(statuses) <= {"sent", "unknown"}
    assert statuses.get("unknown", 0) <= settings.smtp_connections + settings.send_batch_size
    assert (campaign.sent_count, campaign.unknown_count) == (statuses["sent"], statuses.get("unknown", 0))
    db.session.commit()
    sent = set(db.session.scalars(select(Recipient.email).where(Recipient.status == "sent")))
    assert all(smtp.count_for(address) == 1 for address in sent)
