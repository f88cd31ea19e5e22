"""Message building: the per-campaign MessageBuilder against one EmailMessage per recipient."""

from __future__ import annotations

import json
import secrets
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from typing import Any

from mailadmin.mail.message import LIST_UNSUBSCRIBE_POST, MessageBuilder
from mailadmin.mail.templates import CampaignTemplates
from mailadmin.mail.unsubscribe import make_unsubscribe_token

# A realistic newsletter (the send-loop benchmark's campaigns use it too).
CATALOGUE_TEXT = """Hello {{ name }},

Our autumn catalogue is out, and as a customer of {{ company }} you get early access
to every item in it. Here is what is new this season:

  * hand-made ceramic mugs, glazed in five colours -- from 12 EUR
  * linen table cloths in three sizes, pre-washed so they never shrink
  * the café blend we roast every Tuesday, whole beans or ground for filters
  * gift cards from 20 EUR, delivered by email within the minute

Orders placed before Friday ship the same day. If you have any question about an
order, just reply to this message: a person reads every answer, usually within a day.

We send this letter about once a month to {{ email }}. If it is not for you any
more, the unsubscribe link at the bottom takes one click, no login needed.

Warm regards,
The shop team
"""

CATALOGUE_HTML = """<!doctype html>
<html><body style="font-family: Arial, sans-serif; color: #222">
<p>Hello {{ name }},</p>
<p>Our <b>autumn catalogue</b> is out, and as a customer of {{ company }} you get early
access to every item in it. Here is what is new this season:</p>
<ul>
  <li>hand-made ceramic mugs, glazed in five colours &mdash; from 12&nbsp;EUR</li>
  <li>linen table cloths in three sizes, pre-washed so they never shrink</li>
  <li>the café blend we roast every Tuesday, whole beans or ground for filters</li>
  <li>gift cards from 20&nbsp;EUR, delivered by email within the minute</li>
</ul>
<p>Orders placed before Friday ship the same day. Questions? Just reply to this message.</p>
<p style="font-size: 12px; color: #777">We send this letter about once a month to {{ email }}.</p>
</body></html>
"""


def bench_build(n: int = 5000) -> dict:
    """Messages/s of MessageBuilder vs. a naive EmailMessage per recipient, same templates, same run."""
    templates = CampaignTemplates("{{ name }}, our autumn catalogue is here", CATALOGUE_TEXT, CATALOGUE_HTML)
    secret = "bench-secret"

    def unsubscribe_url_for(recipient_id: Any) -> str:
        return f"https://mail.example.com/u/{make_unsubscribe_token(secret, 42, recipient_id)}"

    recipients = [
        (rid, f"customer{rid}@example.com", {"email": f"customer{rid}@example.com",
                                             "name": f"Customer Nummer {rid}", "company": "Müller & Söhne"})
        for rid in range(1, n + 1)
    ]
    builder = MessageBuilder(42, "Shop <news@shop.example.com>", templates, unsubscribe_url_for,
                             list_name="Autumn catalogue")

    def naive(rid: int, email: str, fields: dict) -> bytes:
        parts = templates.render(fields)
        msg = EmailMessage()
        msg["From"] = "Shop <news@shop.example.com>"
        msg["To"] = formataddr((fields["name"], email))
        msg["Subject"] = parts.subject
        msg["Date"] = format_datetime(datetime.now(UTC))
        msg["Message-ID"] = f"<campaign-42.recipient-{rid}.{secrets.token_hex(6)}@shop.example.com>"
        msg["List-Unsubscribe"] = f"<{unsubscribe_url_for(rid)}>"
        msg["List-Unsubscribe-Post"] = LIST_UNSUBSCRIBE_POST
        msg["List-Id"] = '"Autumn catalogue" <campaign-42.shop.example.com>'
        msg.set_content(parts.text)
        msg.add_alternative(parts.html, subtype="html")
        return msg.as_bytes()

    for rid, email, fields in recipients[:50]:  # warm-up: imports, caches
        builder.build(rid, email, fields)
        naive(rid, email, fields)

    started = time.perf_counter()
    size = 0
    for rid, email, fields in recipients:
        size += len(builder.build(rid, email, fields).data)
    elapsed = time.perf_counter() - started

    baseline_n = max(200, min(n, n // 4))
    started = time.perf_counter()
    for rid, email, fields in recipients[:baseline_n]:
        naive(rid, email, fields)
    baseline_elapsed = time.perf_counter() - started

    rate = n / elapsed
    baseline_rate = baseline_n / baseline_elapsed
    return {
        "bench": "message_build",
        "messages": n,
        "rate": round(rate, 1),
        "baseline_messages": baseline_n,
        "baseline_rate": round(baseline_rate, 1),
        "ratio": round(rate / baseline_rate, 2),
        "avg_message_bytes": size // max(n, 1),
    }


def main(messages: int = 5000) -> None:
    print(json.dumps(bench_build(messages)), flush=True)


if __name__ == "__main__":
    main()
