"""Bounces: which SMTP refusals mean "this mailbox does not exist" (the address goes on the
suppression list), and which campaign and recipient a bounced message of ours was sent to.

The second half reads the Message-IDs `MessageBuilder` writes,
`<campaign-{campaign_id}.recipient-{recipient_id}.{random}@{domain}>`, as a bounce report
(a DSN's `Original-Message-ID`, or an `In-Reply-To` / `References` header) quotes them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# 5xx replies that say "this mailbox does not exist": the address goes on the suppression list.
HARD_BOUNCE_CODES = frozenset({550, 551, 553})
HARD_BOUNCE_HINTS = (
    "5.1.0",
    "5.1.1",
    "5.1.2",
    "5.1.3",
    "5.1.6",
    "user unknown",
    "unknown user",
    "no such user",
    "unknown recipient",
    "mailbox unavailable",
    "mailbox not found",
    "does not exist",
    "invalid recipient",
    "recipient address rejected",
)

_OUR_MESSAGE_ID = re.compile(r"<?campaign-(\d+)\.recipient-(\d+)\.[0-9a-f]+@[^<>@\s]+>?")


@dataclass(frozen=True, slots=True)
class SentMessageRef:
    """The campaign and recipient one of our Message-IDs names (recipient 0: a test email)."""

    campaign_id: int
    recipient_id: int


def is_hard_bounce(smtp_code: int | None, text: str) -> bool:
    """A permanent "no such mailbox" reply (550/551/553 with a user-unknown reason)."""
    if smtp_code not in HARD_BOUNCE_CODES:
        return False
    lowered = text.lower()
    return any(hint in lowered for hint in HARD_BOUNCE_HINTS)


def parse_message_id(value: str | None) -> SentMessageRef | None:
    """The campaign and recipient of a Message-ID we wrote, or None for anyone else's (or none).

    Accepts the bare header value with or without angle brackets and surrounding spaces; a
    `References` header's several ids are not split here (pass each one).
    """
    if not value:
        return None
    match = _OUR_MESSAGE_ID.fullmatch(value.strip())
    if match is None:
        return None
    return SentMessageRef(campaign_id=int(match.group(1)), recipient_id=int(match.group(2)))
