"""Issue 6 end to end: a whole campaign through the real pages, an RQ worker and a real SMTP server,
with every log record captured as production writes it (JSON, DEBUG) and scanned.

The campaign meets 250s, 451s (a deferral, then the circuit breaker), 550/554s quoting the
recipient, the hourly quota (a rate-limit deferral), a test email (accepted and refused), and the
admin's pause, resume, cancel and global switch. The scan checks the JSON shape of every line,
that no full address leaks (only DEBUG may carry one, and only with MAILER_LOG_FULL_EMAILS=true),
the per-level PII fields of the SPEC (INFO: email_domain, email_masked, email_hash; WARNING/ERROR:
email_masked, email_domain), that below MAILER_LOG_PII_LEVEL (ERROR) free text shows no masked local
part, and every event of the SPEC's catalogue with its fields as named there.

Time is not waited for: "the retry delay passes" moves the campaign's `deferred_until` and its
continuation into the past before the product's scheduler dispatches it, and "the rolling hour
passes" empties the rate limiter's window.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import smtplib
from collections import Counter
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import pytest
import redis
from loguru import logger
from rq import Queue, SimpleWorker
from sqlalchemy import select, update

from mailadmin.extensions import DEFAULT_QUEUE, QUEUE_NAMES, SEND_QUEUE, db, get_redis
from mailadmin.jobs.continuations import ContinuationScheduler
from mailadmin.limits.rate_limiter import RATE_LIMIT_KEY
from mailadmin.mail.transports import PermanentSendError, PipelinedSmtpTransport
from mailadmin.models import Campaign, CampaignQueue, Recipient
from mailadmin.models.types import utcnow
from mailadmin.queue.dispatch import schedule_continuation
from mailadmin.services.drafts import create_campaign
from mailadmin.services.recipients import import_recipients
from tests.factories import fresh_campaign, recipient_statuses
from tests.support.forms import csrf_token_from
from tests.support.log_capture import PII_FIELDS, LogLine, capture_json_logs, leaks, masked_form
from tests.support.web import flashes, logged_in_client, submit

MANAGER_EMAIL = "mona.manager@example.com"
ADMIN_EMAIL = "adam.admin@example.com"
TEST_ADDRESS = "quentin.tester+proof@example.org"
REFUSED_TEST_ADDRESS = "rita.refused@example.org"
ALICE = "alice.anderson@example.com"
BOB = "bob.bounce@example.org"  # 550 quoting the address: failed, hard bounce
CAROL = "carol.clark+news@example.net"  # 451 twice: a deferral, then the breaker trips
DAVE = "dave.spamtrap@example.com"  # 554 at DATA quoting the address: failed
ERIN = "erin.east@example.com"
FRANK = "frank.field@mail.example.co.uk"
GRACE = "grace.o'hara@example.com"
IVAN = "ivan.upper@example.com"  # imported as Ivan.Upper@Example.COM
JUDY = "judy.jones@example.com"  # recipient of the campaign the admin cancels
PROBE = "petra.probe@example.com"
CANARY = "carla.canary@example.com"  # logged at DEBUG by the test itself: proves the scan sees DEBUG lines

CAMPAIGN_RECIPIENTS = [ALICE, BOB, CAROL, MANAGER_EMAIL, DAVE, ADMIN_EMAIL, ERIN, FRANK, GRACE, IVAN]
IMPORT_CSV = "\n".join(
    [
        "email,name",
        f"{ALICE},Alice A.",
        f"{BOB},Bob B.",
        f"{CAROL},Carol C.",
        f"{MANAGER_EMAIL},Mona M.",
        f"{DAVE},Dave D.",
        f"{ADMIN_EMAIL},Adam A.",
        f"{ERIN},Erin E.",
        f"{FRANK},Frank F.",
        f"{GRACE},Grace O.",
        "Ivan.Upper@Example.COM,Ivan U.",
        "ALICE.ANDERSON@EXAMPLE.COM,Alice again",  # a duplicate
        "not-an-address,Nobody",  # an invalid row
    ]
)
EVERY_ADDRESS = [*CAMPAIGN_RECIPIENTS, JUDY, TEST_ADDRESS, REFUSED_TEST_ADDRESS, CANARY]

# Small enough that the quota runs out before Erin: only accepted messages use it (refusals give theirs back).
MAX_PER_HOUR = 4
BREAKER_THRESHOLD = 2

# What a record of each level may carry (SPEC "Logging", mailadmin/pii.py's table).
ALLOWED_PII = {
    "DEBUG": {"email_domain", "email_masked", "email_hash"},
    "INFO": {"email_domain", "email_masked", "email_hash"},
    "WARNING": {"email_domain", "email_masked"},
    "ERROR": {"email_domain", "email_masked"},
    "CRITICAL": {"email_domain", "email_masked"},
}
ALLOWED_PII_WITH_FULL_EMAILS = {**ALLOWED_PII, "DEBUG": set(PII_FIELDS)}

# The SPEC's event catalogue ("Logging — loguru, structured, PII-safe"), field names as written.
SENT_FIELDS = {"campaign_id", "queue_id", "recipient_id", "email_domain", "email_masked", "email_hash", "smtp_message_id",
               "provider", "took_ms", "rate_limit_count"}
FAILED_FIELDS = {"campaign_id", "queue_id", "recipient_id", "email_masked", "email_domain", "smtp_code", "error_class"}
TEST_SENT_FIELDS = {"campaign_id", "user_id", "email_domain", "email_masked", "email_hash"}
DEFERRED_FIELDS = {"campaign_id", "queue_id", "defer_reason", "deferred_until", "consecutive_errors"}
TRIPPED_FIELDS = {"campaign_id", "queue_id", "consecutive_errors", "threshold"}
FINISHED_FIELDS = {"campaign_id", "queue_id", "campaign_status", "totals", "duration_seconds", "finished_with_errors"}
RESERVE_FIELDS = {"campaign_id", "allowed", "current_count", "max_per_hour", "window"}
ADMIN_FIELDS = {"actor", "campaign_id"}


@pytest.fixture(params=[False, True], ids=["default-policy", "full-emails-at-debug"])
def full_emails(request, app_env) -> bool:
    """The run's MAILER_LOG_FULL_EMAILS, and a quota and breaker small enough to hit (list before `app`).

    One SMTP connection: the story below is told one recipient after the other. With several, how
    many messages other connections finish before Carol's 451 ends a slice depends on timing.
    """
    app_env.update(
        MAILER_LOG_FULL_EMAILS="true" if request.param else "false",
        MAILER_SMTP_MAX_PER_HOUR=str(MAX_PER_HOUR),
        MAILER_CIRCUIT_BREAKER_THRESHOLD=str(BREAKER_THRESHOLD),
        MAILER_SEND_BATCH_SIZE="4",
        MAILER_SMTP_CONNECTIONS="1",
    )
    return request.param


@pytest.fixture
def logs(app):
    """Production JSON logging at DEBUG into a list, for the whole test."""
    with capture_json_logs(app) as capture:
        yield capture


@pytest.fixture
def mona_manager(make_user):
    """The manager of this scan: her address is also one of the campaign's recipients."""
    return make_user(MANAGER_EMAIL, role="manager")


