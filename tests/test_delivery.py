"""The send loop's writes own their transactions: a record whose commit fails changes nothing, and
the slice still holds those outcomes and writes them again — a batch's outcomes are never lost."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from mailadmin.extensions import db
from mailadmin.jobs.send import SliceEnd, SliceOutcome, run_send_slice
from mailadmin.models.campaign import R_SENT
from mailadmin.services import delivery
from mailadmin.services.campaigns import start_campaign
from mailadmin.services.delivery import Outcome
from tests.factories import create_campaign, fresh_campaign, recipient_statuses
from tests.support.engine import assert_nobody_twice
from tests.support.env import with_env


@pytest.fixture
def owner(make_user):
    return make_user("owner@example.com", role="manager")


def _started(owner, recipients: int):
    campaign = create_campaign(owner, recipients)
    start_campaign(campaign, owner, enforce_throttle=False)
    return campaign


def test_a_record_that_fails_before_its_commit_records_nothing_and_can_be_written_again(app, owner, monkeypatch):
    campaign = _started(owner, 3)
    now = datetime.now(UTC)
    claims = delivery.claim_batch(campaign.id, "job-1", 10, now).to_send
    outcomes = [Outcome(claim, R_SENT, 250, f"<{claim.id}@test>", sent_at=now) for claim in claims]

    def broken_claim(*args, **kwargs):
        raise OperationalError("claim", {}, Exception("connection lost"))

    with monkeypatch.context() as patch:
        patch.setattr(delivery.claims, "_claim_batch", broken_claim)
        with pytest.raises(OperationalError):
            delivery.record_batch(campaign.id, "job-1", outcomes, [], now, claim_next=10)

    assert recipient_statuses(campaign.id) == {"sending": 3}
    assert fresh_campaign(campaign.id).sent_count == 0

    recorded = delivery.record_batch(campaign.id, "job-1", outcomes, [], now)
    again = delivery.record_batch(campaign.id, "job-1", outcomes, [], now)  # idempotent: nothing twice

    assert (recorded.sent, again.sent) == (3, 0)
    assert recipient_statuses(campaign.id) == {"sent": 3}
    assert fresh_campaign(campaign.id).sent_count == 3


def test_a_slice_whose_batch_record_fails_keeps_the_outcomes_and_records_them_when_the_database_answers(
    app, smtp, owner, monkeypatch
):
    campaign = _started(owner, 4)
    real_record = delivery.record_batch
    calls = {"n": 0}

    def record_failing_once(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise OperationalError("record", {}, Exception("connection lost"))
        return real_record(*args, **kwargs)

    monkeypatch.setattr(delivery, "record_batch", record_failing_once)
    report = run_send_slice(campaign.id)

    # The database "answered again" at once: the slice wrote the outcomes it held, then handed over.
    assert report.outcome == SliceOutcome(SliceEnd.HANDED_OVER)
    assert len(smtp.messages) == 4
    assert recipient_statuses(campaign.id) == {"sent": 4}
    assert fresh_campaign(campaign.id).sent_count == 4


@with_env(MAILER_SEND_BATCH_SIZE="5")
def test_claims_committed_while_the_answer_was_lost_go_back_to_pending_and_are_sent_once(
    engine_env, app, smtp, owner, monkeypatch
):
    """The database is cut mid-commit: the next batch was claimed, but the slice never heard so.
    Nobody sent those recipients: they are pending again (not `unknown`), and the continuation
    sends them once."""
    campaign = _started(owner, 12)
    real_record = delivery.record_batch
    lost = []

    def answer_lost_once(*args, **kwargs):
        recorded = real_record(*args, **kwargs)
        if kwargs.get("claim_next") and not lost:
            lost.append(recorded.next_batch)
            raise OperationalError("COMMIT", {}, Exception("server closed the connection unexpectedly"))
        return recorded

    monkeypatch.setattr(delivery, "record_batch", answer_lost_once)
    report = run_send_slice(campaign.id)

    assert lost and lost[0].to_send, "the lost commit had claimed the next batch"
    assert report.outcome == SliceOutcome(SliceEnd.HANDED_OVER)
    statuses = recipient_statuses(campaign.id)
    assert statuses.get("sending", 0) == statuses.get("unknown", 0) == 0, statuses
    assert statuses["pending"] >= len(lost[0].to_send)

    monkeypatch.undo()
    run_send_slice(campaign.id)  # the continuation
    assert recipient_statuses(campaign.id) == {"sent": 12}
    assert_nobody_twice(smtp)


def test_a_slice_begins_in_one_transaction(app, owner):
    campaign = _started(owner, 2)
    fresh_campaign(campaign.id)
    commits = []
    listener = lambda session: commits.append(session)  # noqa: E731
    event.listen(db.session, "after_commit", listener)
    try:
        start = delivery.begin_slice(campaign.id, "job-1", datetime.now(UTC))
    finally:
        event.remove(db.session, "after_commit", listener)

    assert start.proceed and start.fan_out
    assert len(commits) == 1
