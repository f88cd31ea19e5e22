"""How campaigns read on the pages: status words, reasons, times, durations, the per-hour chart.

Pure functions over model values, shared by the pages, the progress JSON and (through
the template globals registered in `init_app`) any other blueprint's templates.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from html import escape
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import has_request_context, request
from flask_babel import gettext, lazy_gettext
from markupsafe import Markup

from mailadmin.i18n import count_of, number
from mailadmin.models import Campaign
from mailadmin.models.campaign import CANCELLED, DEFERRED, DRAFT, FINISHED, PAUSED, QUEUED, SENDING
from mailadmin.models.moments import TimedText, clock_tick, datetime_local_value, format_moment, format_utc
from mailadmin.models.reasons import REASONS, BounceRateTrip, Reason, Resumes, reason_of

STATUS_LABELS = {
    DRAFT: lazy_gettext("Draft"),
    QUEUED: lazy_gettext("Queued"),
    SENDING: lazy_gettext("Sending"),
    DEFERRED: lazy_gettext("Deferred"),
    PAUSED: lazy_gettext("Paused"),
    FINISHED: lazy_gettext("Finished"),
    CANCELLED: lazy_gettext("Cancelled"),
}
# The cookie static/localtime.js keeps the browser's IANA zone in.
TZ_COOKIE = "mailadmin_tz"
# What a paused campaign waits for, by who may resume it (SPEC "Roles").
RESUME_TAILS = {
    Resumes.BY_ADMIN: lazy_gettext("only an admin can resume it"),
    Resumes.BY_OWNER_OR_ADMIN: lazy_gettext("waits until its owner or an admin resumes it"),
    Resumes.WHEN_SWITCH_ON: lazy_gettext("waits until an admin switches sending back on"),
}
RECIPIENT_STATUS_LABELS = {
    "pending": lazy_gettext("Waiting"),
    "sending": lazy_gettext("Being sent"),
    "sent": lazy_gettext("Sent"),
    "failed": lazy_gettext("Failed"),
    "skipped": lazy_gettext("Skipped"),
    "unknown": lazy_gettext("Outcome unknown"),
    "bounced": lazy_gettext("Bounced"),
    "complained": lazy_gettext("Complained (spam)"),
}


def status_label(campaign: Campaign) -> str:
    """"Finished with errors", "Paused", ...: the status in words."""
    if campaign.status == FINISHED and campaign.finished_with_errors:
        return gettext("Finished with errors")
    return str(STATUS_LABELS.get(campaign.status, campaign.status.capitalize()))


def recipient_status_labels_for(campaign: Campaign) -> dict[str, str]:
    """The recipient status words on one campaign's page: a cancelled campaign's waiting recipients were not sent."""
    labels = dict(RECIPIENT_STATUS_LABELS)
    if campaign.status == CANCELLED:
        labels["pending"] = lazy_gettext("Not sent (cancelled)")
    return labels


def finished_label(campaign: Campaign) -> str:
    """What the end time of a campaign is called: "Cancelled" for a cancelled one."""
    return gettext("Cancelled") if campaign.status == CANCELLED else gettext("Finished")


def viewer_clock() -> tzinfo:
    """The zone times are shown in: the viewer's (see `viewer_zone`) during a request, else UTC."""
    return viewer_zone() if has_request_context() else UTC


def local_time(moment: datetime | None, style: str = "datetime", empty: str = "—") -> Markup:
    """The one way a page shows a moment: a `<time>` in the one format (`models.moments`), in the viewer's zone.

    The server already writes it in the zone static/localtime.js remembered in its cookie; the script
    rewrites it the same way for a first visit (no cookie yet) and after a live update. UTC on hover.
    `style`: "datetime", "seconds" or "auto" (the time alone when it is today).
    """
    if moment is None:
        return Markup(escape(empty))
    moment = moment.astimezone(UTC)
    return Markup(
        f'<time datetime="{moment.isoformat()}" title="{escape(format_utc(moment, style))}" data-local="{escape(style)}">'
        f"{escape(format_moment(moment, viewer_clock(), style))}</time>"
    )


