"""Checks the end-to-end engine tests share: a campaign finished, no claim left, nobody sent twice."""

from __future__ import annotations

from sqlalchemy import select

from mailadmin.extensions import db
from mailadmin.models import Campaign, Recipient
from tests.factories import fresh_campaign
from tests.support.waiting import wait_until


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
