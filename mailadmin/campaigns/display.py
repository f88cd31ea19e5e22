"""How campaigns read on the pages: status words, reasons, times, durations, the per-hour chart.

Pure functions over model values, shared by the pages, the progress JSON and (through
the template globals registered in `init_app`) any other blueprint's templates.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from html import escape

from mailadmin.models import Campaign
from mailadmin.models.campaign import (
    CANCELLED,
    DEFERRED,
    DRAFT,
    FINISHED,
    PAUSED,
    QUEUED,
    SENDING,
)
from mailadmin.models.reasons import Reason, Resumes, reason_of
from mailadmin.models.types import utcnow

STATUS_LABELS = {
    DRAFT: "Draft",
    QUEUED: "Queued",
    SENDING: "Sending",
    DEFERRED: "Deferred",
    PAUSED: "Paused",
    FINISHED: "Finished",
    CANCELLED: "Cancelled",
}
RECIPIENT_STATUS_LABELS = {
    "pending": "Waiting",
    "sending": "Being sent",
    "sent": "Sent",
    "failed": "Failed",
    "skipped": "Skipped",
    "unknown": "Outcome unknown",
    "bounced": "Bounced",
    "complained": "Complained (spam)",
}


def status_label(campaign: Campaign) -> str:
    """"Finished with errors", "Paused", ...: the status in words."""
    if campaign.status == FINISHED and campaign.finished_with_errors:
        return "Finished with errors"
    return STATUS_LABELS.get(campaign.status, campaign.status.capitalize())


def format_utc_time(moment: datetime | None, now: datetime | None = None) -> str:
    """"14:05 UTC" today, "3 May 14:05 UTC" on another day; "" for None."""
    if moment is None:
        return ""
    moment = moment.astimezone(UTC)
    now = (now or utcnow()).astimezone(UTC)
    if moment.date() == now.date():
        return moment.strftime("%H:%M UTC")
    if moment.year == now.year:
        return f"{moment.day} {moment.strftime('%b %H:%M')} UTC"
    return f"{moment.day} {moment.strftime('%b %Y %H:%M')} UTC"


def format_timestamp(moment: datetime | None) -> str:
    """"2025-05-03 14:05 UTC" for tables; "—" for None."""
    if moment is None:
        return "—"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def reason_text(campaign: Campaign, now: datetime | None = None) -> str | None:
    """Why a deferred or paused campaign waits, in plain words, with when it resumes."""
    if campaign.status not in (DEFERRED, PAUSED, QUEUED) or campaign.queue is None:
        return None
    reason = campaign.queue.defer_reason
    if not reason:
        return None
    known = reason_of(reason)
    label = known.label if known is not None else reason.replace("_", " ").capitalize()
    until = campaign.queue.deferred_until
    if campaign.status == DEFERRED and until is not None:
        verb = "starts" if known is Reason.SCHEDULED else "resumes"
        return f"{label} — {verb} at {format_utc_time(until, now)}"
    if campaign.status == PAUSED:
        waits_for_switch = known is not None and known.info.resumes is Resumes.WHEN_SWITCH_ON
        return label if waits_for_switch else f"{label} — waits until an admin resumes it"
    return label


def format_duration(duration: timedelta) -> str:
    """"4 h 10 min", "25 min", "under a minute", "2 d 3 h"."""
    minutes = int(round(duration.total_seconds() / 60))
    if minutes < 1:
        return "under a minute"
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{minutes} min"


def progress_shares(campaign: Campaign) -> dict[str, float]:
    """Width in percent of each segment of the progress bar (sent, failed, skipped+unknown)."""
    total = campaign.recipients_total or 0
    if not total:
        return {"sent": 0.0, "failed": 0.0, "other": 0.0}

    def share(count: int) -> float:
        return round(min(100.0, 100.0 * count / total), 2)

    return {
        "sent": share(campaign.sent_count),
        "failed": share(campaign.failed_count),
        "other": share(campaign.skipped_count + campaign.unknown_count),
    }


# --- sends per hour -----------------------------------------------------------------------

CHART_MAX_HOURS = 48
_W, _H = 480, 200
_LEFT, _BOTTOM, _TOP, _RIGHT = 44, 26, 14, 8


def fill_hours(buckets: dict[datetime, int], max_hours: int = CHART_MAX_HOURS) -> list[tuple[datetime, int]]:
    """Every hour from the first to the last bucket (at most the last `max_hours`), zeros included."""
    if not buckets:
        return []
    last = max(buckets)
    first = max(min(buckets), last - timedelta(hours=max_hours - 1))
    hours = []
    moment = first
    while moment <= last:
        hours.append((moment, buckets.get(moment, 0)))
        moment += timedelta(hours=1)
    return hours


def chart_summary(hours: list[tuple[datetime, int]], bounced: dict[datetime, int] | None = None) -> str:
    """One sentence describing the chart, for screen readers."""
    if not hours:
        return "No emails sent yet."
    total = sum(count for _, count in hours)
    busiest, peak = max(hours, key=lambda item: item[1])
    returned = sum((bounced or {}).values())
    return (
        f"{total:,} emails sent over {len(hours)} hour{'s' if len(hours) != 1 else ''}; "
        f"busiest hour {busiest:%H}:00 UTC with {peak:,}."
        + (f" {returned:,} of them bounced or drew a complaint." if returned else "")
    )


def sends_per_hour_svg(hours: list[tuple[datetime, int]], bounced: dict[datetime, int] | None = None) -> str:
    """A self-contained bar chart of sends per hour (UTC) as SVG markup; the part of each hour's
    sends that bounced or drew a complaint later is drawn red at the foot of its bar."""
    bounced = bounced or {}
    summary = escape(chart_summary(hours, bounced))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_W} {_H}" role="img" '
        f'aria-labelledby="chart-title chart-desc" font-family="system-ui, sans-serif" font-size="13">',
        '<title id="chart-title">Emails sent per hour (UTC)</title>',
        f'<desc id="chart-desc">{summary}</desc>',
        f'<rect x="0" y="0" width="{_W}" height="{_H}" fill="#ffffff"/>',
    ]
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    base_y = _TOP + plot_h
    parts.append(
        f'<line x1="{_LEFT}" y1="{base_y}" x2="{_W - _RIGHT}" y2="{base_y}" stroke="#8891a4" stroke-width="1"/>'
    )
    if not hours:
        parts.append(
            f'<text x="{_W / 2}" y="{_TOP + plot_h / 2}" text-anchor="middle" fill="#646b79">No emails sent yet</text>'
        )
        parts.append("</svg>")
        return "".join(parts)
    peak = max(count for _, count in hours) or 1
    parts.append(f'<text x="{_LEFT - 6}" y="{_TOP + 4}" text-anchor="end" fill="#646b79">{peak:,}</text>')
    parts.append(f'<text x="{_LEFT - 6}" y="{base_y}" text-anchor="end" fill="#646b79">0</text>')
    parts.append(
        f'<line x1="{_LEFT}" y1="{_TOP}" x2="{_W - _RIGHT}" y2="{_TOP}" stroke="#e1e4ea" stroke-dasharray="3 3"/>'
    )
    slot = plot_w / len(hours)
    bar_w = max(1.0, slot * 0.7)
    label_every = max(1, -(-len(hours) // 6))
    for index, (moment, count) in enumerate(hours):
        height = plot_h * count / peak
        x = _LEFT + index * slot + (slot - bar_w) / 2
        parts.append(
            f'<rect x="{x:.1f}" y="{base_y - height:.1f}" width="{bar_w:.1f}" height="{height:.1f}" fill="#1f7a4d">'
            f"<title>{moment:%Y-%m-%d %H}:00 UTC: {count:,} sent</title></rect>"
        )
        if bounced.get(moment):
            returned = min(count, bounced[moment])
            red = plot_h * returned / peak
            parts.append(
                f'<rect class="bounced" x="{x:.1f}" y="{base_y - red:.1f}" width="{bar_w:.1f}" height="{red:.1f}" '
                f'fill="#c0392b"><title>{moment:%Y-%m-%d %H}:00 UTC: {returned:,} bounced or complained</title></rect>'
            )
        if index % label_every == 0:
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{_H - 7}" text-anchor="middle" fill="#646b79">{moment:%H}:00</text>'
            )
    parts.append("</svg>")
    return "".join(parts)
