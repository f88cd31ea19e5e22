"""The bounce mailbox against a real IMAP server (dovecot, started by the test), fed with real bounce
samples (tests/data/bounces, from flufl.bounce's test data): each recipient is marked once, even when
the job runs twice or dies before flagging a message."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from rq import Queue, SimpleWorker
from sqlalchemy import func, select

from mailadmin.extensions import DEFAULT_QUEUE, db, get_settings
from mailadmin.jobs.bounce_mailbox import read_bounce_mailbox
from mailadmin.jobs.continuations import ContinuationScheduler
from mailadmin.mail.bounces import make_verp_address
from mailadmin.mail.mailbox import PROCESSED_KEYWORD
from mailadmin.models import BounceEvent, Campaign, Suppression
from mailadmin.queue.dispatch import BOUNCE_MAILBOX_JOB_ID, schedule_bounce_mailbox
from tests.factories import recipient_of, sent_campaign
from tests.support import imap as imap_support
from tests.support.imap import DovecotServer

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "bounces"
dovecot = imap_support.dovecot  # the fixture: a dovecot of each test's own

BOUNCE_ADDRESS = "bounces@mailadmin.test"
# sample -> (the address it reports, the state its recipient ends in)
EXPECTED = {
    "dsn_01.txt": ("userx@example.com", "bounced"),  # RFC 3464
    "dsn_05.txt": ("userx@example.cz", "sent"),  # RFC 3464 "delayed": a soft bounce, counted
    "postfix_01.txt": ("xxxxx@local.ie", "bounced"),
    "qmail_01.txt": ("userx@example.de", "bounced"),
    "exim_01.txt": ("userx@its.example.nl", "bounced"),
    "simple_01.txt": ("bbbsss@example.com", "bounced"),
}
# Delivered with our VERP return path in Delivered-To, as the receiving MTA writes it.
VIA_VERP = ("dsn_01.txt", "qmail_01.txt")


@pytest.fixture
def mailbox_app(app_env, dovecot: DovecotServer, request):
    app_env.update({"MAILER_BOUNCE_IMAP_URL": dovecot.url(), "MAILER_BOUNCE_ADDRESS": BOUNCE_ADDRESS})
    return request.getfixturevalue("app")


@pytest.fixture
def campaign(mailbox_app, make_user) -> Campaign:
    addresses = [address for address, _ in EXPECTED.values()] + ["untouched@example.com"]
    return sent_campaign(make_user("owner@example.com"), addresses)


def deliver_samples(dovecot: DovecotServer, campaign: Campaign) -> None:
    for name in EXPECTED:
        raw = (SAMPLES / name).read_bytes()
        if name in VIA_VERP:
            recipient = recipient_of(campaign, EXPECTED[name][0])
            verp = make_verp_address(get_settings().secret_key, BOUNCE_ADDRESS, campaign.id, recipient.id)
            raw = f"Delivered-To: {verp}\n".encode() + raw
        dovecot.deliver(raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    dovecot.deliver(b"From: a friend <friend@example.net>\r\nSubject: hello\r\n\r\nNot a bounce at all.\r\n")


def snapshot(campaign: Campaign) -> dict:
    db.session.expire_all()
    row = db.session.get(Campaign, campaign.id)
    states = {address: recipient_of(campaign, address).status for address, _ in EXPECTED.values()}
    return {"bounced_count": row.bounced_count, "states": states,
            "suppressions": db.session.scalar(select(func.count()).select_from(Suppression)),
            "events": db.session.scalar(select(func.count()).select_from(BounceEvent))}


def test_each_bounced_recipient_is_marked_once_even_when_the_job_runs_twice(campaign, dovecot):
    deliver_samples(dovecot, campaign)
    first = read_bounce_mailbox()
    assert (first.messages, first.reports, first.applied, first.not_bounces) == (7, 6, 6, 1)
    after = snapshot(campaign)
    assert after["states"] == {address: state for address, state in EXPECTED.values()}
    assert after["bounced_count"] == 5
    assert after["suppressions"] == 5  # the soft bounce is counted, not suppressed
    assert recipient_of(campaign, "userx@example.cz").soft_bounce_count == 1
    assert recipient_of(campaign, "untouched@example.com").status == "sent"
    assert all(PROCESSED_KEYWORD in flags and "\\Seen" in flags for flags in dovecot.flags())

    second = read_bounce_mailbox()
    assert second.messages == 0
    assert snapshot(campaign) == after


def test_a_run_that_died_before_flagging_changes_nothing_when_repeated(campaign, dovecot):
    deliver_samples(dovecot, campaign)
    read_bounce_mailbox()
    after = snapshot(campaign)
    imap = dovecot.client()  # as if the job had died after applying, before flagging
    imap.select("INBOX")
    imap.store("1:*", "-FLAGS", f"({PROCESSED_KEYWORD})")
    imap.logout()
    again = read_bounce_mailbox()
    assert (again.messages, again.applied) == (7, 0)
    assert snapshot(campaign) == after


@pytest.fixture
def app_moving_processed(app_env, dovecot, request):
    imap = dovecot.client()
    assert imap.create("Processed")[0] == "OK"
    imap.logout()
    app_env.update({"MAILER_BOUNCE_IMAP_URL": dovecot.url("processed=Processed")})
    return request.getfixturevalue("app")


def test_processed_messages_can_be_moved_to_a_folder(app_moving_processed, dovecot, make_user):
    sent_campaign(make_user("owner@example.com"), ["xxxxx@local.ie"])
    dovecot.deliver((SAMPLES / "postfix_01.txt").read_bytes().replace(b"\n", b"\r\n"))
    assert read_bounce_mailbox().applied == 1
    assert dovecot.flags() == []
    imap = dovecot.client()
    assert imap.select("Processed")[1] == [b"1"]
    imap.logout()


def test_the_scheduler_runs_the_mailbox_job_periodically_under_one_stable_id(campaign, dovecot, app_env):
    deliver_samples(dovecot, campaign)
    connection = redis.Redis.from_url(app_env["REDIS_URL"])
    settings = get_settings()
    assert schedule_bounce_mailbox(settings, connection=connection) == BOUNCE_MAILBOX_JOB_ID
    assert schedule_bounce_mailbox(settings, connection=connection) == BOUNCE_MAILBOX_JOB_ID  # a restart
    scheduler = ContinuationScheduler(queue_name=DEFAULT_QUEUE, connection=connection, recovery_interval=None)
    jobs = list(scheduler.get_jobs())
    assert [job.id for job in jobs] == [BOUNCE_MAILBOX_JOB_ID]
    assert jobs[0].meta["interval"] == settings.bounce_poll_seconds
    scheduler.enqueue_jobs()
    queue = Queue(DEFAULT_QUEUE, connection=connection)
    assert queue.count == 1
    SimpleWorker([queue], connection=connection).work(burst=True)
    assert snapshot(campaign)["bounced_count"] == 5
    # Still scheduled for its next run.
    assert [job.id for job in scheduler.get_jobs()] == [BOUNCE_MAILBOX_JOB_ID]


def test_the_scheduler_process_declares_the_mailbox_job_at_each_start(mailbox_app, app_env):
    connection = redis.Redis.from_url(app_env["REDIS_URL"])
    runner = mailbox_app.test_cli_runner()
    for _ in range(2):  # a restart re-declares, never adds
        result = runner.invoke(args=["scheduler", "--burst", "--recovery-interval", "3600"])
        assert result.exit_code == 0, result.output
    scheduler = ContinuationScheduler(queue_name=DEFAULT_QUEUE, connection=connection, recovery_interval=None)
    assert [job.id for job in scheduler.get_jobs()] == [BOUNCE_MAILBOX_JOB_ID]


def test_a_forged_verp_address_is_not_trusted(mailbox_app):
    from mailadmin.mail.bounces import read_verp_address

    secret = get_settings().secret_key
    good = make_verp_address(secret, BOUNCE_ADDRESS, 7, 42)
    assert read_verp_address(secret, BOUNCE_ADDRESS, good) == (7, 42)
    assert read_verp_address(secret, BOUNCE_ADDRESS, good.replace("+7-42-", "+7-43-")) is None
    assert read_verp_address("another-secret", BOUNCE_ADDRESS, good) is None
    assert read_verp_address(secret, BOUNCE_ADDRESS, good.replace("mailadmin.test", "evil.test")) is None