@dataclass(frozen=True)
class WaitReason:
    """Why a campaign waits, as the page says it: the words, and the moment it goes on by itself (if any).

    A pause may carry when it happened (`at`, shown after the label: "Paused by admin@example.com, 19:05")
    and a `detail` (shown in brackets after it).
    """

    label: str
    verb: str | None = None  # "starts" | "resumes", with `until`
    until: datetime | None = None
    tail: str | None = None  # what happens instead when no moment is known
    at: datetime | None = None
    detail: str | None = None

    def parts(self) -> tuple[str | datetime, ...]:
        """The sentence as words and moments (each moment shown in the "auto" style)."""
        parts: list[str | datetime] = [str(self.label)]
        if self.at is not None:
            parts += [", ", self.at]
        if self.detail:
            parts.append(f" ({self.detail})")
        if self.verb and self.until is not None:
            at = gettext(" — starts at ") if self.verb == "starts" else gettext(" — resumes at ")
            parts += [at, self.until]
        elif self.tail:
            parts.append(f" — {self.tail}")
        return tuple(parts)

    def text(self, now: datetime | None = None) -> str:
        """Plain text with its moments in the viewer's zone (the progress JSON, logs: UTC)."""
        zone = viewer_clock()
        return "".join(p if isinstance(p, str) else format_moment(p, zone, "auto", now) for p in self.parts())

    def html(self) -> Markup:
        """The same sentence with each moment as a `<time>` (`local_time`)."""
        # Markup.join escapes the words; the `<time>`s are markup already.
        return Markup("").join(p if isinstance(p, str) else local_time(p, "auto") for p in self.parts())


def timed_html(text: str) -> Markup:
    """A sentence that may carry moments (`TimedText`, e.g. a check's verdict) with each shown by `local_time`."""
    if not isinstance(text, TimedText):
        return Markup(escape(text))
    return Markup("").join(p if isinstance(p, str) else local_time(p, "seconds") for p in text.parts)


def _pause_words(label: str, reason: Reason | None, queue) -> dict:
    """Who paused a campaign and when (a pause by a person), or the pause's detail, for `WaitReason`."""
    if reason is Reason.ADMIN_PAUSE and (queue.paused_at is not None or queue.paused_by is not None):
        if queue.paused_by is None:
            return {"label": gettext("Paused by a person"), "at": queue.paused_at, "detail": queue.pause_detail}
        label = gettext("Paused by %(who)s", who=queue.paused_by.email)
        return {"label": label, "at": queue.paused_at, "detail": queue.pause_detail}
    return {"label": label, "detail": queue.pause_detail}


def campaign_reason(
    campaign: Campaign, sending_off: bool = False, bounce_trip: BounceRateTrip | None = None
) -> WaitReason | None:
    """Why a deferred or paused campaign waits — one reason, the one that really holds it back.

    `bounce_trip`: the line a `bounce_rate` pause crossed, with its figures (from the audit log), when known.
    """
    switch = REASONS[Reason.GLOBAL_PAUSE]
    if campaign.status in (QUEUED, SENDING, DEFERRED) and sending_off:
        # The global switch wins over any other wait: nothing resumes before it is back on.
        return WaitReason(str(switch.label), tail=str(RESUME_TAILS[switch.resumes]))
    if campaign.status not in (DEFERRED, PAUSED, QUEUED) or campaign.queue is None:
        return None
    stored = campaign.queue.defer_reason
    if not stored:
        return None
    known = reason_of(stored)
    label = str(known.label) if known is not None else stored.replace("_", " ").capitalize()
    if known is Reason.BOUNCE_RATE and bounce_trip is not None:
        label = bounce_trip.label()
    until = campaign.queue.deferred_until
    if campaign.status == DEFERRED and until is not None:
        return WaitReason(label, "starts" if known is Reason.SCHEDULED else "resumes", until)
    resumes = known.info.resumes if known is not None else Resumes.BY_OWNER_OR_ADMIN
    words = _pause_words(label, known, campaign.queue) if campaign.status == PAUSED else {"label": label}
    if campaign.status == PAUSED or resumes is Resumes.WHEN_SWITCH_ON:
        return WaitReason(tail=str(RESUME_TAILS.get(resumes, RESUME_TAILS[Resumes.BY_OWNER_OR_ADMIN])), **words)
    return WaitReason(**words)


