"""The values the send loop and the recovery sweep exchange with the delivery services."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from mailadmin.models.campaign import CampaignStatus, RecipientStatus
from mailadmin.models.reasons import Reason


@dataclass(slots=True)
class Claim:
    """A recipient a slice has claimed (status `sending`)."""

    id: int
    email: str
    name: str | None
    fields: dict | None


@dataclass(slots=True)
class Outcome:
    """What happened to one claimed recipient, waiting to be recorded with its batch."""

    claim: Claim
    # sent | failed | skipped | unknown | pending (transient: retry later)
    status: RecipientStatus
    smtp_code: int | None = None
    message_id: str | None = None
    error: str | None = None
    sent_at: datetime | None = None
    attempted: bool = True
    hard_bounce: bool = False
    took_ms: float | None = None  # a sent message: from writing it to the relay's verdict (the latency metric)


@dataclass(slots=True)
class ClaimedBatch:
    """A freshly claimed batch: the claims to send, and those whose address is suppressed."""

    to_send: list[Claim] = field(default_factory=list)
    suppressed: list[Claim] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.to_send or self.suppressed)


@dataclass(slots=True)
class SendCounts:
    """Recipients by what became of them (rows actually updated): sent, failed, skipped, unknown,
    pending again after a transient error, and untried claims released."""

    sent: int = 0
    failed: int = 0
    skipped: int = 0
    unknown: int = 0
    transient: int = 0
    released: int = 0

    def add(self, other: SendCounts) -> None:
        """Add `other`'s counts to these."""
        for name in SendCounts.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(slots=True)
class RecordedBatch(SendCounts):
    """What `record_batch` changed, and the next batch if one was claimed."""

    next_batch: ClaimedBatch = field(default_factory=ClaimedBatch)


@dataclass(frozen=True, slots=True)
class SliceCampaign:
    """What a send slice needs of its campaign, read once when the slice begins."""

    id: int
    queue_id: int
    subject: str
    body_text: str
    body_html: str | None
    name: str = ""  # the List-Id's description


class SliceRefusal(StrEnum):
    """Why a slice does not begin when neither a Reason nor the campaign's status says it."""

    NOT_DUE = "not_due"  # deferred, and its time has not come
    MISSING = "missing"  # the campaign is gone


@dataclass(frozen=True, slots=True)
class SliceStart:
    """Answer of `begin_slice`: go ahead (with the campaign), or the reason not to."""

    proceed: bool
    # `sending` when it proceeds; else a Reason, the campaign's status, or a SliceRefusal
    reason: CampaignStatus | Reason | SliceRefusal
    campaign: SliceCampaign | None = None
    # True for the slice that moved the campaign into `sending` from `queued` (a start or a resume),
    # not from a due deferral: only then are sibling slices fanned out, so that a retry cycle is
    # one slice, not a new fan-out.
    fan_out: bool = False


@dataclass(frozen=True, slots=True)
class JobClaims:
    """One job's claims on one campaign, with the campaign's last slice heartbeat."""

    campaign_id: int
    job_id: str
    heartbeat_at: datetime | None
