"""Fairness of the hourly quota (SPEC "Fairness") and what uses a quota slot, through the real send loop.

Real database, real Redis, real SMTP (the capture server); time is driven by the slice's clock, and
deferred campaigns are run when their continuation is due, as rq-scheduler would run them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from itertools import groupby

from sqlalchemy import select

from mailadmin.extensions import db, get_redis
from mailadmin.jobs.send import SliceEnd, SliceOutcome, run_send_slice
from mailadmin.limits.rate_limiter import rate_limit_moments
from mailadmin.limits.waiting_line import WAITING_LINE_GRACE_SECONDS, waiting_line
from mailadmin.models import Campaign, Recipient
from mailadmin.models.reasons import Reason
from mailadmin.services import campaigns as service
from tests.factories import create_started_campaign, fresh_campaign, recipient_address, recipient_statuses
from tests.support.clock import SettableClock
from tests.support.env import with_env

DEFERRED_BY_QUOTA = SliceOutcome(SliceEnd.DEFERRED, Reason.RATE_LIMIT)


def addresses(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{index}@example.test" for index in range(count)]


def run_until_finished(clock: SettableClock, campaigns: list[Campaign], *, max_slices: int = 40) -> None:
    """Run each deferred campaign's slice when its continuation is due, the later-started campaign
    first when two are due at once (the worst order for the earlier one), until all are finished."""
    for _ in range(max_slices):
        waiting = [fresh_campaign(campaign.id) for campaign in campaigns]
        due = [(current.queue.deferred_until, -current.id) for current in waiting if current.status != "finished"]
        if not due:
            return
        due_at, negative_id = min(due)
        clock.now = max(clock.now, due_at)
        run_send_slice(-negative_id, clock=clock)
    raise AssertionError(f"not finished after {max_slices} slices: {[fresh_campaign(c.id).status for c in campaigns]}")


def batches_in_send_order() -> list[tuple[str, int, datetime]]:
    """(address prefix, messages, sent at) for each run of messages one campaign sent at one moment."""
    db.session.commit()
    rows = db.session.execute(select(Recipient.email, Recipient.sent_at).where(Recipient.sent_at.is_not(None))
                              .order_by(Recipient.sent_at, Recipient.id)).all()
    return [(prefix, len(list(group)), sent_at)
            for (prefix, sent_at), group in groupby(rows, key=lambda row: (row.email[0], row.sent_at))]


def busiest_rolling_hour(moments: list[datetime]) -> int:
    return max(sum(start <= moment < start + timedelta(hours=1) for moment in moments) for start in moments)


@with_env(MAILER_SMTP_MAX_PER_HOUR="6", MAILER_SEND_BATCH_SIZE="3", MAILER_TRANSIENT_RETRY_DELAY_MINUTES="1")
def test_a_campaign_deferred_by_a_451_is_not_starved_by_one_started_3_s_later_they_alternate_batch_by_batch(
    engine_env, app, smtp, owner
):
    clock = SettableClock()
    t0 = clock.now
    earlier = create_started_campaign(owner, addresses("a", 9), name="Earlier")
    smtp.reply_with(451, stage="rcpt", times=1)
    assert run_send_slice(earlier.id, clock=clock).outcome == SliceOutcome(SliceEnd.DEFERRED, Reason.TRANSIENT_ERROR)

    clock.now = t0 + timedelta(seconds=3)
    later = create_started_campaign(owner, addresses("b", 9), name="Later")
    report = run_send_slice(later.id, clock=clock)

    # The earlier campaign kept its place and one batch of the quota through its retry delay:
    # the later one takes what is beyond that batch, then waits its turn.
    assert (report.sent, report.outcome) == (3, DEFERRED_BY_QUOTA)
    assert [waiter.campaign_id for waiter in waiting_line(get_redis())] == [earlier.id, later.id]
    run_until_finished(clock, [earlier, later])

    batches = batches_in_send_order()
    assert [(prefix, size) for prefix, size, _ in batches] == [("b", 3), ("a", 3)] * 3
    assert batches[1][2] == t0 + timedelta(minutes=1)  # the earlier campaign's share, right at its retry
    assert busiest_rolling_hour([sent_at for _, size, sent_at in batches for _ in range(size)]) == 6
    assert {fresh_campaign(c.id).status for c in (earlier, later)} == {"finished"}
    assert len(smtp.messages) == 18 and waiting_line(get_redis()) == []


@with_env(MAILER_SMTP_MAX_PER_HOUR="4", MAILER_SEND_BATCH_SIZE="2")
def test_three_campaigns_waiting_for_the_quota_resume_in_the_order_they_started_waiting(engine_env, app, smtp, owner):
    clock = SettableClock()
    t0 = clock.now
    for seconds, prefix in ((0, "y"), (5, "z")):  # the hour's quota, used in two batches 5 s apart
        clock.now = t0 + timedelta(seconds=seconds)
        sender = create_started_campaign(owner, addresses(prefix, 2), name=f"Sender {prefix}")
        assert run_send_slice(sender.id, clock=clock).outcome == SliceOutcome(SliceEnd.FINISHED)
    waiters = []
    for seconds, prefix in ((10, "a"), (20, "b"), (30, "c")):
        clock.now = t0 + timedelta(seconds=seconds)
        waiters.append(create_started_campaign(owner, addresses(prefix, 2), name=f"Waiter {prefix}"))
        assert run_send_slice(waiters[-1].id, clock=clock).outcome == DEFERRED_BY_QUOTA

    run_until_finished(clock, waiters)  # whenever several are due, the last to start waiting runs first

    assert batches_in_send_order() == [
        ("y", 2, t0), ("z", 2, t0 + timedelta(seconds=5)),
        ("a", 2, t0 + timedelta(hours=1)), ("b", 2, t0 + timedelta(hours=1, seconds=5)), ("c", 2, t0 + timedelta(hours=2)),
    ]


@with_env(MAILER_SMTP_MAX_PER_HOUR="2", MAILER_SEND_BATCH_SIZE="2")
def test_a_waiting_campaign_paused_by_a_person_holds_the_next_one_up_for_the_grace_only(
    engine_env, app, smtp, owner, admin
):
    clock = SettableClock()
    t0 = clock.now
    sender = create_started_campaign(owner, addresses("z", 2), name="Uses the hour")
    assert run_send_slice(sender.id, clock=clock).outcome == SliceOutcome(SliceEnd.FINISHED)
    clock.now = t0 + timedelta(seconds=10)
    paused = create_started_campaign(owner, addresses("p", 2), name="Paused while waiting")
    assert run_send_slice(paused.id, clock=clock).outcome == DEFERRED_BY_QUOTA
    service.pause_campaign(fresh_campaign(paused.id), admin)
    clock.now = t0 + timedelta(seconds=20)
    behind = create_started_campaign(owner, addresses("b", 2), name="Behind it")
    assert run_send_slice(behind.id, clock=clock).outcome == DEFERRED_BY_QUOTA

    run_until_finished(clock, [behind])

    # The paused campaign was due back when the hour's tokens freed; 3 minutes later it lost its place.
    lost_place_at = t0 + timedelta(hours=1, seconds=WAITING_LINE_GRACE_SECONDS)
    assert batches_in_send_order()[-1] == ("b", 2, lost_place_at)
    assert waiting_line(get_redis()) == [] and fresh_campaign(paused.id).status == "paused"


@with_env(MAILER_SMTP_MAX_PER_HOUR="5")
def test_messages_the_relay_refuses_give_their_quota_slot_back_and_accepted_ones_keep_it(engine_env, app, smtp, owner):
    smtp.reply_for_address(recipient_address(1), 550)  # refused at RCPT ("5.1.1 Mailbox unavailable")
    smtp.reply_for_address(recipient_address(2), 554, "5.7.1 Message refused as spam", stage="data")
    clock = SettableClock()
    campaign = create_started_campaign(owner, 7)

    report = run_send_slice(campaign.id, clock=clock)

    # Seven attempts within a quota of five: the two refusals were not counted by the provider.
    assert report.outcome == SliceOutcome(SliceEnd.FINISHED)
    assert recipient_statuses(campaign.id) == {"sent": 5, "failed": 2}
    assert len(smtp.messages) == 5
    assert len(rate_limit_moments(get_redis())) == 5