def reason_text(
    campaign: Campaign, now: datetime | None = None, sending_off: bool = False,
    bounce_trip: BounceRateTrip | None = None,
) -> str | None:
    """Why a deferred or paused campaign waits, in plain words, with its moments in the viewer's zone."""
    reason = campaign_reason(campaign, sending_off, bounce_trip)
    return reason.text(now) if reason else None


def reason_html(campaign: Campaign, sending_off: bool = False, bounce_trip: BounceRateTrip | None = None) -> Markup:
    """`reason_text` with its moment in the viewer's time zone ("" when the campaign does not wait)."""
    reason = campaign_reason(campaign, sending_off, bounce_trip)
    return reason.html() if reason else Markup("")


@dataclass(frozen=True)
class ScheduleOffer:
    """What the campaign page offers for a start time still to come (or missed): start now, move it."""

    start_now: bool  # waiting for its start (deferred, `scheduled`); a missed start is resumed instead
    planned: datetime | None
    zone: str  # the viewer's zone the new time is typed in
    input_value: str  # the planned start on that zone's clock, for the datetime-local field


def schedule_offer(campaign: Campaign) -> ScheduleOffer | None:
    """The start-time controls for a campaign waiting for (or paused after missing) its scheduled start."""
    queue = campaign.queue
    waiting = campaign.status == DEFERRED and queue is not None and queue.defer_reason == Reason.SCHEDULED
    missed = campaign.status == PAUSED and queue is not None and queue.defer_reason == Reason.MISSED_SCHEDULE
    if not (waiting or missed):
        return None
    zone = viewer_zone()
    planned = (queue.deferred_until if waiting else None) or campaign.scheduled_at
    value = datetime_local_value(planned, zone) if planned is not None and waiting else ""
    return ScheduleOffer(waiting, planned, zone.key, value)


def format_duration(duration: timedelta) -> str:
    """"4 h 10 min", "25 min", "under a minute", "2 d 3 h"."""
    minutes = int(round(duration.total_seconds() / 60))
    if minutes < 1:
        return gettext("under a minute")
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return gettext("%(d)s d %(h)s h", d=days, h=hours) if hours else gettext("%(d)s d", d=days)
    if hours:
        return gettext("%(h)s h %(m)s min", h=hours, m=minutes) if minutes else gettext("%(h)s h", h=hours)
    return gettext("%(m)s min", m=minutes)


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


def zone_label(zone: tzinfo) -> str:
    """"UTC", or the zone's IANA name ("Asia/Tokyo"): how the chart names the clock it uses."""
    name = getattr(zone, "key", None) or str(zone)
    return "UTC" if name in ("UTC", "Etc/UTC") else name


def chart_summary(
    hours: list[tuple[datetime, int]], bounced: dict[datetime, int] | None = None, zone: tzinfo = UTC
) -> str:
    """One sentence describing the chart, for screen readers."""
    if not hours:
        return gettext("No emails sent yet.")
    total = sum(count for _, count in hours)
    busiest, peak = max(hours, key=lambda item: item[1])
    returned = sum((bounced or {}).values())
    sent = count_of(total, "%(num)s email sent", "%(num)s emails sent")
    over = count_of(len(hours), "over %(num)s hour", "over %(num)s hours")
    busiest_text = gettext("busiest hour %(when)s with %(peak)s.", when=format_moment(busiest, zone), peak=number(peak))
    returned_text = gettext(" %(count)s of them bounced or drew a complaint.", count=number(returned)) if returned else ""
    return f"{sent} {over}; {busiest_text}{returned_text}"