@pytest.fixture
def adam_admin(make_user):
    """The admin of this scan: his address is also one of the campaign's recipients."""
    return make_user(ADMIN_EMAIL, role="admin")


# --- driving the product -----------------------------------------------------------------------


def run_worker(redis_url: str) -> None:
    """Run every queued job (and what they enqueue) with RQ's SimpleWorker, its own logging at DEBUG."""
    connection = redis.Redis.from_url(redis_url)
    try:
        worker = SimpleWorker([Queue(name, connection=connection) for name in QUEUE_NAMES], connection=connection)
        worker.work(burst=True, logging_level="DEBUG")
    finally:
        connection.close()


def retry_delay_passes(campaign_id: int) -> None:
    """MAILER_TRANSIENT_RETRY_DELAY_MINUTES later: the deferral is due and the scheduler dispatches its continuation."""
    past = utcnow() - timedelta(seconds=2)
    db.session.execute(update(CampaignQueue).where(CampaignQueue.campaign_id == campaign_id).values(deferred_until=past))
    db.session.commit()
    schedule_continuation(campaign_id, past)
    ContinuationScheduler(queue_name=SEND_QUEUE, connection=get_redis(), recovery_interval=None).enqueue_jobs()


def rolling_hour_passes() -> None:
    """An hour later: every token of the rate limiter's window has expired."""
    get_redis().delete(RATE_LIMIT_KEY)


