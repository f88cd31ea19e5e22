"""Proving that a webhook request comes from its provider, before anything in its body is used.

- Amazon SNS (SES notifications): RSA signature over the documented string-to-sign, SHA1 for
  SignatureVersion 1 and SHA256 for 2, with the certificate at SigningCertURL — fetched only over
  https from `sns.<region>.amazonaws.com` (the topic's region), then cached.
- SendGrid Event Webhook: ECDSA P-256 / SHA256 over `timestamp + raw body`, with the account's
  verification key.
- Mailgun: HMAC-SHA256 of `timestamp + token` keyed with the webhook signing key.
- Postmark: a shared secret, as the basic-auth password or in the X-Mailadmin-Webhook-Secret header.

Each check raises `WebhookRefused` with its `Refusal`; the HTTP status comes from the refusal.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import re
import threading
import time
from datetime import UTC, datetime
from urllib.parse import urlsplit
from urllib.request import urlopen

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key

SNS_HOST = re.compile(r"sns\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?")
SNS_NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
SNS_CONFIRMATION_FIELDS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
SNS_TYPES = ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation")
SNS_HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}
POSTMARK_SECRET_HEADER = "X-Mailadmin-Webhook-Secret"
SENDGRID_SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
SENDGRID_TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
_CERT_MAX_BYTES = 64 * 1024
_CERT_CACHE_SIZE = 16


class Refusal(enum.Enum):
    """Why a webhook request is refused; the value is what the response and the log record say."""

    MISSING_CREDENTIALS = "missing_credentials"
    BAD_SIGNATURE = "bad_signature"
    STALE = "stale"
    REPLAYED = "replayed"
    UNTRUSTED_CERTIFICATE_URL = "untrusted_certificate_url"
    UNKNOWN_TOPIC = "unknown_topic"
    # The certificate or the SubscribeURL could not be fetched: answered 503 so that SNS retries.
    SNS_UNREACHABLE = "sns_unreachable"


_REFUSAL_STATUS = {Refusal.MISSING_CREDENTIALS: 401, Refusal.SNS_UNREACHABLE: 503}


class WebhookRefused(Exception):
    """A request that is not proven to come from the provider; `.status` is the HTTP answer."""

    def __init__(self, refusal: Refusal, detail: str) -> None:
        super().__init__(detail)
        self.refusal = refusal
        self.reason = refusal.value
        self.status = _REFUSAL_STATUS.get(refusal, 403)


def check_fresh(moment: float, max_age_seconds: int, now: float | None = None) -> None:
    """Refuse a request signed more than `max_age_seconds` away from now (either way)."""
    now = time.time() if now is None else now
    if abs(now - moment) > max_age_seconds:
        raise WebhookRefused(Refusal.STALE, "the request's timestamp is too far from now")


# --- Amazon SNS ----------------------------------------------------------------------------


def sns_region_of_host(url: str) -> str:
    """The region of an `https://sns.<region>.amazonaws.com/...` URL; refuses every other URL."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise WebhookRefused(Refusal.UNTRUSTED_CERTIFICATE_URL, "malformed URL") from None
    host = parts.hostname or ""
    match = SNS_HOST.fullmatch(host)
    if parts.scheme != "https" or match is None or parts.username or parts.password or port not in (None, 443):
        raise WebhookRefused(Refusal.UNTRUSTED_CERTIFICATE_URL, "not an https://sns.<region>.amazonaws.com URL")
    if "@" in parts.netloc or "\\" in url:
        raise WebhookRefused(Refusal.UNTRUSTED_CERTIFICATE_URL, "not an https://sns.<region>.amazonaws.com URL")
    return match.group(1)


def sns_string_to_sign(message: dict) -> bytes:
    """The string AWS signs: `name\\nvalue\\n` per field, in the documented order for the type."""
    fields = SNS_NOTIFICATION_FIELDS if message.get("Type") == "Notification" else SNS_CONFIRMATION_FIELDS
    lines = []
    for name in fields:
        value = message.get(name)
        if value is None:
            if name == "Subject":  # the one optional field
                continue
            raise WebhookRefused(Refusal.BAD_SIGNATURE, f"the SNS message has no {name}")
        lines.append(f"{name}\n{value}\n")
    return "".join(lines).encode("utf-8")


def download_certificate(url: str) -> bytes:
    """The network edge: fetch the PEM at a host-checked SNS URL (tests replace only this)."""
    with urlopen(url, timeout=5) as response:  # noqa: S310 - the URL was host-checked by the caller
        return response.read(_CERT_MAX_BYTES)


def confirm_sns_subscription(url: str) -> None:
    """The network edge: visit a host-checked SubscribeURL, which confirms the subscription."""
    with urlopen(url, timeout=5) as response:  # noqa: S310 - the URL was host-checked by the caller
        response.read(_CERT_MAX_BYTES)


_certificates: dict[str, rsa.RSAPublicKey] = {}
_certificates_lock = threading.Lock()


def sns_public_key(url: str) -> rsa.RSAPublicKey:
    """The RSA key of the signing certificate at `url` (host-checked, downloaded once, cached)."""
    sns_region_of_host(url)
    if not urlsplit(url).path.endswith(".pem") or urlsplit(url).query:
        raise WebhookRefused(Refusal.UNTRUSTED_CERTIFICATE_URL, "the signing certificate URL is not a .pem file")
    with _certificates_lock:
        cached = _certificates.get(url)
    if cached is not None:
        return cached
    try:
        pem = download_certificate(url)
    except OSError:
        raise WebhookRefused(Refusal.SNS_UNREACHABLE, "the signing certificate could not be downloaded") from None
    try:
        certificate = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise WebhookRefused(Refusal.BAD_SIGNATURE, "the signing certificate is not a PEM certificate") from None
    now = datetime.now(UTC)
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey) or not (
        certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc
    ):
        raise WebhookRefused(Refusal.BAD_SIGNATURE, "the signing certificate is not a valid RSA certificate")
    with _certificates_lock:
        if len(_certificates) >= _CERT_CACHE_SIZE:
            _certificates.clear()
        _certificates[url] = key
    return key