def sends_per_hour_svg(
    hours: list[tuple[datetime, int]], bounced: dict[datetime, int] | None = None, zone: tzinfo = UTC
) -> str:
    """A self-contained bar chart of sends per hour as SVG markup, the hours (UTC buckets) labelled in `zone`;
    the part of each hour's sends that bounced or drew a complaint later is drawn red at the foot of its bar."""
    bounced = bounced or {}
    summary = escape(chart_summary(hours, bounced, zone))
    clock = escape(zone_label(zone))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_W} {_H}" role="img" '
        f'aria-labelledby="chart-title chart-desc" font-family="system-ui, sans-serif" font-size="13">',
        f'<title id="chart-title">{escape(gettext("Emails sent per hour"))} ({clock})</title>',
        f'<desc id="chart-desc">{summary}</desc>',
        f'<rect x="0" y="0" width="{_W}" height="{_H}" fill="#ffffff"/>',
    ]
    plot_h = _H - _TOP - _BOTTOM
    base_y = _TOP + plot_h
    parts.append(
        f'<line x1="{_LEFT}" y1="{base_y}" x2="{_W - _RIGHT}" y2="{base_y}" stroke="#8891a4" stroke-width="1"/>'
    )
    if not hours:
        parts.append(
            f'<text x="{_W / 2}" y="{_TOP + plot_h / 2}" text-anchor="middle" fill="#646b79">'
            f'{escape(gettext("No emails sent yet"))}</text>'
        )
        parts.append("</svg>")
        return "".join(parts)
    peak = max(count for _, count in hours) or 1
    parts.append(f'<text x="{_LEFT - 6}" y="{_TOP + 4}" text-anchor="end" fill="#646b79">{number(peak)}</text>')
    parts.append(f'<text x="{_LEFT - 6}" y="{base_y}" text-anchor="end" fill="#646b79">0</text>')
    parts.append(
        f'<line x1="{_LEFT}" y1="{_TOP}" x2="{_W - _RIGHT}" y2="{_TOP}" stroke="#e1e4ea" stroke-dasharray="3 3"/>'
    )
    parts += _hour_bars(hours, bounced, zone, clock, peak)
    parts.append("</svg>")
    return "".join(parts)


def _hour_bars(
    hours: list[tuple[datetime, int]], bounced: dict[datetime, int], zone: tzinfo, clock: str, peak: int
) -> list[str]:
    """One bar per hour (its bounced part red at its foot), and a time label under every few bars."""
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    base_y = _TOP + plot_h
    parts: list[str] = []
    slot = plot_w / len(hours)
    bar_w = max(1.0, slot * 0.7)
    label_every = max(1, -(-len(hours) // 6))
    for index, (utc_moment, count) in enumerate(hours):
        height = plot_h * count / peak
        x = _LEFT + index * slot + (slot - bar_w) / 2
        parts.append(
            f'<rect x="{x:.1f}" y="{base_y - height:.1f}" width="{bar_w:.1f}" height="{height:.1f}" fill="#1f7a4d">'
            f"<title>{format_moment(utc_moment, zone)}: {escape(gettext('%(count)s sent', count=number(count)))}</title></rect>"
        )
        if bounced.get(utc_moment):
            returned = min(count, bounced[utc_moment])
            red = plot_h * returned / peak
            parts.append(
                f'<rect class="bounced" x="{x:.1f}" y="{base_y - red:.1f}" width="{bar_w:.1f}" height="{red:.1f}" '
                f'fill="#c0392b"><title>{format_moment(utc_moment, zone)}: '
                f'{escape(gettext("%(count)s bounced or complained", count=number(returned)))}</title></rect>'
            )
        if index % label_every == 0:
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{_H - 7}" text-anchor="middle" fill="#646b79">{clock_tick(utc_moment, zone)}</text>'
            )
    return parts


# --- the viewer's time zone -----------------------------------------------------------------


def zone_named(name: str | None) -> ZoneInfo:
    """The IANA zone `name` (as the browser reports it), UTC when missing or unknown."""
    try:
        return ZoneInfo((name or "UTC").strip()[:64] or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def viewer_zone() -> ZoneInfo:
    """The zone the current request's browser is in: a form's `tz` field, else the cookie localtime.js sets."""
    return zone_named(request.values.get("tz") or request.cookies.get(TZ_COOKIE))


def to_utc(local: datetime, zone: ZoneInfo) -> datetime:
    """A wall-clock time typed in `zone` as an aware UTC datetime (a time skipped by DST moves forward)."""
    return local.replace(tzinfo=zone).astimezone(UTC)