def admin_post(client, url: str, data: dict | None = None, page_url: str = "/admin/sending"):
    """Click an admin button: the form's CSRF token from the page, then the POST (303 back)."""
    token = csrf_token_from(client.get(page_url).get_data(as_text=True))
    response = client.post(url, data={**(data or {}), "csrf_token": token})
    assert response.status_code == 303, response.get_data(as_text=True)[:500]
    return response


def campaign_named(name: str) -> Campaign:
    """The campaign a page created, read fresh."""
    db.session.commit()
    return db.session.scalars(select(Campaign).where(Campaign.name == name)).one()


def recipient_ids(campaign_id: int) -> dict[str, int]:
    """{address: recipient id} of a campaign, read fresh."""
    db.session.commit()
    rows = db.session.execute(select(Recipient.email, Recipient.id).where(Recipient.campaign_id == campaign_id))
    return {email: rid for email, rid in rows}


def salted_hash_of(address: str, salt: str) -> str:
    """HMAC-SHA256 of the normalised address keyed with MAILER_LOG_HASH_SALT (SPEC), full hex."""
    return hmac.new(salt.encode(), address.strip().lower().encode(), hashlib.sha256).hexdigest()


# --- the scan ------------------------------------------------------------------------------------


def assert_no_address_leaks(lines: list[LogLine], addresses: list[str], *, full_emails: bool) -> None:
    """No full address in any line — except DEBUG lines when full emails are allowed; below ERROR (PII
    level) free text shows not even the masked local part (the `email_masked` field is the one place
    for it), which only DEBUG with full emails may also show."""
    full_allowed = (lambda line: line.level == "DEBUG") if full_emails else (lambda line: False)
    leaked = leaks([ln for ln in lines if not full_allowed(ln)], addresses)
    assert not leaked, "full addresses in the logs:\n" + "\n".join(f"{lvl} {addr}: {text}" for lvl, addr, text in leaked)

    below_pii_level = [ln for ln in lines if ln.levelno < 40 and not full_allowed(ln)]
    shown = [
        (line.level, address, line.text)
        for line in below_pii_level
        for address in addresses
        if masked_form(address) in json.dumps({k: v for k, v in line.record.items() if k != "email_masked"}).lower()
    ]
    assert not shown, "masked local parts below MAILER_LOG_PII_LEVEL:\n" + "\n".join(map(str, shown))


def assert_pii_fields_follow_the_level_policy(lines: list[LogLine], *, full_emails: bool) -> None:
    """Each record carries only the PII fields its level allows."""
    allowed = ALLOWED_PII_WITH_FULL_EMAILS if full_emails else ALLOWED_PII
    wrong = [
        (line.level, sorted(set(line.record) & PII_FIELDS - allowed.get(line.level, set())), line.text)
        for line in lines
        if set(line.record) & PII_FIELDS - allowed.get(line.level, set())
    ]
    assert not wrong, "PII fields the level does not allow:\n" + "\n".join(map(str, wrong))


