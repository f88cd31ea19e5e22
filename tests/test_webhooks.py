"""Provider webhooks with real signed payloads: valid ones are applied once, and an identical
redelivery is answered 200 without applying it again; forged, wrong-key, stale ones and an id reused
with another body are refused and change nothing. For SNS only the certificate download
(the network edge) is replaced, by a certificate this test generates."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass

import pytest
from sqlalchemy import func, select

from mailadmin.extensions import db, get_redis
from mailadmin.limits import replay
from mailadmin.limits.replay import DeliveryClaim
from mailadmin.models import BounceEvent, Campaign, Suppression
from mailadmin.webhooks import verify
from tests.factories import recipient_of, sent_campaign
from tests.support.bounces import (
    SNS_REGION,
    SendGridSigner,
    SnsSigner,
    mailgun_payload,
    postmark_bounce,
    sendgrid_event,
    ses_bounce_notification,
    ses_complaint_notification,
    sns_timestamp,
)
from tests.support.bounces import SNS_TOPIC as TOPIC
from tests.support.log_capture import capture_json_logs

MAILGUN_KEY = "key-" + "m" * 32
POSTMARK_SECRET = "postmark-" + "p" * 24
ALICE, BOB = "alice@example.com", "bob@example.org"


@pytest.fixture
def sns_signer(monkeypatch) -> SnsSigner:
    signer = SnsSigner.generate()
    downloads: list[str] = []

    def download(url: str) -> bytes:
        downloads.append(url)
        return signer.pem

    verify.forget_sns_certificates()
    monkeypatch.setattr(verify, "download_certificate", download)
    signer.downloads = downloads
    yield signer
    verify.forget_sns_certificates()


@pytest.fixture
def sendgrid_signer() -> SendGridSigner:
    return SendGridSigner.generate()


@pytest.fixture
def client(app_env, sendgrid_signer, request):
    app_env.update({
        "MAILER_WEBHOOK_SNS_TOPIC_ARNS": TOPIC,
        "MAILER_WEBHOOK_SENDGRID_PUBLIC_KEY": sendgrid_signer.public_key_b64,
        "MAILER_WEBHOOK_POSTMARK_SECRET": POSTMARK_SECRET,
        "MAILER_WEBHOOK_MAILGUN_SIGNING_KEY": MAILGUN_KEY,
    })
    app = request.getfixturevalue("app")
    return app.test_client()


@pytest.fixture
def campaign(client, make_user) -> Campaign:
    return sent_campaign(make_user("owner@example.com"), [ALICE, BOB])


def state(campaign: Campaign) -> tuple:
    """Everything a bounce may change, to prove that a refused request changed nothing."""
    db.session.expire_all()
    row = db.session.get(Campaign, campaign.id)
    return (row.bounced_count, row.complained_count, recipient_of(campaign, ALICE).status,
            db.session.scalar(select(func.count()).select_from(Suppression)),
            db.session.scalar(select(func.count()).select_from(BounceEvent)))


def post_sns(client, message: dict):
    return client.post("/webhooks/ses", data=json.dumps(message), content_type="text/plain; charset=UTF-8")


# --- routes exist only when configured ---------------------------------------------------------


def test_a_provider_without_its_secret_has_no_route(app):
    client = app.test_client()
    for provider in ("ses", "sendgrid", "postmark", "mailgun"):
        assert client.post(f"/webhooks/{provider}", data="{}").status_code == 404


def test_webhooks_need_no_csrf_token_but_every_other_post_does(client):
    assert client.post("/login", data={"email": "x@example.com", "password": "x"}).status_code == 400


# --- Amazon SES through SNS --------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1", "2"])
def test_a_signed_ses_bounce_marks_the_recipient_bounced_and_suppresses_once(client, campaign, sns_signer, version):
    alice = recipient_of(campaign, ALICE)
    message = sns_signer.sign(ses_bounce_notification([ALICE], alice.smtp_message_id), version)
    response = post_sns(client, message)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.json == {"applied": 1, "duplicates": 0}
    assert state(campaign) == (1, 0, "bounced", 1, 1)
    entry = db.session.scalar(select(Suppression))
    assert (entry.email, entry.reason, entry.source, entry.campaign_id) == (ALICE, "hard_bounce", "ses", campaign.id)
    # SNS re-delivers the same message: answered 200, nothing changes.
    assert post_sns(client, message).json == {"already_applied": True, "applied": 0, "duplicates": 1}
    assert state(campaign) == (1, 0, "bounced", 1, 1)
    assert sns_signer.downloads == ["https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem"]


def test_a_signed_ses_complaint_marks_the_recipient_complained(client, campaign, sns_signer):
    alice = recipient_of(campaign, ALICE)
    assert post_sns(client, sns_signer.sign(ses_complaint_notification(ALICE, alice.smtp_message_id))).status_code == 200
    assert state(campaign) == (0, 1, "complained", 1, 1)
    assert db.session.scalar(select(Suppression.reason)) == "complaint"


def test_an_ses_soft_bounce_only_counts_until_the_third_in_thirty_days(client, campaign, sns_signer):
    for expected_suppressions in (0, 0, 1):
        message = sns_signer.sign(ses_bounce_notification([ALICE], None, bounce_type="Transient"))
        assert post_sns(client, message).status_code == 200
        assert db.session.scalar(select(func.count()).select_from(Suppression)) == expected_suppressions
    assert recipient_of(campaign, ALICE).soft_bounce_count == 3
    assert recipient_of(campaign, ALICE).status == "sent"
    assert db.session.scalar(select(Suppression.reason)) == "soft_bounces"


def test_forged_wrong_key_stale_and_unknown_topic_sns_messages_are_refused(client, campaign, sns_signer, app):
    alice = recipient_of(campaign, ALICE)
    before = state(campaign)
    forged = sns_signer.sign(ses_bounce_notification([ALICE], alice.smtp_message_id))
    forged["Message"] = forged["Message"].replace(ALICE, BOB)
    wrong_key = SnsSigner.generate().sign(ses_bounce_notification([ALICE], alice.smtp_message_id))
    stale = sns_signer.sign(ses_bounce_notification([ALICE], alice.smtp_message_id, age_seconds=600))
    other_topic = sns_signer.sign({**ses_bounce_notification([ALICE], None),
                                   "TopicArn": f"arn:aws:sns:{SNS_REGION}:999999999999:evil"})
    unsigned = ses_bounce_notification([ALICE], alice.smtp_message_id)
    with capture_json_logs(app) as logs:
        for message, reason in ((forged, "bad_signature"), (wrong_key, "bad_signature"), (stale, "stale"),
                                (other_topic, "unknown_topic"), (unsigned, "missing_credentials")):
            response = post_sns(client, message)
            assert response.status_code in (401, 403)
            assert response.json == {"error": reason}
            assert state(campaign) == before
    refusals = logs.events("Webhook refused")
    assert len(refusals) == 5
    assert ALICE not in "".join(line.text for line in logs.parsed())


@pytest.mark.parametrize("url", [
    "http://sns.eu-west-1.amazonaws.com/cert.pem",
    "https://sns.eu-west-1.amazonaws.com.evil.example/cert.pem",
    "https://evil.example/sns.eu-west-1.amazonaws.com/cert.pem",
    "https://sns.eu-west-1.amazonaws.com@evil.example/cert.pem",
    "https://user:pw@sns.eu-west-1.amazonaws.com/cert.pem",
    "https://sns.eu-west-1.amazonaws.com:8443/cert.pem",
    "https://sns-eu-west-1.amazonaws.com/cert.pem",
    "https://sns.us-east-1.amazonaws.com/cert.pem",  # not the topic's region
    "https://s3.amazonaws.com/sns.eu-west-1.amazonaws.com/cert.pem",
    "https://sns.eu-west-1.amazonaws.com\\@evil.example/cert.pem",
    "file:///etc/passwd",
    "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=x",  # not a certificate
])
def test_a_signing_certificate_is_only_fetched_from_an_sns_host(client, campaign, sns_signer, url):
    message = sns_signer.sign({**ses_bounce_notification([ALICE], None), "SigningCertURL": url})
    response = post_sns(client, message)
    assert response.status_code == 403
    assert response.json == {"error": "untrusted_certificate_url"}
    assert sns_signer.downloads == []


def test_a_subscription_is_confirmed_only_at_an_sns_host(client, sns_signer, monkeypatch):
    visited: list[str] = []
    monkeypatch.setattr(verify, "confirm_sns_subscription", visited.append)
    confirmation = {"Type": "SubscriptionConfirmation", "MessageId": "m-1", "Token": "t" * 40, "TopicArn": TOPIC,
                    "Message": "You have chosen to subscribe to the topic.", "Timestamp": ses_bounce_notification(
                        [], None)["Timestamp"]}
    good = f"https://sns.{SNS_REGION}.amazonaws.com/?Action=ConfirmSubscription&TopicArn={TOPIC}&Token=tttt"
    hostile = sns_signer.sign({**confirmation, "SubscribeURL": "https://evil.example/?Action=ConfirmSubscription"})
    assert post_sns(client, hostile).status_code == 403
    assert visited == []
    assert post_sns(client, sns_signer.sign({**confirmation, "SubscribeURL": good})).status_code == 200
    assert visited == [good]


# --- SendGrid ------------------------------------------------------------------------------------


def test_signed_sendgrid_events_are_applied_and_forgeries_refused(client, campaign, sendgrid_signer):
    alice, bob = recipient_of(campaign, ALICE), recipient_of(campaign, BOB)
    body = json.dumps([sendgrid_event(ALICE, alice.smtp_message_id),
                       sendgrid_event(BOB, bob.smtp_message_id, event="spamreport"),
                       {"email": BOB, "event": "delivered", "sg_event_id": "x"}]).encode()
    before = state(campaign)
    forged_headers = sendgrid_signer.headers(body)
    wrong_key = SendGridSigner.generate().headers(body)
    stale = sendgrid_signer.headers(body, age_seconds=600)
    for headers, payload in ((forged_headers, body.replace(b"bounce", b"bounced")), (wrong_key, body),
                             (stale, body), ({"Content-Type": "application/json"}, body)):
        response = client.post("/webhooks/sendgrid", data=payload, headers=headers)
        assert response.status_code in (401, 403)
        assert state(campaign) == before
    headers = sendgrid_signer.headers(body)
    response = client.post("/webhooks/sendgrid", data=body, headers=headers)
    assert response.status_code == 200
    assert response.json == {"applied": 2, "duplicates": 0}
    assert state(campaign) == (1, 1, "bounced", 2, 2)
    assert recipient_of(campaign, BOB).status == "complained"
    redelivery = client.post("/webhooks/sendgrid", data=body, headers=headers)
    assert (redelivery.status_code, redelivery.json) == (200, {"already_applied": True, "applied": 0, "duplicates": 2})
    assert state(campaign) == (1, 1, "bounced", 2, 2)


def test_the_same_sendgrid_event_signed_again_changes_nothing(client, campaign, sendgrid_signer):
    """Idempotent beyond replay protection: a re-sent event (new signature, same sg_event_id) is a duplicate."""
    body = json.dumps([sendgrid_event(ALICE, recipient_of(campaign, ALICE).smtp_message_id)]).encode()
    assert client.post("/webhooks/sendgrid", data=body, headers=sendgrid_signer.headers(body)).json["applied"] == 1
    again = client.post("/webhooks/sendgrid", data=body, headers=sendgrid_signer.headers(body, age_seconds=1))
    assert again.json == {"applied": 0, "duplicates": 1}
    assert state(campaign) == (1, 0, "bounced", 1, 1)


@pytest.fixture
def one_mb_bodies(app_env):
    app_env["MAILER_MAX_UPLOAD_MB"] = "1"


def test_an_oversized_webhook_is_answered_413_with_problem_details_and_changes_nothing(
    one_mb_bodies, client, campaign, sendgrid_signer
):
    events = [sendgrid_event(ALICE, recipient_of(campaign, ALICE).smtp_message_id)]
    events += [{"email": BOB, "event": "delivered", "sg_event_id": f"d{n}", "padding": "x" * 200} for n in range(6000)]
    body = json.dumps(events).encode()
    assert len(body) > 1024 * 1024
    before = state(campaign)
    response = client.post("/webhooks/sendgrid", data=body, headers=sendgrid_signer.headers(body))
    assert response.status_code == 413
    assert response.mimetype == "application/problem+json"
    assert response.json == {"type": "about:blank", "title": "Request Entity Too Large", "status": 413,
                             "detail": "The request body is larger than 1 MB. Nothing was stored."}
    assert "Location" not in response.headers
    assert state(campaign) == before
    assert get_redis().keys("mailadmin:webhook-delivery:*") == []


# --- Mailgun -------------------------------------------------------------------------------------


def test_signed_mailgun_events_are_applied_and_forgeries_refused(client, campaign):
    message_id = recipient_of(campaign, ALICE).smtp_message_id
    before = state(campaign)
    forged = mailgun_payload(MAILGUN_KEY, ALICE, message_id)
    forged["signature"]["signature"] = "0" * 64
    for payload in (forged, mailgun_payload("key-" + "w" * 32, ALICE, message_id),
                    mailgun_payload(MAILGUN_KEY, ALICE, message_id, age_seconds=600),
                    {"event-data": mailgun_payload(MAILGUN_KEY, ALICE, message_id)["event-data"]}):
        response = client.post("/webhooks/mailgun", json=payload)
        assert response.status_code in (401, 403)
        assert state(campaign) == before
    valid = mailgun_payload(MAILGUN_KEY, ALICE, message_id)
    assert client.post("/webhooks/mailgun", json=valid).status_code == 200
    assert state(campaign) == (1, 0, "bounced", 1, 1)
    # A token is never accepted twice, even for another event.
    reused = mailgun_payload(MAILGUN_KEY, BOB, None, event="complained")
    reused["signature"] = valid["signature"]
    assert client.post("/webhooks/mailgun", json=reused).status_code == 403
    assert recipient_of(campaign, BOB).status == "sent"


# --- Postmark ------------------------------------------------------------------------------------


def test_postmark_needs_its_secret_in_basic_auth_or_the_header(client, campaign):
    before = state(campaign)
    payload = postmark_bounce(ALICE)
    wrong = base64.b64encode(b"postmark:not-the-secret-at-all").decode()
    assert client.post("/webhooks/postmark", json=payload).status_code == 401
    assert client.post("/webhooks/postmark", json=payload, headers={"Authorization": f"Basic {wrong}"}).status_code == 403
    assert client.post("/webhooks/postmark", json=payload,
                       headers={verify.POSTMARK_SECRET_HEADER: "not-the-secret-at-all"}).status_code == 403
    assert state(campaign) == before
    good = base64.b64encode(f"postmark:{POSTMARK_SECRET}".encode()).decode()
    assert client.post("/webhooks/postmark", json=payload, headers={"Authorization": f"Basic {good}"}).status_code == 200
    assert state(campaign) == (1, 0, "bounced", 1, 1)
    redelivery = client.post("/webhooks/postmark", json=payload, headers={verify.POSTMARK_SECRET_HEADER: POSTMARK_SECRET})
    assert (redelivery.status_code, redelivery.json["already_applied"]) == (200, True)
    assert state(campaign) == (1, 0, "bounced", 1, 1)
    complaint = postmark_bounce(BOB, kind="SpamComplaint", record="SpamComplaint")
    assert client.post("/webhooks/postmark", json=complaint,
                       headers={verify.POSTMARK_SECRET_HEADER: POSTMARK_SECRET}).status_code == 200
    assert recipient_of(campaign, BOB).status == "complained"


def test_bounce_and_complaint_events_carry_their_fields_and_no_address(client, campaign, sns_signer, app):
    from tests.support.log_capture import leaks

    alice, bob = recipient_of(campaign, ALICE), recipient_of(campaign, BOB)
    with capture_json_logs(app) as logs:
        post_sns(client, sns_signer.sign(ses_bounce_notification([ALICE], alice.smtp_message_id)))
        post_sns(client, sns_signer.sign(ses_complaint_notification(BOB, bob.smtp_message_id)))
    expected = {"campaign_id", "recipient_id", "email_domain", "email_masked", "email_hash", "source", "bounce_type"}
    (bounce,), (complaint,) = logs.events("Bounce recorded"), logs.events("Complaint recorded")
    assert expected <= bounce.keys() and expected <= complaint.keys()
    assert (bounce["campaign_id"], bounce["recipient_id"], bounce["source"], bounce["bounce_type"]) == (
        campaign.id, alice.id, "ses", "hard")
    assert (complaint["recipient_id"], complaint["bounce_type"], complaint["email_masked"]) == (
        bob.id, "complaint", "bo***@example.org")
    assert leaks(logs.parsed(), [ALICE, BOB]) == []


def test_an_unreachable_sns_certificate_is_answered_503_so_sns_retries(client, campaign, monkeypatch):
    def unreachable(url: str) -> bytes:
        raise OSError("network is unreachable")

    verify.forget_sns_certificates()
    monkeypatch.setattr(verify, "download_certificate", unreachable)
    message = SnsSigner.generate().sign(ses_bounce_notification([ALICE], None))
    before = state(campaign)
    response = post_sns(client, message)
    assert (response.status_code, response.json) == (503, {"error": "sns_unreachable"})
    assert state(campaign) == before


# --- redeliveries: identical ones answered 200, applied once; forged and stale ones refused -------


@dataclass
class Deliveries:
    """One provider's real requests about ALICE's bounce: the first, and two that reuse its id."""

    first: tuple[str, dict]  # (url, keyword arguments of client.post); sent again = an identical redelivery
    forged: tuple[str, dict]  # the same delivery id (or signature) with another body: BOB complained
    forged_refusal: str
    stale: tuple[str, dict] | None  # the same delivery signed long ago (Postmark signs nothing: none)


def _sns(message: dict) -> tuple[str, dict]:
    return "/webhooks/ses", {"data": json.dumps(message), "content_type": "text/plain; charset=UTF-8"}


def _ses_deliveries(campaign, signer: SnsSigner) -> Deliveries:
    notification = ses_bounce_notification([ALICE], recipient_of(campaign, ALICE).smtp_message_id)
    other = ses_complaint_notification(BOB, recipient_of(campaign, BOB).smtp_message_id)["Message"]
    return Deliveries(_sns(signer.sign(notification)), _sns(signer.sign({**notification, "Message": other})),
                      "replayed", _sns(signer.sign({**notification, "Timestamp": sns_timestamp(600)})))


def _sendgrid_deliveries(campaign, signer: SendGridSigner) -> Deliveries:
    body = json.dumps([sendgrid_event(ALICE, recipient_of(campaign, ALICE).smtp_message_id)]).encode()
    other = json.dumps([sendgrid_event(BOB, None, event="spamreport")]).encode()
    headers = signer.headers(body)
    url = "/webhooks/sendgrid"
    # SendGrid signs the body: another body under the same signature fails the signature itself.
    return Deliveries((url, {"data": body, "headers": headers}), (url, {"data": other, "headers": headers}),
                      "bad_signature", (url, {"data": body, "headers": signer.headers(body, age_seconds=600)}))


def _postmark_deliveries(campaign) -> Deliveries:
    payload = postmark_bounce(ALICE)
    headers = {verify.POSTMARK_SECRET_HEADER: POSTMARK_SECRET}
    forged = {**postmark_bounce(BOB, kind="SpamComplaint", record="Bounce"), "ID": payload["ID"], "Type": "HardBounce"}
    return Deliveries(("/webhooks/postmark", {"json": payload, "headers": headers}),
                      ("/webhooks/postmark", {"json": forged, "headers": headers}), "replayed", None)


def _mailgun_deliveries(campaign) -> Deliveries:
    payload = mailgun_payload(MAILGUN_KEY, ALICE, recipient_of(campaign, ALICE).smtp_message_id)
    # Mailgun signs timestamp + token only: a captured signature block fits any event-data.
    forged = {**mailgun_payload(MAILGUN_KEY, BOB, None, event="complained"), "signature": payload["signature"]}
    token, old = payload["signature"]["token"], str(int(time.time()) - 600)
    stale_signature = hmac.new(MAILGUN_KEY.encode(), (old + token).encode(), hashlib.sha256).hexdigest()
    stale = {**payload, "signature": {"timestamp": old, "token": token, "signature": stale_signature}}
    return Deliveries(("/webhooks/mailgun", {"json": payload}), ("/webhooks/mailgun", {"json": forged}), "replayed",
                      ("/webhooks/mailgun", {"json": stale}))


@pytest.fixture
def deliveries(campaign, sns_signer, sendgrid_signer):
    def build(provider: str) -> Deliveries:
        if provider == "ses":
            return _ses_deliveries(campaign, sns_signer)
        if provider == "sendgrid":
            return _sendgrid_deliveries(campaign, sendgrid_signer)
        return _postmark_deliveries(campaign) if provider == "postmark" else _mailgun_deliveries(campaign)

    return build


def post(client, request: tuple[str, dict]):
    url, kwargs = request
    return client.post(url, **kwargs)


PROVIDERS = ["ses", "sendgrid", "postmark", "mailgun"]
APPLIED_ONCE = (1, 0, "bounced", 1, 1)  # one bounce counted, ALICE bounced, one suppression, one BounceEvent


@pytest.mark.parametrize("provider", PROVIDERS)
def test_an_identical_redelivery_is_applied_once_and_answered_200(client, campaign, deliveries, provider, app):
    delivery = deliveries(provider)
    with capture_json_logs(app) as logs:
        first = post(client, delivery.first)
        assert (first.status_code, first.json) == (200, {"applied": 1, "duplicates": 0})
        for _ in range(2):  # the provider lost our 2xx, twice
            again = post(client, delivery.first)
            assert (again.status_code, again.json) == (200, {"already_applied": True, "applied": 0, "duplicates": 1})
    assert state(campaign) == APPLIED_ONCE
    assert [record["provider"] for record in logs.events("Webhook delivery already applied")] == [provider] * 2
    assert len(logs.events("Bounce recorded")) == 1


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_forged_replay_under_the_same_id_stays_refused(client, campaign, deliveries, provider):
    delivery = deliveries(provider)
    assert post(client, delivery.first).status_code == 200
    forged = post(client, delivery.forged)
    assert (forged.status_code, forged.json) == (403, {"error": delivery.forged_refusal})
    assert state(campaign) == APPLIED_ONCE
    assert recipient_of(campaign, BOB).status == "sent"
    # The forgery changed nothing the real provider's redelivery relies on.
    assert post(client, delivery.first).json["already_applied"] is True


@pytest.mark.parametrize("provider", ["ses", "sendgrid", "mailgun"])
def test_a_stale_redelivery_stays_refused(client, campaign, deliveries, provider):
    delivery = deliveries(provider)
    assert post(client, delivery.first).status_code == 200
    stale = post(client, delivery.stale)
    assert (stale.status_code, stale.json) == (403, {"error": "stale"})
    assert state(campaign) == APPLIED_ONCE


def test_a_stale_first_delivery_is_refused_and_applies_nothing(client, campaign, deliveries):
    before = state(campaign)
    stale = post(client, deliveries("mailgun").stale)
    assert (stale.status_code, stale.json) == (403, {"error": "stale"})
    assert state(campaign) == before


# --- the replay store itself (real Redis) ---------------------------------------------------------


def test_a_delivery_is_first_then_in_progress_then_applied_and_another_body_conflicts(app):
    redis, ttl = get_redis(), 3600
    same, other = replay.delivery_fingerprint(b"body"), replay.delivery_fingerprint(b"other body")
    assert replay.claim_delivery(redis, "ses", "m-1", same, ttl) is DeliveryClaim.FIRST
    # Another request delivers it again while the first is still applying it: the provider must retry.
    assert replay.claim_delivery(redis, "ses", "m-1", same, ttl) is DeliveryClaim.IN_PROGRESS
    assert replay.claim_delivery(redis, "ses", "m-1", other, ttl) is DeliveryClaim.CONFLICT
    replay.mark_delivery_applied(redis, "ses", "m-1", same, ttl)
    assert replay.claim_delivery(redis, "ses", "m-1", same, ttl) is DeliveryClaim.ALREADY_APPLIED
    assert replay.claim_delivery(redis, "ses", "m-1", other, ttl) is DeliveryClaim.CONFLICT
    assert replay.claim_delivery(redis, "mailgun", "m-1", other, ttl) is DeliveryClaim.FIRST  # ids are per provider
    assert 0 < redis.ttl(replay._key("ses", "m-1")) <= ttl


def test_a_claim_left_pending_by_a_dead_process_is_taken_over(app):
    redis, fingerprint = get_redis(), replay.delivery_fingerprint(b"body")
    started = time.time()
    assert replay.claim_delivery(redis, "postmark", "Bounce:1", fingerprint, 3600, now=started) is DeliveryClaim.FIRST
    later = started + replay.PENDING_TAKEOVER_SECONDS
    assert replay.claim_delivery(redis, "postmark", "Bounce:1", fingerprint, 3600, now=later) is DeliveryClaim.FIRST
    assert replay.claim_delivery(redis, "postmark", "Bounce:1", fingerprint, 3600, now=later + 1) is (
        DeliveryClaim.IN_PROGRESS)


def test_a_delivery_id_stored_by_the_previous_version_is_never_applied_again(app):
    redis = get_redis()
    redis.set(replay._key("sendgrid", "sig"), "1", ex=60)
    assert replay.claim_delivery(redis, "sendgrid", "sig", replay.delivery_fingerprint(b"x"), 60) is (
        DeliveryClaim.CONFLICT)
