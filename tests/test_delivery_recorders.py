"""The two batch recorders write the same rows: the same outcomes, recorded by PostgreSQL's one
statement and by the statement-by-statement path (SQLite's), leave the same recipients, counters and
queue row — run side by side on PostgreSQL, against two identical campaigns."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select, update

from mailadmin.extensions import db
from mailadmin.models import Campaign, CampaignQueue, Recipient
from mailadmin.models.campaign import R_FAILED, R_PENDING, R_SENT, R_SKIPPED, R_UNKNOWN
from mailadmin.services import delivery
from mailadmin.services.delivery.claims import (
    BatchRecord,
    OneStatementRecorder,
    StatementByStatementRecorder,
    recorder_for,
)
from mailadmin.services.delivery.values import Outcome, SendCounts
from tests.factories import create_started_campaign

JOB = "job-recorders"
NOW = datetime(2026, 12, 7, 20, 4, 5, 123456, tzinfo=UTC)
ADDRESSES = [f"person{n}@example.test" for n in range(8)]


def _claimed_campaign(owner) -> int:
    """A started campaign of ADDRESSES, all claimed by JOB, its breaker count at 3."""
    campaign = create_started_campaign(owner, ADDRESSES)
    db.session.execute(update(CampaignQueue).where(CampaignQueue.campaign_id == campaign.id)
                       .values(consecutive_transient_errors=3))
    db.session.commit()
    assert len(delivery.claim_batch(campaign.id, JOB, len(ADDRESSES), NOW).to_send) == len(ADDRESSES)
    return campaign.id


def _batch(campaign_id: int) -> BatchRecord:
    """Every kind of outcome, two untried claims; claims in address order, so both campaigns match."""
    rows = db.session.execute(select(Recipient).where(Recipient.campaign_id == campaign_id)
                              .order_by(Recipient.email)).scalars().all()
    claims = [delivery.Claim(r.id, r.email, r.name, r.fields) for r in rows]
    outcomes = [
        Outcome(claims[0], R_SENT, 250, "<a@test>", sent_at=NOW),
        Outcome(claims[1], R_SENT, 250, "<b@test>", sent_at=NOW),
        Outcome(claims[2], R_FAILED, 550, error="mailbox unavailable", hard_bounce=True),
        Outcome(claims[3], R_SKIPPED, attempted=False, error="suppressed"),
        Outcome(claims[4], R_UNKNOWN, error="in flight when the connection dropped"),
        Outcome(claims[5], R_PENDING, 451, error="try again later"),
    ]
    return BatchRecord(campaign_id, JOB, outcomes, claims[6:], NOW, next_job_id="job-next")


def _written(campaign_id: int) -> dict:
    """What a record leaves behind, without the ids that differ between the two campaigns."""
    db.session.expire_all()
    recipients = db.session.execute(
        select(Recipient.email, Recipient.status, Recipient.attempts, Recipient.smtp_code, Recipient.smtp_message_id,
               Recipient.last_error, Recipient.sent_at, Recipient.claimed_by, Recipient.claimed_at, Recipient.updated_at)
        .where(Recipient.campaign_id == campaign_id).order_by(Recipient.email)
    ).all()
    campaign = db.session.get(Campaign, campaign_id)
    queue = db.session.scalar(select(CampaignQueue).where(CampaignQueue.campaign_id == campaign_id))
    return {
        "recipients": [tuple(row) for row in recipients],
        "counters": (campaign.sent_count, campaign.failed_count, campaign.skipped_count, campaign.unknown_count),
        "queue": (queue.heartbeat_at, queue.consecutive_transient_errors, queue.current_job_id),
    }


def test_the_recorder_follows_the_dialect():
    assert isinstance(recorder_for("postgresql"), OneStatementRecorder)
    assert isinstance(recorder_for("sqlite"), StatementByStatementRecorder)


def test_both_recorders_write_the_same_rows_and_count_the_same_changes(app, owner):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("the one-statement recorder is PostgreSQL's (TEST_DATABASE_URL)")
    one, each = _claimed_campaign(owner), _claimed_campaign(owner)

    counts = [OneStatementRecorder().record(_batch(one)), StatementByStatementRecorder().record(_batch(each))]
    db.session.commit()
    # Recorded again (a retry after a lost commit answer): the guards change nothing twice.
    again = [OneStatementRecorder().record(_batch(one)), StatementByStatementRecorder().record(_batch(each))]
    db.session.commit()

    assert counts == [SendCounts(sent=2, failed=1, skipped=1, unknown=1, transient=1, released=2)] * 2
    assert again == [SendCounts()] * 2
    written = _written(one)
    assert written == _written(each)
    assert written["counters"] == (2, 1, 1, 1)
    assert written["queue"] == (NOW, 0, "job-next")
    statuses = [row[1] for row in written["recipients"]]
    assert statuses == [R_SENT, R_SENT, R_FAILED, R_SKIPPED, R_UNKNOWN, R_PENDING, R_PENDING, R_PENDING]