class Contract:
    """Collects every broken expectation of the event catalogue, so one run reports them all."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def expect(self, condition: object, problem: str) -> bool:
        if not condition:
            self.problems.append(problem)
        return bool(condition)

    def fields(self, record: dict, fields: set[str], event: str) -> bool:
        missing = sorted(fields - set(record))
        return self.expect(not missing, f'"{event}" lacks the SPEC fields {missing}: {_short(record)}')

    def exactly_one(self, records: list[dict], event: str) -> dict:
        self.expect(len(records) == 1, f'expected one "{event}", got {len(records)}')
        return records[0] if records else {}


def _short(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in ("timestamp", "logger", "request_id", "job_id")}


def catalogue_problems(
    logs, *, campaign_id: int, second_id: int, manager_id: int, admin_id: int, salt: str, smtp
) -> list[str]:
    """Every way the captured events differ from SPEC "Logging": names, fields, values, PII fields per level."""
    c = Contract()
    campaign = fresh_campaign(campaign_id)
    queue_id = campaign.queue.id
    ids = recipient_ids(campaign_id)
    email_of = {rid: address for address, rid in ids.items()}
    message_ids = {m.rcpt_tos[0]: m.message_id for m in smtp.messages}

    # "Email sent successfully": INFO, so email_domain + email_masked + email_hash, never email.
    sent = logs.events("Email sent successfully")
    sent_to = {ALICE, CAROL, MANAGER_EMAIL, ADMIN_EMAIL, ERIN, FRANK, GRACE, IVAN}
    c.expect(sorted(email_of.get(r.get("recipient_id"), "?") for r in sent) == sorted(sent_to),
             f'"Email sent successfully" for {sorted(email_of.get(r.get("recipient_id"), "?") for r in sent)}, '
             f"expected {sorted(sent_to)}")
    for record in sent:
        event = "Email sent successfully"
        if not c.fields(record, SENT_FIELDS, event):
            continue
        address = email_of.get(record["recipient_id"], "?")
        c.expect((record["campaign_id"], record["queue_id"]) == (campaign_id, queue_id), f"{event}: ids {record}")
        c.expect(record["email_domain"] == address.rsplit("@", 1)[-1], f"{event}: email_domain {record}")
        c.expect(len(record["email_hash"]) >= 12 and salted_hash_of(address, salt).startswith(record["email_hash"]),
                 f"{event}: email_hash is not the salted HMAC of the address: {record['email_hash']!r}")
        c.expect(record["email_masked"] == masked_form(address) and "email" not in record,
                 f"{event}: INFO carries a wrong email_masked or the full email: {_short(record)}")
        c.expect(record["smtp_message_id"] == message_ids.get(address),
                 f"{event}: smtp_message_id is {record['smtp_message_id']!r}, the message's Message-ID is "
                 f"{message_ids.get(address)!r}")
        c.expect(record["provider"] == urlsplit(smtp.url).hostname, f"{event}: provider {record['provider']!r}")
        c.expect(isinstance(record["took_ms"], int | float) and record["took_ms"] >= 0, f"{event}: took_ms")
        c.expect(isinstance(record["rate_limit_count"], int) and 1 <= record["rate_limit_count"] <= MAX_PER_HOUR,
                 f"{event}: rate_limit_count {record['rate_limit_count']!r}")

    # "Failed to send email": ERROR, so email_masked + email_domain, never email_hash / email.
    failed = logs.events("Failed to send email")
    outcomes = []
    for record in failed:
        event = "Failed to send email"
        if not c.fields(record, FAILED_FIELDS, event):
            continue
        c.expect((record["campaign_id"], record["queue_id"]) == (campaign_id, queue_id), f"{event}: ids {record}")
        c.expect("email_hash" not in record and "email" not in record,
                 f"{event}: ERROR carries email_hash/email: {_short(record)}")
        outcomes.append((email_of.get(record["recipient_id"], "?"), record["smtp_code"], record["error_class"],
                         record["email_masked"], record["email_domain"]))
    expected_failures = [
        (BOB, 550, "permanent", "bo***@example.org", "example.org"),
        (CAROL, 451, "transient", "ca***@example.net", "example.net"),
        (CAROL, 451, "transient", "ca***@example.net", "example.net"),
        (DAVE, 554, "permanent", "da***@example.com", "example.com"),
    ]
    c.expect(sorted(outcomes) == sorted(expected_failures),
             f'"Failed to send email" records {sorted(outcomes)}, expected {sorted(expected_failures)}')

    # "Test email sent successfully": campaign_id, user_id and the INFO PII fields.
    event = "Test email sent successfully"
    test_sent = c.exactly_one(logs.events(event), event)
    if test_sent and c.fields(test_sent, TEST_SENT_FIELDS, event):
        c.expect((test_sent["campaign_id"], test_sent["user_id"]) == (campaign_id, manager_id), f"{event}: ids")
        c.expect(test_sent["email_domain"] == "example.org", f"{event}: email_domain")
        c.expect(salted_hash_of(TEST_ADDRESS, salt).startswith(test_sent["email_hash"]), f"{event}: email_hash")
        c.expect(test_sent["email_masked"] == masked_form(TEST_ADDRESS) and "email" not in test_sent,
                 f"{event}: email_masked / full email")

    # "Campaign deferred": the 451 deferral, then the quota.
    event = "Campaign deferred"
    deferred = [r for r in logs.events(event) if r.get("campaign_id") == campaign_id]
    complete = [r for r in deferred if c.fields(r, DEFERRED_FIELDS, event)]
    reasons = [(r["defer_reason"], r["consecutive_errors"]) for r in complete]
    c.expect(reasons == [("transient_error", 1), ("rate_limit", 0)], f"{event}: (defer_reason, consecutive_errors) "
             f"{reasons}, expected [('transient_error', 1), ('rate_limit', 0)]")
    for record in complete:
        c.expect(record["queue_id"] == queue_id, f"{event}: queue_id {record['queue_id']!r}")
        c.expect(isinstance(record["deferred_until"], str)
                 and datetime.fromisoformat(record["deferred_until"]) > datetime.fromisoformat(record["timestamp"]),
                 f"{event}: deferred_until {record['deferred_until']!r} is not a later ISO time")

    # "Circuit breaker tripped".
    event = "Circuit breaker tripped"
    tripped = c.exactly_one(logs.events(event), event)
    if tripped and c.fields(tripped, TRIPPED_FIELDS, event):
        c.expect((tripped["campaign_id"], tripped["queue_id"]) == (campaign_id, queue_id), f"{event}: ids")
        c.expect((tripped["consecutive_errors"], tripped["threshold"]) == (BREAKER_THRESHOLD, BREAKER_THRESHOLD),
                 f"{event}: consecutive_errors/threshold {tripped}")

    # "Campaign finished".
    event = "Campaign finished"
    finished = c.exactly_one(logs.events(event), event)
    if finished and c.fields(finished, FINISHED_FIELDS, event):
        c.expect((finished["campaign_id"], finished["queue_id"]) == (campaign_id, queue_id), f"{event}: ids")
        c.expect(finished["campaign_status"] == "finished", f"{event}: campaign_status {finished['campaign_status']!r}")
        c.expect(finished["finished_with_errors"] is True, f"{event}: finished_with_errors")
        c.expect(finished["totals"] == {"sent": 8, "failed": 2, "total": 10}, f"{event}: totals {finished['totals']}")
        c.expect(isinstance(finished["duration_seconds"], int | float) and finished["duration_seconds"] >= 0,
                 f"{event}: duration_seconds {finished['duration_seconds']!r}")

    # "Rate limit token reserve" (DEBUG): tokens for 12 attempts (8 sent, 2 refused for good, Carol's two 451s),
    # refused with the quota used up before Erin — and, when the slice asked while Dave's refused message
    # still held its token, once more before that token went back.
    event = "Rate limit token reserve"
    reserves = [r for r in logs.events(event) if c.fields(r, RESERVE_FIELDS, event)]
    c.expect(reserves and {r["level"] for r in reserves} == {"DEBUG"}, f"{event}: levels {[r['level'] for r in reserves]}")
    for record in reserves:
        c.expect(record["campaign_id"] == campaign_id and record["max_per_hour"] == MAX_PER_HOUR and record["window"],
                 f"{event}: values {_short(record)}")
    # The send loop takes a claim batch's tokens in one call (`granted` of them) and gives back unused ones.
    granted = sum(r.get("granted", 1) for r in reserves if r["allowed"] is True)
    refused = [r["current_count"] for r in reserves if r["allowed"] is False]
    c.expect(granted >= 12 and refused and set(refused) == {MAX_PER_HOUR} and len(refused) <= 2,
             f"{event}: {granted} granted and refused at counts {refused}, expected at least 12 and {MAX_PER_HOUR}s")

    # Admin actions: actor and campaign_id (None for the global switch).
    expected_admin_events = {
        "Campaign paused": [campaign_id],
        "Campaign resumed": [campaign_id, campaign_id],
        "Campaign cancelled": [second_id],
        "Sending switched off": [None],
        "Sending switched on": [None],
    }
    for event, campaign_ids in expected_admin_events.items():
        records = [r for r in logs.events(event) if c.fields(r, ADMIN_FIELDS, event)]
        got = [(r["actor"], r["campaign_id"]) for r in records]
        c.expect(got == [(admin_id, cid) for cid in campaign_ids],
                 f"{event}: (actor, campaign_id) {got}, expected {[(admin_id, cid) for cid in campaign_ids]}")
    return c.problems


# --- the tests -----------------------------------------------------------------------------------


def test_a_whole_campaign_logs_every_catalogue_event_as_pii_safe_json(
    full_emails, app, app_env, smtp, logs, mona_manager, adam_admin
):
    manager, admin = mona_manager, adam_admin
    salt = app.config["SETTINGS"].log_hash_salt
    redis_url = app_env["REDIS_URL"]
    manager_client = logged_in_client(app, MANAGER_EMAIL)
    admin_client = logged_in_client(app, ADMIN_EMAIL)

    # The manager prepares the campaign through the dashboard's pages.
    response = submit(manager_client, "/campaigns/new", {
        "name": "Log scan", "subject": "Hello {{ name }}",
        "body_text": "Hi {{ name }},\nthis message was sent to {{ email }}.\n", "body_html": "",
    })
    assert response.status_code in (302, 303), response.get_data(as_text=True)[:500]
    campaign = campaign_named("Log scan")
    page = submit(manager_client, f"/campaigns/{campaign.id}/recipients/import", {"text": IMPORT_CSV})
    assert page.status_code == 200 and "Import finished" in page.get_data(as_text=True)
    assert sorted(recipient_ids(campaign.id)) == sorted(CAMPAIGN_RECIPIENTS)

    response = submit(manager_client, f"/campaigns/{campaign.id}/test-email", {"to_address": TEST_ADDRESS})
    assert response.status_code == 303 and smtp.count_for(TEST_ADDRESS) == 1
    smtp.reply_for_address(REFUSED_TEST_ADDRESS, 550, f"5.1.1 <{REFUSED_TEST_ADDRESS}>: Recipient address rejected")
    refused = submit(manager_client, f"/campaigns/{campaign.id}/test-email", {"to_address": REFUSED_TEST_ADDRESS})
    assert refused.status_code == 400
    assert not [text for _, text in flashes(refused.get_data(as_text=True)) if REFUSED_TEST_ADDRESS in text]

    smtp.reply_for_address(BOB, 550, f"5.1.1 <{BOB}>: Recipient address rejected: User unknown")
    smtp.reply_for_address(DAVE, 554, f"5.7.1 Message to <{DAVE}> refused as spam", stage="data")
    smtp.reply_for_address(CAROL, 451, f"4.2.1 <{CAROL}>: mailbox busy, try again later")
    response = submit(manager_client, f"/campaigns/{campaign.id}/start", {"scheduled_at": ""})
    assert response.status_code == 303, response.get_data(as_text=True)[:500]

    # Alice is sent, Bob refused for good, Carol's 451 defers the campaign.
    run_worker(redis_url)
    current = fresh_campaign(campaign.id)
    assert (current.status, current.queue.defer_reason, current.queue.consecutive_transient_errors) == (
        "deferred", "transient_error", 1)

    # The retry finds Carol's mailbox still busy: the second transient error in a row trips the breaker.
    retry_delay_passes(campaign.id)
    run_worker(redis_url)
    current = fresh_campaign(campaign.id)
    assert (current.status, current.queue.defer_reason) == ("paused", "circuit_breaker")

    # The admin resumes; the hourly quota runs out before Erin.
    smtp.clear_faults()
    smtp.reply_for_address(DAVE, 554, f"5.7.1 Message to <{DAVE}> refused as spam", stage="data")
    admin_post(admin_client, f"/admin/campaigns/{campaign.id}/resume")
    run_worker(redis_url)
    current = fresh_campaign(campaign.id)
    assert (current.status, current.queue.defer_reason) == ("deferred", "rate_limit")
    assert recipient_statuses(campaign.id) == {"sent": 4, "failed": 2, "pending": 4}

    # Pause, all sending off, an hour later resume (it waits for the switch), sending back on: it finishes.
    admin_post(admin_client, f"/admin/campaigns/{campaign.id}/pause")
    admin_post(admin_client, "/admin/sending/pause")
    rolling_hour_passes()
    admin_post(admin_client, f"/admin/campaigns/{campaign.id}/resume")
    assert fresh_campaign(campaign.id).queue.defer_reason == "global_pause"
    admin_post(admin_client, "/admin/sending/resume")
    run_worker(redis_url)
    current = fresh_campaign(campaign.id)
    assert current.status == "finished" and current.finished_with_errors
    assert recipient_statuses(campaign.id) == {"sent": 8, "failed": 2}

    # A second campaign, started from its page, is cancelled by the admin before any worker runs it.
    second = create_campaign(manager, "Cancelled one", "Hi {{ name }}", "Body for {{ email }}\n", None)
    import_recipients(second, f"{JUDY},Judy J.\n{MANAGER_EMAIL},Mona M.\n")
    assert submit(manager_client, f"/campaigns/{second.id}/start", {"scheduled_at": ""}).status_code == 303
    admin_post(admin_client, f"/admin/campaigns/{second.id}/cancel", {"confirm": "yes"},
               page_url=f"/admin/campaigns/{second.id}/cancel")
    run_worker(redis_url)
    assert fresh_campaign(second.id).status == "cancelled" and smtp.count_for(JUDY) == 0

    logger.debug(f"Log scan canary for {CANARY}")  # a careless DEBUG line, as a call site might write one

    # --- every line: one JSON object with the core keys at top level ----------------------------
    lines = logs.parsed()
    assert len(lines) > 50
    levels = Counter(line.level for line in lines)
    assert levels["DEBUG"] and levels["INFO"] and levels["WARNING"] and levels["ERROR"], levels

    # --- no address leaks; PII fields per level ---------------------------------------------------
    assert_no_address_leaks(lines, EVERY_ADDRESS, full_emails=full_emails)
    assert_pii_fields_follow_the_level_policy(lines, full_emails=full_emails)
    canary = [line for line in lines if line.record["message"].startswith("Log scan canary")]
    assert len(canary) == 1 and canary[0].level == "DEBUG"
    if full_emails:
        assert CANARY in canary[0].record["message"]  # the opt-in really lets full addresses into DEBUG...
        assert leaks(canary, [CANARY])  # ...and the scan above would have seen one anywhere else
    else:
        assert canary[0].record["message"] == "Log scan canary for ***@example.com"  # ...and only then

    problems = catalogue_problems(
        logs, campaign_id=campaign.id, second_id=second.id, manager_id=manager.id, admin_id=admin.id,
        salt=salt, smtp=smtp,
    )
    assert not problems, "the logs break the SPEC's event catalogue:\n- " + "\n- ".join(problems)


def deliver_with_smtplib(smtp_url: str, address: str) -> None:
    """RQ job (test-only): one message through plain smtplib, whose refusal keeps the server's raw reply."""
    parts = urlsplit(smtp_url)
    with smtplib.SMTP(parts.hostname, parts.port, timeout=5) as client:
        client.sendmail("news@mailadmin.test", [address], b"Subject: probe\r\n\r\nprobe\r\n")


