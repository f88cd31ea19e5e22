"""Each provider's verified payload, read into `BounceReport`s (only bounces and complaints; the rest is ignored).

Formats (as documented by each provider):
- Amazon SES (inside an SNS Notification's `Message`): `notificationType` Bounce | Complaint;
  `bounce.bounceType` Permanent (hard) | Transient (soft) | Undetermined (ignored) with
  `bouncedRecipients[].emailAddress` / `.status`; `complaint.complainedRecipients[]`;
  `mail.commonHeaders.messageId` or `mail.headers[]` carry our Message-ID.
- SendGrid: a JSON array of events; `event` bounce (`type` bounce = hard, blocked = soft) |
  spamreport; `sg_event_id`; `smtp-id` is our Message-ID.
- Postmark: one object; `RecordType` Bounce with `Type` HardBounce/BadEmailAddress (hard) or
  SoftBounce/Transient/DnsError (soft), or `RecordType` SpamComplaint; `ID`, `Email`.
- Mailgun: `event-data.event` failed (`severity` permanent = hard, temporary = soft) | complained;
  `event-data.id`, `.recipient`, `.message.headers.message-id`.
"""

from __future__ import annotations

import json

from mailadmin.mail.bounces import BOUNCE_COMPLAINT, BOUNCE_HARD, BOUNCE_SOFT, BounceReport
from mailadmin.models.suppression import (
    SOURCE_MAILGUN,
    SOURCE_POSTMARK,
    SOURCE_SENDGRID,
    SOURCE_SES,
)

POSTMARK_HARD = frozenset({"HardBounce", "BadEmailAddress"})
POSTMARK_SOFT = frozenset({"SoftBounce", "Transient", "DnsError"})
SES_BOUNCE_KINDS = {"Permanent": BOUNCE_HARD, "Transient": BOUNCE_SOFT}


class PayloadError(ValueError):
    """A verified body that is not in the provider's documented format (answered 400)."""


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _json_of(text: str | bytes, shape: type, refusal: str):
    """`text` parsed as JSON, which must be a `shape` (dict or list); else PayloadError(refusal)."""
    try:
        value = json.loads(text)
    except ValueError:
        raise PayloadError(refusal) from None
    if not isinstance(value, shape):
        raise PayloadError(refusal)
    return value


def _ses_message_id(mail: dict) -> str | None:
    common = mail.get("commonHeaders")
    if isinstance(common, dict) and _text(common.get("messageId")):
        return common["messageId"]
    for header in mail.get("headers") or ():
        if isinstance(header, dict) and _text(header.get("name")).lower() == "message-id":
            return _text(header.get("value"))
    return None


def ses_reports(sns_message: str, notification_id: str) -> list[BounceReport]:
    """The reports in one SES notification (the `Message` of an SNS Notification)."""
    notification = _json_of(sns_message, dict, "the SNS Message is not SES JSON")
    kind_name = notification.get("notificationType") or notification.get("eventType")
    mail = notification.get("mail") if isinstance(notification.get("mail"), dict) else {}
    message_id = _ses_message_id(mail)
    if kind_name == "Bounce":
        bounce = notification.get("bounce") or {}
        kind = SES_BOUNCE_KINDS.get(bounce.get("bounceType"))
        entries = bounce.get("bouncedRecipients") or []
    elif kind_name == "Complaint":
        kind, entries = BOUNCE_COMPLAINT, (notification.get("complaint") or {}).get("complainedRecipients") or []
    else:
        return []
    if kind is None:
        return []
    return [
        BounceReport(_text(entry.get("emailAddress")), kind, SOURCE_SES, notification_id, message_id,
                     status_code=_text(entry.get("status")) or None)
        for entry in entries
        if isinstance(entry, dict) and _text(entry.get("emailAddress"))
    ]


def sendgrid_reports(body: bytes) -> list[BounceReport]:
    """The reports in one SendGrid Event Webhook POST (a JSON array of events)."""
    events = _json_of(body, list, "the body is not a JSON list of events")
    reports = []
    for event in events:
        if not isinstance(event, dict) or not _text(event.get("email")):
            continue
        name = event.get("event")
        if name == "bounce":
            kind = BOUNCE_SOFT if event.get("type") == "blocked" else BOUNCE_HARD
        elif name == "spamreport":
            kind = BOUNCE_COMPLAINT
        else:
            continue
        event_id = _text(event.get("sg_event_id")) or f"{event.get('sg_message_id')}:{name}:{event.get('timestamp')}"
        reports.append(BounceReport(event["email"], kind, SOURCE_SENDGRID, event_id,
                                    _text(event.get("smtp-id")) or None, status_code=_text(event.get("status")) or None))
    return reports


def postmark_reports(payload: object) -> list[BounceReport]:
    """The report in one Postmark bounce or spam-complaint webhook."""
    if not isinstance(payload, dict):
        raise PayloadError("the body is not a JSON object")
    record, kind_name, email = payload.get("RecordType"), payload.get("Type"), _text(payload.get("Email"))
    if record == "SpamComplaint":
        kind = BOUNCE_COMPLAINT
    elif record == "Bounce" and kind_name in POSTMARK_HARD:
        kind = BOUNCE_HARD
    elif record == "Bounce" and kind_name in POSTMARK_SOFT:
        kind = BOUNCE_SOFT
    else:
        return []
    if not email or payload.get("ID") is None:
        raise PayloadError("the Postmark record has no ID or Email")
    return [BounceReport(email, kind, SOURCE_POSTMARK, f"{record}:{payload['ID']}")]


def postmark_delivery_id(payload: object) -> str:
    """The id a Postmark delivery is recognised by when replayed."""
    if not isinstance(payload, dict) or payload.get("ID") is None:
        raise PayloadError("the Postmark record has no ID")
    return f"{payload.get('RecordType')}:{payload['ID']}"


def mailgun_reports(event_data: object) -> list[BounceReport]:
    """The report in one Mailgun webhook's `event-data`."""
    if not isinstance(event_data, dict):
        raise PayloadError("the Mailgun payload has no event-data")
    name, recipient = event_data.get("event"), _text(event_data.get("recipient"))
    if name == "failed":
        kind = BOUNCE_HARD if event_data.get("severity") == "permanent" else BOUNCE_SOFT
    elif name == "complained":
        kind = BOUNCE_COMPLAINT
    else:
        return []
    if not recipient or not _text(event_data.get("id")):
        raise PayloadError("the Mailgun event has no id or recipient")
    message = event_data.get("message") if isinstance(event_data.get("message"), dict) else {}
    headers = message.get("headers") if isinstance(message.get("headers"), dict) else {}
    status = event_data.get("delivery-status") if isinstance(event_data.get("delivery-status"), dict) else {}
    code = status.get("enhanced-code") or status.get("code")
    return [BounceReport(recipient, kind, SOURCE_MAILGUN, event_data["id"], _text(headers.get("message-id")) or None,
                         status_code=str(code) if code else None)]