def forget_sns_certificates() -> None:
    """Empty the certificate cache (tests; a rotated certificate comes under a new URL anyway)."""
    with _certificates_lock:
        _certificates.clear()


def _sns_timestamp(message: dict) -> float:
    try:
        return datetime.fromisoformat(str(message.get("Timestamp", "")).replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise WebhookRefused(Refusal.BAD_SIGNATURE, "the SNS message has no valid Timestamp") from None


def verify_sns_message(message: dict, topic_arns: tuple[str, ...], max_age_seconds: int) -> None:
    """Refuse an SNS message that is not signed by SNS for one of our topics, or is stale."""
    if not isinstance(message, dict) or message.get("Type") not in SNS_TYPES:
        raise WebhookRefused(Refusal.MISSING_CREDENTIALS, "not an SNS message")
    topic = message.get("TopicArn")
    if topic not in topic_arns:
        raise WebhookRefused(Refusal.UNKNOWN_TOPIC, "the topic is not configured")
    algorithm = SNS_HASHES.get(str(message.get("SignatureVersion")))
    if algorithm is None or not message.get("Signature") or not message.get("SigningCertURL"):
        raise WebhookRefused(Refusal.MISSING_CREDENTIALS, "the SNS message is not signed")
    if sns_region_of_host(str(message["SigningCertURL"])) != topic.split(":")[3]:
        raise WebhookRefused(Refusal.UNTRUSTED_CERTIFICATE_URL, "the certificate is not from the topic's region")
    try:
        signature = base64.b64decode(str(message["Signature"]), validate=True)
    except (ValueError, binascii.Error):
        raise WebhookRefused(Refusal.BAD_SIGNATURE, "the signature is not base64") from None
    key = sns_public_key(str(message["SigningCertURL"]))
    try:
        key.verify(signature, sns_string_to_sign(message), padding.PKCS1v15(), algorithm())
    except InvalidSignature:
        raise WebhookRefused(Refusal.BAD_SIGNATURE, "the SNS signature does not match") from None
    check_fresh(_sns_timestamp(message), max_age_seconds)


# --- SendGrid ------------------------------------------------------------------------------


def verify_sendgrid_request(
    public_key_b64: str, signature_b64: str | None, timestamp: str | None, body: bytes, max_age_seconds: int
) -> None:
    """Refuse a SendGrid Event Webhook request not signed with the account's key, or stale."""
    if not signature_b64 or not timestamp:
        raise WebhookRefused(Refusal.MISSING_CREDENTIALS, "the SendGrid signature headers are missing")
    key = load_der_public_key(base64.b64decode(public_key_b64))
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise WebhookRefused(Refusal.BAD_SIGNATURE, "the configured SendGrid key is not an ECDSA key")
    try:
        signature = base64.b64decode(signature_b64, validate=True)
        key.verify(signature, timestamp.encode("utf-8") + body, ec.ECDSA(hashes.SHA256()))
    except (ValueError, binascii.Error, InvalidSignature):
        raise WebhookRefused(Refusal.BAD_SIGNATURE, "the SendGrid signature does not match") from None
    try:
        moment = float(int(timestamp))
    except ValueError:
        raise WebhookRefused(Refusal.BAD_SIGNATURE, "the SendGrid timestamp is not a number") from None
    check_fresh(moment, max_age_seconds)


# --- Mailgun -------------------------------------------------------------------------------


def verify_mailgun_signature(signing_key: str, signature: object, max_age_seconds: int) -> str:
    """Refuse a Mailgun payload whose `signature` block is not ours or is stale; returns its token."""
    if not isinstance(signature, dict):
        raise WebhookRefused(Refusal.MISSING_CREDENTIALS, "the Mailgun payload has no signature block")
    timestamp, token, given = (str(signature.get(name) or "") for name in ("timestamp", "token", "signature"))
    if not timestamp or not token or not given:
        raise WebhookRefused(Refusal.MISSING_CREDENTIALS, "the Mailgun signature block is incomplete")
    expected = hmac.new(signing_key.encode("utf-8"), (timestamp + token).encode("utf-8"), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, given.lower()):
        raise WebhookRefused(Refusal.BAD_SIGNATURE, "the Mailgun signature does not match")
    try:
        check_fresh(float(int(timestamp)), max_age_seconds)
    except ValueError:
        raise WebhookRefused(Refusal.BAD_SIGNATURE, "the Mailgun timestamp is not a number") from None
    return token


# --- Postmark ------------------------------------------------------------------------------


def verify_postmark_secret(secret: str, basic_auth_password: str | None, header_secret: str | None) -> None:
    """Refuse a Postmark request that carries neither the shared secret as basic-auth password nor in the header."""
    given = header_secret or basic_auth_password
    if not given:
        raise WebhookRefused(Refusal.MISSING_CREDENTIALS, "the Postmark request carries no secret")
    if not hmac.compare_digest(given.encode("utf-8"), secret.encode("utf-8")):
        raise WebhookRefused(Refusal.BAD_SIGNATURE, "the Postmark secret does not match")