def test_an_smtp_reply_quoting_the_recipient_never_reaches_a_record_traceback_included(
    full_emails, app, app_env, smtp, logs
):
    smtp.reply_for_address(PROBE, 550, f"5.1.1 <{PROBE}>: Recipient address rejected: User unknown")

    # The product's transport: the error it raises already says "<recipient>".
    transport = PipelinedSmtpTransport.from_url(smtp.url, timeout=5)
    try:
        with pytest.raises(PermanentSendError) as refused:
            transport.send("news@mailadmin.test", PROBE, b"Subject: probe\r\n\r\nprobe\r\n")
    finally:
        transport.close()
    assert PROBE not in str(refused.value)
    try:
        raise refused.value
    except PermanentSendError:
        logger.bind(smtp_code=550).opt(exception=True).error("Probe: transport refused the recipient")

    # Raw smtplib: the exception's text and the traceback quote the address twice.
    with pytest.raises(smtplib.SMTPRecipientsRefused) as raw:
        deliver_with_smtplib(smtp.url, PROBE)
    assert PROBE in str(raw.value)
    try:
        raise RuntimeError(f"delivery to {PROBE} failed") from raw.value
    except RuntimeError:
        logger.opt(exception=True).error("Probe: loguru exception")
        logging.getLogger("mailadmin.probe").exception("Probe: stdlib exception")
        logging.getLogger("mailadmin.probe").warning("Probe: stdlib warning, exc_info", exc_info=True)
        logger.opt(exception=True).info("Probe: exception logged at INFO")

    # The same refusal failing an RQ job: RQ logs the job's arguments and the traceback itself.
    Queue(DEFAULT_QUEUE, connection=get_redis()).enqueue(deliver_with_smtplib, smtp.url, PROBE)
    run_worker(app_env["REDIS_URL"])

    lines = logs.parsed()
    assert_no_address_leaks(lines, [PROBE], full_emails=full_emails)
    assert_pii_fields_follow_the_level_policy(lines, full_emails=full_emails)
    with_exception = [line for line in lines if "exception" in line.record]
    assert {line.record["message"] for line in with_exception} >= {
        "Probe: transport refused the recipient", "Probe: loguru exception", "Probe: stdlib exception",
        "Probe: stdlib warning, exc_info", "Probe: exception logged at INFO",
    }
    for line in with_exception:
        exception = line.record["exception"]
        assert {"type", "value", "traceback"} <= set(exception)
        assert "Traceback (most recent call last)" in exception["traceback"]
    (loguru_error,) = [ln.record for ln in with_exception if ln.record["message"] == "Probe: loguru exception"]
    # The traceback is kept (chained cause included), the address in it masked as ERROR allows.
    assert "SMTPRecipientsRefused" in loguru_error["exception"]["traceback"]
    assert masked_form(PROBE) in loguru_error["exception"]["traceback"]
    assert masked_form(PROBE) in loguru_error["exception"]["value"]
    (info_record,) = [ln.record for ln in with_exception if ln.record["message"] == "Probe: exception logged at INFO"]
    assert "***@example.com" in info_record["exception"]["traceback"]
    rq_failure = [ln for ln in lines if ln.record["logger"].startswith("rq") and "SMTPRecipientsRefused" in ln.text]
    assert rq_failure and all(ln.level == "ERROR" for ln in rq_failure)
    assert any(masked_form(PROBE) in ln.text for ln in rq_failure)
