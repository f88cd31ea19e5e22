"""Signed provider payloads for the webhook tests, and a scan of every text column for an address."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from mailadmin.extensions import db
from mailadmin.webhooks.verify import sns_string_to_sign

SNS_REGION = "eu-west-1"
SNS_TOPIC = f"arn:aws:sns:{SNS_REGION}:123456789012:ses-bounces"
SNS_CERT_URL = f"https://sns.{SNS_REGION}.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem"


# --- Amazon SNS -------------------------------------------------------------------------------


@dataclass
class SnsSigner:
    """A signing certificate the test generates, standing in for the one SNS serves."""

    key: rsa.RSAPrivateKey
    pem: bytes

    @classmethod
    def generate(cls) -> SnsSigner:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30)).sign(key, hashes.SHA256())
        )
        return cls(key, cert.public_bytes(serialization.Encoding.PEM))

    def sign(self, message: dict, version: str = "2") -> dict:
        message = {**message, "SignatureVersion": version, "SigningCertURL": message.get("SigningCertURL", SNS_CERT_URL)}
        algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
        signature = self.key.sign(sns_string_to_sign(message), padding.PKCS1v15(), algorithm)
        message["Signature"] = base64.b64encode(signature).decode("ascii")
        return message


def sns_timestamp(age_seconds: float = 0) -> str:
    moment = datetime.now(UTC) - timedelta(seconds=age_seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def ses_bounce_notification(addresses: list[str], message_id: str | None, bounce_type: str = "Permanent",
                            age_seconds: float = 0) -> dict:
    """An SNS Notification carrying an SES bounce (fields as AWS documents them), unsigned."""
    ses = {
        "notificationType": "Bounce",
        "bounce": {"bounceType": bounce_type, "bounceSubType": "General", "feedbackId": secrets.token_hex(8),
                   "timestamp": sns_timestamp(), "reportingMTA": "dsn; a1-2.smtp-out.amazonses.com",
                   "bouncedRecipients": [{"emailAddress": a, "action": "failed", "status": "5.1.1",
                                          "diagnosticCode": "smtp; 550 5.1.1 user unknown"} for a in addresses]},
        "mail": {"timestamp": sns_timestamp(), "source": "news@mailadmin.test", "messageId": secrets.token_hex(16),
                 "destination": addresses, "headersTruncated": False,
                 "headers": [{"name": "Message-ID", "value": message_id or "<other@elsewhere>"}],
                 "commonHeaders": {"messageId": message_id or "<other@elsewhere>", "subject": "News"}},
    }
    return {"Type": "Notification", "MessageId": secrets.token_hex(16), "TopicArn": SNS_TOPIC,
            "Message": json.dumps(ses), "Timestamp": sns_timestamp(age_seconds),
            "UnsubscribeURL": f"https://sns.{SNS_REGION}.amazonaws.com/?Action=Unsubscribe"}


def ses_complaint_notification(address: str, message_id: str | None) -> dict:
    ses = {"notificationType": "Complaint",
           "complaint": {"complainedRecipients": [{"emailAddress": address}], "feedbackId": secrets.token_hex(8),
                         "complaintFeedbackType": "abuse", "timestamp": sns_timestamp()},
           "mail": {"messageId": secrets.token_hex(16), "commonHeaders": {"messageId": message_id}}}
    return {"Type": "Notification", "MessageId": secrets.token_hex(16), "TopicArn": SNS_TOPIC,
            "Message": json.dumps(ses), "Timestamp": sns_timestamp(),
            "UnsubscribeURL": f"https://sns.{SNS_REGION}.amazonaws.com/?Action=Unsubscribe"}


# --- SendGrid, Mailgun ------------------------------------------------------------------------


@dataclass
class SendGridSigner:
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def generate(cls) -> SendGridSigner:
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @property
    def public_key_b64(self) -> str:
        der = self.key.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
        return base64.b64encode(der).decode("ascii")

    def headers(self, body: bytes, age_seconds: int = 0) -> dict:
        timestamp = str(int(time.time()) - age_seconds)
        signature = self.key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {"X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode("ascii"),
                "X-Twilio-Email-Event-Webhook-Timestamp": timestamp, "Content-Type": "application/json"}


def sendgrid_event(address: str, message_id: str | None, event: str = "bounce", kind: str = "bounce") -> dict:
    return {"email": address, "timestamp": int(time.time()), "smtp-id": message_id, "event": event, "type": kind,
            "sg_event_id": secrets.token_urlsafe(16), "sg_message_id": secrets.token_hex(10) + ".filter0001",
            "reason": "550 5.1.1 The email account does not exist.", "status": "5.1.1"}


def mailgun_payload(signing_key: str, address: str, message_id: str | None, *, event: str = "failed",
                    severity: str = "permanent", age_seconds: int = 0) -> dict:
    timestamp, token = str(int(time.time()) - age_seconds), secrets.token_hex(25)
    signature = hmac.new(signing_key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return {"signature": {"timestamp": timestamp, "token": token, "signature": signature},
            "event-data": {"event": event, "severity": severity, "id": secrets.token_urlsafe(16),
                           "timestamp": time.time(), "recipient": address, "reason": "bounce",
                           "delivery-status": {"code": 550, "enhanced-code": "5.1.1", "message": "no such user"},
                           "message": {"headers": {"message-id": (message_id or "").strip("<>"), "to": address}}}}


def postmark_bounce(address: str, kind: str = "HardBounce", record: str = "Bounce") -> dict:
    return {"RecordType": record, "ID": secrets.randbelow(10**9), "Type": kind, "TypeCode": 1,
            "Name": "Hard bounce", "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
            "Description": "The server was unable to deliver your message.", "Details": "smtp;550 5.1.1",
            "Email": address, "From": "news@mailadmin.test", "BouncedAt": sns_timestamp(), "Inactive": True,
            "CanActivate": True, "Subject": "News", "MessageStream": "outbound", "Metadata": {}}


def tables_holding(address: str) -> list[str]:
    """`table.column` of every text column (strings, JSON) of every table that holds `address` in clear."""
    from sqlalchemy import JSON, String, Text, cast, func, select

    found = []
    needle = address.lower()
    for table in db.metadata.sorted_tables:
        for column in table.columns:
            if not isinstance(column.type, (String, Text, JSON)):
                continue
            text = func.lower(cast(column, Text()))
            hit = db.session.execute(select(func.count()).select_from(table).where(text.contains(needle, autoescape=True)))
            if hit.scalar():
                found.append(f"{table.name}.{column.name}")
    return found
