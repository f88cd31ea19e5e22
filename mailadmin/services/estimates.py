"""How long a campaign will take to send, from the real state of the sending path.

`estimate_sending()` is a pure function: it replays the rolling-hour quota (which sends still
count, and when each frees its slot), the provider's per-second cap (`MAILER_SMTP_MAX_PER_SECOND`,
0 = off) and the speed recent campaigns were really sent at, message by message. The old
estimate divided by the hourly quota alone: it promised "3 min" with the quota used up (the
campaign waited an hour) and "13 min" for 21 recipients that went out in 2 s.

`current_estimate()` gathers that state (Redis, settings, the database) for the start page.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from mailadmin.extensions import db, get_redis, get_settings
from mailadmin.limits.rate_limiter import rate_limit_moments
from mailadmin.models import Campaign, Recipient
from mailadmin.models.campaign import FINISHED
from mailadmin.models.types import utcnow

HOUR = timedelta(hours=1)
# The send speed assumed when no recent campaign measured one and no per-second cap is set.
ASSUMED_PER_SECOND = 5.0
# Recent campaigns whose measured speed counts, and the fewest sends that make a measurement.
MEASURED_CAMPAIGNS = 5
MEASURED_MIN_SENT = 5


@dataclass(frozen=True, slots=True)
class SendEstimate:
    """When the last of `count` messages should be sent, and what holds it back."""

    count: int
    finishes_at: datetime
    duration: timedelta
    max_per_hour: int
    free_now: int  # quota slots free at `now`
    next_free_at: datetime | None  # when a slot frees, if none is free now
    waits_for_quota: bool  # the hourly quota (not the speed) decides when it finishes
    per_second: float  # the speed assumed between quota waits
    measured: bool  # True when that speed was measured on recent campaigns


def send_speed(max_per_second: float, measured_per_second: float | None) -> tuple[float, bool]:
    """(messages per second, measured?): the slower of the provider's cap and the measured speed."""
    caps = [rate for rate in (max_per_second, measured_per_second) if rate and rate > 0]
    if not caps:
        return ASSUMED_PER_SECOND, False
    speed = min(caps)
    return speed, speed == measured_per_second


def estimate_sending(
    count: int,
    *,
    now: datetime,
    max_per_hour: int,
    window_sends: list[datetime],
    max_per_second: float = 0,
    measured_per_second: float | None = None,
) -> SendEstimate:
    """Replay `count` sends from `now`: each waits for the previous one (speed) and for a free slot in the
    rolling hour (`window_sends` are the sends still counted, each freeing its slot an hour after it)."""
    per_second, measured = send_speed(max_per_second, measured_per_second)
    window = deque(sorted(moment for moment in window_sends if moment > now - HOUR))
    limit = max(1, max_per_hour)
    free_now = max(0, limit - len(window))
    next_free_at = window[len(window) - limit] + HOUR if free_now == 0 and window else None
    moment, waited = now, False
    base, base_index = now, 0  # the speed counts from the last moment the quota let a message go
    for index in range(max(0, count)):
        moment = max(moment, base + timedelta(seconds=(index - base_index) / per_second))
        while window and window[0] <= moment - HOUR:
            window.popleft()
        if len(window) >= limit:
            # Full: this message goes when enough of the oldest sends have left the window.
            moment = window[len(window) - limit] + HOUR
            base, base_index, waited = moment, index, True
            while window and window[0] <= moment - HOUR:
                window.popleft()
        window.append(moment)
    return SendEstimate(
        count=max(0, count),
        finishes_at=moment,
        duration=moment - now,
        max_per_hour=limit,
        free_now=free_now,
        next_free_at=next_free_at,
        waits_for_quota=waited,
        per_second=per_second,
        measured=measured,
    )


def measured_send_rate(campaigns: int = MEASURED_CAMPAIGNS) -> float | None:
    """Messages per second recent finished campaigns were sent at (the fastest of them: the others
    probably waited for the quota), or None when none sent enough to tell.

    Two index lookups per campaign (first and last `sent_at`, on ix_recipients_campaign_sent_at) and
    its `sent_count`: no scan of a big campaign's recipients.
    """
    recent = db.session.execute(
        select(Campaign.id, Campaign.sent_count)
        .where(Campaign.status == FINISHED, Campaign.sent_count >= MEASURED_MIN_SENT)
        .order_by(Campaign.finished_at.desc())
        .limit(campaigns)
    ).all()
    rates = []
    for campaign_id, sent in recent:
        sent_at = select(Recipient.sent_at).where(Recipient.campaign_id == campaign_id, Recipient.sent_at.is_not(None))
        first = db.session.scalar(sent_at.order_by(Recipient.sent_at).limit(1))
        last = db.session.scalar(sent_at.order_by(Recipient.sent_at.desc()).limit(1))
        if first is not None and last is not None:
            rates.append(sent / max((last - first).total_seconds(), 0.5))
    return max(rates) if rates else None


def current_estimate(count: int, now: datetime | None = None) -> SendEstimate | None:
    """The estimate for `count` more messages from the live state; None when Redis cannot tell the quota."""
    settings = get_settings()
    window_sends = rate_limit_moments(get_redis())
    if window_sends is None:
        return None
    return estimate_sending(
        count,
        now=now or utcnow(),
        max_per_hour=settings.smtp_max_per_hour,
        window_sends=window_sends,
        max_per_second=getattr(settings, "smtp_max_per_second", 0) or 0,
        measured_per_second=measured_send_rate(),
    )
