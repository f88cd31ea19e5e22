"""The hand-over record after a crash (`limits/handover.py`, `jobs/recovery.py`): a dead send job's claims
that it never handed to an SMTP connection go back to `pending` and are sent once; those it handed over
become `unknown`; without a record that can be trusted, every claim becomes `unknown` (the old bound)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rq import Queue
from sqlalchemy import select, update

from mailadmin.extensions import SEND_QUEUE, db, get_redis
from mailadmin.jobs.recovery import recover_stalled_campaigns
from mailadmin.limits.handover import Accepted, HandOver, handover_keys, read_handover_record
from mailadmin.limits.send_pace import reserve_send_tokens
from mailadmin.models import Recipient
from mailadmin.models.campaign import R_SENDING
from mailadmin.queue.dispatch import LIVE_WORKER_HEARTBEAT_SECONDS
from mailadmin.services.delivery import HANDED_WITHOUT_RECORD
from tests.factories import create_started_campaign, fresh_campaign, recipient_statuses
from tests.support.jobs import run_queued_jobs
from tests.support.waiting import wait_until

DEAD_JOB = "send-dead-job"


def crashed_mid_batch(owner, recipients: int, claimed: int):
    """A campaign whose send job died (SIGKILL) holding its first `claimed` recipients; their ids."""
    campaign = create_started_campaign(owner, recipients)
    Queue(SEND_QUEUE, connection=get_redis()).empty()  # the job died with its worker
    long_ago = datetime.now(UTC) - timedelta(hours=1)
    ids = list(db.session.scalars(
        select(Recipient.id).where(Recipient.campaign_id == campaign.id).order_by(Recipient.id).limit(claimed)))
    db.session.execute(update(Recipient).where(Recipient.id.in_(ids))
                       .values(status=R_SENDING, claimed_by=DEAD_JOB, claimed_at=long_ago))
    db.session.execute(update(type(campaign)).where(type(campaign).id == campaign.id).values(status="sending"))
    fresh_campaign(campaign.id).queue.heartbeat_at = long_ago
    db.session.commit()
    # The sweep trusts RQ's worker registry only once Redis has run this long (a restart empties it).
    wait_until(lambda: int(get_redis().info("server")["uptime_in_seconds"]) >= LIVE_WORKER_HEARTBEAT_SECONDS,
               LIVE_WORKER_HEARTBEAT_SECONDS + 5, 0.5, "Redis to have run long enough")
    return campaign, ids


def handed_over(ids: list[int], accepted: list[Accepted] = ()) -> None:
    """The dead job's token reservation, which wrote its hand-over record."""
    handing = HandOver(DEAD_JOB, ids, list(accepted))
    assert reserve_send_tokens(get_redis(), len(ids), 1000, handing_over=handing).granted == len(ids)


def test_claims_a_dead_job_never_handed_over_go_back_to_pending_and_are_sent_once(app, app_env, smtp, owner):
    campaign, ids = crashed_mid_batch(owner, 10, claimed=6)
    handed_over(ids[:2])
    # Handed over while Redis was unreachable: marked in the database instead of the record.
    db.session.execute(update(Recipient).where(Recipient.id == ids[2]).values(last_error=HANDED_WITHOUT_RECORD))
    db.session.commit()

    report = recover_stalled_campaigns()

    assert report.unknown == {campaign.id: 3} and report.enqueued == [campaign.id]
    assert recipient_statuses(campaign.id) == {"unknown": 3, "pending": 7}
    assert read_handover_record(get_redis(), DEAD_JOB).handed_over is None  # used, then forgotten
    run_queued_jobs(app_env["REDIS_URL"])
    current = fresh_campaign(campaign.id)
    assert (current.status, current.sent_count, current.unknown_count) == ("finished", 7, 3)
    assert len(smtp.messages) == 7 and set(smtp.recipients().values()) == {1}
    unknown = set(db.session.scalars(select(Recipient.email).where(Recipient.status == "unknown")))
    assert all(smtp.count_for(address) == 0 for address in unknown)


def test_messages_the_relay_accepted_before_the_crash_are_recorded_sent_from_the_record(app, app_env, smtp, owner):
    campaign, ids = crashed_mid_batch(owner, 8, claimed=5)
    sent_at = datetime(2026, 12, 8, 1, 0, 0, 250000, tzinfo=UTC)
    # The job handed 4 over; the relay accepted the first 2 (reported with its next hand-out), then SIGKILL.
    handed_over(ids[:2])
    handed_over(ids[2:4], accepted=[Accepted(ids[0], 250, "<a@mailadmin.test>", sent_at.timestamp()),
                                    Accepted(ids[1], 250, "<b@mailadmin.test>", sent_at.timestamp())])

    report = recover_stalled_campaigns()

    assert report.unknown == {campaign.id: 2}
    assert recipient_statuses(campaign.id) == {"sent": 2, "unknown": 2, "pending": 4}
    first = db.session.get(Recipient, ids[0])
    assert (first.status, first.smtp_code, first.smtp_message_id, first.sent_at) == (
        "sent", 250, "<a@mailadmin.test>", sent_at)
    run_queued_jobs(app_env["REDIS_URL"])
    current = fresh_campaign(campaign.id)
    assert (current.status, current.sent_count, current.unknown_count) == ("finished", 6, 2)
    assert len(smtp.messages) == 4  # the 4 never handed over; the 2 accepted went out before the crash


def test_without_a_trusted_record_every_claim_of_a_dead_job_becomes_unknown(app, app_env, smtp, owner):
    campaign, ids = crashed_mid_batch(owner, 6, claimed=4)
    handed_over(ids[:1])
    # Written before the Redis server started (restored from disk): later hand-outs may be missing.
    get_redis().set(handover_keys(DEAD_JOB)[1], 1)
    assert read_handover_record(get_redis(), DEAD_JOB).handed_over is None

    report = recover_stalled_campaigns()

    assert report.unknown == {campaign.id: 4}
    run_queued_jobs(app_env["REDIS_URL"])
    current = fresh_campaign(campaign.id)
    assert (current.status, current.sent_count, current.unknown_count) == ("finished", 2, 4)


def test_without_any_record_every_claim_of_a_dead_job_becomes_unknown(app, app_env, smtp, owner):
    campaign, _ = crashed_mid_batch(owner, 5, claimed=3)

    report = recover_stalled_campaigns()

    assert report.unknown == {campaign.id: 3}
    assert recipient_statuses(campaign.id) == {"unknown": 3, "pending": 2}
