"""How a moment reads wherever a person sees it: one format, in the viewer's zone.

    "7 Dec 2026, 20:04 UTC+1"       style "datetime" (lists, dates of a campaign)
    "7 Dec 2026, 20:04:16 UTC+1"    style "seconds" (the operations page, where seconds matter)
    "20:04 UTC+1"                   style "auto" on the viewer's today ("7 Dec, 20:04 UTC+1" another day
                                    this year, the full date in another year)

The zone is named by its offset ("UTC", "UTC+9", "UTC-3:30"): the server and static/localtime.js
derive it the same way, so a page reads the same before and after the script runs. The pages wrap
these words in a `<time>` (`campaigns.display.local_time`, the one template helper); `TimedText` is
a plain sentence (a check's verdict) that remembers the moments in it, so that a page can show
them the same way while a terminal shows the plain text.

Pure functions, usable from every layer; in models/, the lowest layer every blueprint and service
imports. The month is written in the viewer's language (mailadmin/i18n.py; English outside a request).
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo

from mailadmin.i18n import current_language

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# The month in the viewer's language (Russian: CLDR's abbreviated format names, as Babel gives them):
# "7 дек. 2026, 20:04 UTC+1". static/localtime.js holds the same lists.
MONTHS_BY_LANGUAGE = {
    "en": MONTHS,
    "ru": ("янв.", "февр.", "мар.", "апр.", "мая", "июн.", "июл.", "авг.", "сент.", "окт.", "нояб.", "дек."),
}
STYLES = ("datetime", "seconds", "auto")


def zone_offset_label(local: datetime) -> str:
    """"UTC", "UTC+9", "UTC-3:30": the offset of an aware local time, as the pages name the zone."""
    offset = local.utcoffset()
    minutes = round(offset.total_seconds() / 60) if offset is not None else 0
    if minutes == 0:
        return "UTC"
    sign = "+" if minutes > 0 else "-"
    hours, rest = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours}:{rest:02d}" if rest else f"UTC{sign}{hours}"


def format_moment(moment: datetime, zone: tzinfo = UTC, style: str = "datetime", now: datetime | None = None) -> str:
    """`moment` in the one format, on the clock of `zone` (see the module's docstring for `style`)."""
    if style not in STYLES:
        raise ValueError(f"unknown time style {style!r}; one of {STYLES}")
    local = moment.astimezone(zone)
    clock = f"{local:%H:%M:%S}" if style == "seconds" else f"{local:%H:%M}"
    day = f"{local.day} {MONTHS_BY_LANGUAGE.get(current_language(), MONTHS)[local.month - 1]}"
    if style == "auto":
        today = (now or datetime.now(UTC)).astimezone(zone)
        if local.date() == today.date():
            return f"{clock} {zone_offset_label(local)}"
        if local.year == today.year:
            return f"{day}, {clock} {zone_offset_label(local)}"
    return f"{day} {local.year}, {clock} {zone_offset_label(local)}"


def format_utc(moment: datetime, style: str = "datetime") -> str:
    """The one format on the UTC clock, with the full date: what a `<time>` shows on hover."""
    return format_moment(moment, UTC, "seconds" if style == "seconds" else "datetime")


class TimedText(str):
    """A sentence with moments in it: the plain text (each moment in UTC, `plain_time`) and its `parts`.

    Still a `str` everywhere one is expected (a check's verdict in `flask doctor`, JSON, tests); a
    page renders `parts` instead, each moment in the viewer's zone.
    """

    parts: tuple[str | datetime | None, ...]

    def __new__(cls, *parts: str | datetime | None) -> TimedText:
        text = super().__new__(cls, "".join(part if isinstance(part, str) else plain_time(part) for part in parts))
        text.parts = parts
        return text


def plain_time(moment: datetime | None) -> str:
    """UTC to the second for terminals and logs ("2026-12-07 20:04:16 UTC"); "—" for None."""
    return "—" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def clock_tick(moment: datetime, zone: tzinfo = UTC) -> str:
    """"08:00": an hour on a chart's axis, whose heading names the zone."""
    return f"{moment.astimezone(zone):%H:%M}"


def datetime_local_value(moment: datetime, zone: tzinfo = UTC) -> str:
    """"2026-12-07T20:04": `moment` on `zone`'s clock as an `<input type="datetime-local">` value (not for reading)."""
    return f"{moment.astimezone(zone):%Y-%m-%dT%H:%M}"
