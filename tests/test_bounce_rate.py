"""bounce_rate: once a campaign has sent at least 100, hard bounces + complaints above
MAILER_BOUNCE_RATE_PAUSE_PERCENT of sent pause it — the send loop stops as after an admin pause —
and an admin resume continues it. Spam complaints alone have their own, lower line: above
MAILER_COMPLAINT_RATE_PAUSE_PERCENT (0.3 %) of at least 1,000 sent; the pause names the line it crossed."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
import threading

import pytest
from sqlalchemy import select

from mailadmin.extensions import db
from mailadmin.jobs.send import run_send_slice
from mailadmin.mail.bounces import BounceReport
from mailadmin.models import AuditEvent
from mailadmin.models.reasons import BounceRateTrip, PauseLine
from mailadmin.services.bounces import bounce_rate_trip, record_bounce
from mailadmin.webhooks import verify
from tests.factories import fresh_campaign, recipient_of, sent_campaign
from tests.support.bounces import SNS_TOPIC, SnsSigner, ses_bounce_notification, ses_complaint_notification
from tests.support.jobs import preserved_rq_loggers, run_queued_jobs
from tests.support.tcp_proxy import TcpProxy
from tests.support.waiting import wait_until
from tests.support.web import click, flashes

SENT = [f"reader{i:03d}@example.com" for i in range(200)]
PENDING = [f"later{i:02d}@example.net" for i in range(30)]


@pytest.fixture
def sns_signer(monkeypatch) -> SnsSigner:
    signer = SnsSigner.generate()
    verify.forget_sns_certificates()
    monkeypatch.setattr(verify, "download_certificate", lambda url: signer.pem)
    return signer


@pytest.fixture
def configured(app_env, request):
    app_env.update({"MAILER_WEBHOOK_SNS_TOPIC_ARNS": SNS_TOPIC, "MAILER_BOUNCE_ADDRESS": "bounces@mailadmin.test"})
    return request.getfixturevalue("app")


BOUNCES, COMPLAINTS = PauseLine.BOUNCE_RATE, PauseLine.COMPLAINT_RATE


@pytest.mark.parametrize(("sent", "bounced", "complained", "percent", "expected"), [
    (99, 50, 0, 5, None),  # fewer than 100 sent: not judged yet
    (200, 10, 0, 5, None),  # exactly 5 %: not above
    (200, 10, 1, 5, BOUNCES),
    (200, 11, 0, 5, BOUNCES),
    (1000, 900, 0, 0, None),  # 0 = off
])
def test_the_bounce_line(sent, bounced, complained, percent, expected):
    trip = bounce_rate_trip(sent, bounced, complained, bounce_percent=percent, complaint_percent=0)
    assert (trip.line if trip else None) is expected


@pytest.mark.parametrize(("sent", "bounced", "complained", "percent", "expected"), [
    (1000, 0, 3, 0.3, None),  # exactly 0.3 %: not above, as for the bounce line
    (1000, 0, 4, 0.3, COMPLAINTS),
    (999, 0, 4, 0.3, None),  # fewer than 1,000 sent: complaints alone are not judged yet
    (999, 0, 49, 0.3, None),  # ... even 4.9 % of them (under the 5 % bounce line)
    (1000, 0, 40, 0, None),  # 0 = off
    (3000, 0, 9, 0.3, None),
    (3000, 0, 10, 0.3, COMPLAINTS),
    (1000, 60, 4, 0.3, BOUNCES),  # both crossed: the bounce line is named
])
def test_the_complaint_line(sent, bounced, complained, percent, expected):
    trip = bounce_rate_trip(sent, bounced, complained, bounce_percent=5, complaint_percent=percent)
    assert (trip.line if trip else None) is expected


def test_a_trip_says_which_line_with_its_figures():
    trip = bounce_rate_trip(1000, 2, 4, bounce_percent=5, complaint_percent=0.3)
    assert trip == BounceRateTrip(COMPLAINTS, 1000, 2, 4, 0.3)
    assert trip.describe() == "spam complaints at 0.4 % of 1,000 sent (4), over the 0.3 % line"
    assert BounceRateTrip.from_details(trip.details()) == trip
    bounces = BounceRateTrip(BOUNCES, 200, 10, 1, 5)
    assert bounces.describe() == "hard bounces and complaints at 5.5 % of 200 sent (11), over the 5 % line"
    # An audit row from before the complaint line had no `tripped_by`: it was the bounce line.
    assert BounceRateTrip.from_details({"sent": 200, "bounced": 11, "complained": 0, "threshold_percent": 5}) == (
        BounceRateTrip(BOUNCES, 200, 11, 0, 5)
    )


def test_eleven_hard_bounces_of_200_sent_pause_the_campaign_until_an_admin_resumes_it(
    configured, admin_client, sns_signer, make_user, smtp, app_env
):
    campaign = sent_campaign(make_user("owner@example.com"), SENT, pending=PENDING)
    client = configured.test_client()
    for number, address in enumerate(SENT[:11], start=1):
        message = sns_signer.sign(ses_bounce_notification([address], recipient_of(campaign, address).smtp_message_id))
        response = client.post("/webhooks/ses", data=json.dumps(message))
        assert response.status_code == 200
        expected = "paused" if number == 11 else "sending"
        assert fresh_campaign(campaign.id).status == expected, number

    paused = fresh_campaign(campaign.id)
    assert (paused.bounced_count, paused.queue.defer_reason) == (11, "bounce_rate")
    audit = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "bounce_rate_paused"))
    assert audit.details == {"tripped_by": "bounce_rate", "sent": 200, "bounced": 11, "complained": 0,
                             "rate_percent": 5.5, "threshold_percent": 5}

    # The send loop stops exactly as after an admin pause.
    report = run_send_slice(campaign.id)
    assert str(report.outcome).startswith("skipped") and report.sent == 0
    assert smtp.messages == []
    page = f"/campaigns/{campaign.id}"
    html = admin_client.get(page).get_data(as_text=True)
    assert "Paused: hard bounces and complaints at 5.5 % of 200 sent (11), over the 5 % line" in html
    assert '<span data-bind="bounced" id="bounced-count">11</span> bounced' in html
    assert admin_client.get(f"{page}/progress.json").json["bounced"] == 11
    assert "11 bounced" in admin_client.get("/campaigns").get_data(as_text=True)
    chart = admin_client.get(f"{page}/sends-per-hour.svg").get_data(as_text=True)
    assert 'class="bounced"' in chart and "11 of them bounced or drew a complaint" in chart
    export = list(csv.reader(io.StringIO(admin_client.get(f"{page}/results.csv").get_data(as_text=True))))
    assert export[0] == ["email", "name", "status", "attempts", "smtp_code", "last_error", "soft_bounces", "sent_at"]
    assert sum(1 for row in export if row[2] == "bounced") == 11

    html = click(admin_client, page, f"/admin/campaigns/{campaign.id}/resume", {"next": page}).get_data(as_text=True)
    assert any("resumed" in text for _, text in flashes(html))
    with preserved_rq_loggers():
        run_queued_jobs(app_env["REDIS_URL"])
    done = fresh_campaign(campaign.id)
    assert done.status == "finished" and done.sent_count == 230
    assert sorted(rcpt for message in smtp.messages for rcpt in message.rcpt_tos) == sorted(PENDING)
    # Each message went out with its own signed VERP return path.
    senders = {message.mail_from for message in smtp.messages}
    assert len(senders) == len(PENDING)
    assert all(sender.startswith("bounces+") and sender.endswith("@mailadmin.test") for sender in senders)


def test_a_bounce_rate_pause_stops_a_running_slice_before_its_next_message(configured, make_user, smtp):
    """The pause lands while a slice is sending: it stops between messages, as after an admin pause."""
    app = configured
    campaign = sent_campaign(make_user("owner@example.com"), SENT, pending=PENDING)
    for number, address in enumerate(SENT[:10]):  # 10 of 200 is exactly 5 %: not yet above
        record_bounce(BounceReport(address, "hard", "ses", f"mid-send-{number}"))
    connections = app.config["SETTINGS"].smtp_connections
    smtp.delay_per_message(1.0)  # every connection waits a second for each message's final reply
    reports = []

    def send() -> None:
        with app.app_context():
            reports.append(run_send_slice(campaign.id))

    # "Began" is counted on the wire: a connection writes a message's MAIL FROM together with the
    # previous body, and the server reads it only after answering that body a second later.
    wire = TcpProxy("127.0.0.1", smtp.port, watch=b"MAIL FROM:").start()
    app.config["SETTINGS"] = dataclasses.replace(app.config["SETTINGS"], smtp_url=f"smtp://127.0.0.1:{wire.port}")
    worker = threading.Thread(target=send)
    worker.start()
    # After the first reply (slow start) every connection opens: wait until each has a message in flight.
    wait_until(lambda: smtp.unanswered >= connections, 20, 0.01, "every connection busy")
    record_bounce(BounceReport(SENT[10], "hard", "ses", "mid-send-10"))  # the 11th: above 5 %, the pause
    started_at_pause = wire.seen
    worker.join(timeout=30)
    wire.stop()
    assert not worker.is_alive()
    assert str(reports[0].outcome) == "stopped:paused"
    assert wire.seen == started_at_pause < len(PENDING)  # no connection began another message
    # Those whose body was out were delivered; one whose envelope had gone out with the previous body
    # but not its own body was taken back (the connection closed in its DATA): at most one per connection.
    delivered = len(smtp.messages)
    assert started_at_pause - connections <= delivered <= started_at_pause
    paused = fresh_campaign(campaign.id)
    assert paused.queue.defer_reason == "bounce_rate" and paused.sent_count == len(SENT) + delivered


SENT_1000 = [f"reader{i:04d}@example.com" for i in range(1000)]


def complain(client, signer: SnsSigner, campaign, addresses) -> None:
    """Spam complaints through the real SES webhook, one notification each."""
    for address in addresses:
        message = signer.sign(ses_complaint_notification(address, recipient_of(campaign, address).smtp_message_id))
        assert client.post("/webhooks/ses", data=json.dumps(message)).status_code == 200


def test_four_complaints_in_1000_sent_pause_the_campaign_naming_the_complaint_rate(
    configured, admin_client, sns_signer, make_user, log_records
):
    campaign = sent_campaign(make_user("owner@example.com"), SENT_1000, pending=PENDING)
    client = configured.test_client()
    complain(client, sns_signer, campaign, SENT_1000[:3])
    assert fresh_campaign(campaign.id).status == "sending"  # 3 of 1,000 is exactly 0.3 %: not over

    complain(client, sns_signer, campaign, SENT_1000[3:4])

    paused = fresh_campaign(campaign.id)
    assert (paused.status, paused.queue.defer_reason, paused.complained_count) == ("paused", "bounce_rate", 4)
    words = "spam complaints at 0.4 % of 1,000 sent (4), over the 0.3 % line"
    expected = {"tripped_by": "complaint_rate", "sent": 1000, "bounced": 0, "complained": 4,
                "rate_percent": 0.4, "threshold_percent": 0.3}
    audit = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "bounce_rate_paused"))
    assert audit.details == expected
    record = next(r for r in log_records if r["message"] == "Campaign paused (bounce rate too high)")
    assert {key: record["extra"][key] for key in expected} == expected
    assert record["extra"]["defer_reason"] == "bounce_rate"

    page = f"/campaigns/{campaign.id}"
    assert f"Paused: {words} — only an admin can resume it" in admin_client.get(page).get_data(as_text=True)
    assert admin_client.get(f"{page}/progress.json").json["reason_text"].startswith(f"Paused: {words}")
    operations = admin_client.get("/admin/operations").get_data(as_text=True)
    row = re.search(rf'<tr data-campaign-id="{campaign.id}">.*?</tr>', operations, re.S).group(0)
    assert "bounce_rate" in row and words in row
    assert f"#{campaign.id}: {words}" in operations  # the check's summary, as `flask doctor` prints it
    audit_page = admin_client.get("/admin/audit").get_data(as_text=True)
    assert "complaint_rate" in audit_page and "0.4" in audit_page


def test_complaints_are_not_judged_alone_below_1000_sent(configured, sns_signer, make_user):
    campaign = sent_campaign(make_user("owner@example.com"), SENT_1000[:999], pending=PENDING)
    complain(configured.test_client(), sns_signer, campaign, SENT_1000[:40])  # 4 %: under the 5 % bounce line
    assert fresh_campaign(campaign.id).status == "sending"


@pytest.fixture
def complaint_line_off(app_env):
    app_env["MAILER_COMPLAINT_RATE_PAUSE_PERCENT"] = "0"


def test_a_complaint_line_of_0_is_off_and_bounces_still_pause_at_5_percent(
    complaint_line_off, configured, sns_signer, make_user
):
    campaign = sent_campaign(make_user("owner@example.com"), SENT_1000, pending=PENDING)
    client = configured.test_client()
    complain(client, sns_signer, campaign, SENT_1000[:40])  # 4 % complaints: the complaint line is off
    assert fresh_campaign(campaign.id).status == "sending"
    for address in SENT_1000[40:51]:  # 40 complaints + 11 hard bounces = 5.1 %
        record_bounce(BounceReport(address, "hard", "ses", f"hard-{address}"))
    paused = fresh_campaign(campaign.id)
    assert (paused.status, paused.queue.defer_reason) == ("paused", "bounce_rate")
    audit = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "bounce_rate_paused"))
    assert audit.details["tripped_by"] == "bounce_rate" and audit.details["rate_percent"] == 5.1
