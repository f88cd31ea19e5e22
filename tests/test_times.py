"""Every time a page shows reads one way, in the viewer's zone: "7 Dec 2026, 20:04 UTC+1" (seconds on the
operations page, the time alone today where it says "auto"), written by the one helper `local_time` as a
`<time>` with the moment in its `datetime` and UTC on hover — and no template or view formats a time by hand."""

from __future__ import annotations

import ast
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

import mailadmin
from mailadmin.extensions import db, get_redis
from mailadmin.limits.send_pace import reserve_send_tokens
from mailadmin.models import AuditEvent, Suppression
from mailadmin.models.moments import TimedText, format_moment, format_utc, plain_time, zone_offset_label  # noqa
from mailadmin.models.types import utcnow
from mailadmin.services import campaigns as service
from mailadmin.services import sending_switch
from mailadmin.services.delivery import trip_circuit_breaker
from tests.factories import create_campaign, create_started_campaign
from tests.support.jobs import run_queued_jobs

PACKAGE = Path(mailadmin.__file__).resolve().parent
KOLKATA = ZoneInfo("Asia/Kolkata")  # UTC+5:30 all year: minutes in the offset, no daylight saving
TIME_ELEMENT = re.compile(r'<time datetime="([^"]+)" title="([^"]+)" data-local="(\w+)">([^<]*)</time>')
# A clock time in a page's words: it must be followed by the viewer's zone, as the one format writes it.
CLOCK = re.compile(r"(?<![+\-:\d])\d{1,2}:\d{2}(?::\d{2})?(?![\d:])(?! UTC\+5:30)")
# Hand-made formats the pages used to mix in: ISO-like dates with a time.
ISO_LIKE = re.compile(r"\b\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}")


# --- the format ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "style", "expected"),
    [
        ("UTC", "datetime", "7 Dec 2026, 20:04 UTC"),
        ("UTC", "seconds", "7 Dec 2026, 20:04:16 UTC"),
        ("Europe/Paris", "datetime", "7 Dec 2026, 21:04 UTC+1"),
        ("Asia/Kolkata", "seconds", "8 Dec 2026, 01:34:16 UTC+5:30"),
        ("America/St_Johns", "datetime", "7 Dec 2026, 16:34 UTC-3:30"),
        ("America/New_York", "auto", "15:04 UTC-5"),  # today, on the viewer's clock
    ],
)
def test_one_format_names_the_viewers_zone_by_its_offset(zone, style, expected):
    moment = datetime(2026, 12, 7, 20, 4, 16, tzinfo=UTC)
    now = datetime(2026, 12, 7, 22, 0, tzinfo=UTC)

    assert format_moment(moment, ZoneInfo(zone), style, now) == expected


def test_auto_drops_the_year_this_year_and_the_date_today_on_the_viewers_clock():
    moment = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)  # already 2 March in Tokyo

    assert format_moment(moment, UTC, "auto", now=datetime(2026, 3, 1, 10, tzinfo=UTC)) == "23:30 UTC"
    assert format_moment(moment, ZoneInfo("Asia/Tokyo"), "auto", now=datetime(2026, 3, 1, 10, tzinfo=UTC)) == (
        "2 Mar, 08:30 UTC+9")
    assert format_moment(moment, UTC, "auto", now=datetime(2027, 1, 2, tzinfo=UTC)) == "1 Mar 2026, 23:30 UTC"
    assert zone_offset_label(datetime(2026, 7, 1, tzinfo=ZoneInfo("Europe/London"))) == "UTC+1"


def test_a_verdict_with_a_moment_is_plain_utc_text_for_terminals_and_keeps_its_moment_for_pages():
    moment = datetime(2026, 12, 7, 20, 4, 16, tzinfo=UTC)

    verdict = TimedText("quota used up; next token frees at ", moment, "; 2 campaigns wait")

    assert verdict == "quota used up; next token frees at 2026-12-07 20:04:16 UTC; 2 campaigns wait"
    assert verdict.parts[1] == moment and plain_time(None) == "—"


# --- every page --------------------------------------------------------------------------------


@pytest.fixture
def small_quota(app_env):
    app_env["MAILER_SMTP_MAX_PER_HOUR"] = "2"


@pytest.fixture
def a_bit_of_everything(small_quota, app, admin, manager, smtp):
    """Campaigns in every state that shows a time, audit rows, a suppression, a breaker trip, the quota
    used up and sending switched off: each page has times to show."""
    finished = create_started_campaign(manager, 2, name="Sent")
    run_queued_jobs(app.config["SETTINGS"].redis_url)  # the quota (2) is used up by it
    scheduled = create_campaign(manager, 2, name="Later")
    service.start_campaign(scheduled, manager, scheduled_at=utcnow() + timedelta(days=40), enforce_throttle=False)
    db.session.add(AuditEvent(actor_id=manager.id, action="campaign_rescheduled", campaign_id=scheduled.id, details={
        "scheduled_at": (utcnow() + timedelta(days=41)).isoformat(),
        "previous_scheduled_at": (utcnow() + timedelta(days=40)).isoformat()}))
    paused = create_started_campaign(manager, 2, name="Held")
    service.pause_campaign(paused, admin)
    tripped = create_started_campaign(manager, 2, name="Tripped")
    trip_circuit_breaker(tripped.id, 10)
    db.session.add(Suppression(email="gone@example.com", reason="unsubscribed"))
    db.session.commit()
    reserve_send_tokens(get_redis(), 2, 2)  # the quota used up
    sending_switch.set_sending_paused(True, admin)
    return {"finished": finished.id, "scheduled": scheduled.id, "paused": paused.id, "tripped": tripped.id}


def _pages(client, ids: dict[str, int]) -> dict[str, str]:
    pages = {path: client.get(path).get_data(as_text=True) for path in (
        "/", "/admin/operations", "/admin/audit", "/admin/users", "/admin/sending", "/admin/suppressions")}
    for campaign_id in ids.values():
        pages[f"/campaigns/{campaign_id}"] = client.get(f"/campaigns/{campaign_id}").get_data(as_text=True)
        live = client.get(f"/campaigns/{campaign_id}/progress.json").get_json()
        pages[f"/campaigns/{campaign_id}/progress.json"] = "".join(live["html"].values()) + (live["reason_text"] or "")
    return pages


def test_every_time_on_every_page_uses_the_one_format_in_the_viewers_zone(small_quota, admin_client, a_bit_of_everything):
    admin_client.set_cookie("mailadmin_tz", "Asia/Kolkata")
    pages = _pages(admin_client, a_bit_of_everything)
    seen: dict[str, int] = {}
    problems = []
    for path, html in pages.items():
        body = re.sub(r"<script.*?</script>|<head>.*?</head>", "", html, flags=re.S)
        for iso, title, style, text in TIME_ELEMENT.findall(body):
            moment = datetime.fromisoformat(iso)
            seen[path] = seen.get(path, 0) + 1
            if (text, title) != (format_moment(moment, KOLKATA, style), format_utc(moment, style)):
                problems.append(f"{path}: <time {iso} {style}> reads {text!r} (title {title!r})")
        # Outside the `<time>`s: the chart's hour ticks name their zone in the heading; nothing else may
        # show a clock without the viewer's zone, nor an ISO-like timestamp.
        words = TIME_ELEMENT.sub("", body)
        words = re.sub(r'<text[^>]*>\d\d:\d\d</text>', "", words)
        words = re.sub(r"<[^>]+>", " ", words)
        problems += [f"{path}: {m.group(0)!r} in {words[max(0, m.start() - 60):m.end() + 20]!r}"
                     for pattern in (CLOCK, ISO_LIKE) for m in pattern.finditer(words)]
    assert not problems, "\n".join(problems)
    # Each page really showed times (the check above would pass on an empty page).
    for path in ("/", "/admin/operations", "/admin/audit", "/admin/users", "/admin/sending", "/admin/suppressions",
                 f"/campaigns/{a_bit_of_everything['finished']}", f"/campaigns/{a_bit_of_everything['paused']}"):
        assert seen.get(path), f"no time on {path}"
    operations = pages["/admin/operations"]
    assert "ALL SENDING IS OFF since <time" in operations and "next token frees at <time" in operations


# --- no time formatted by hand -----------------------------------------------------------------


def test_no_template_formats_a_time_by_hand():
    """Templates show moments through `local_time` only: no strftime, isoformat or `<time>` of their own."""
    offenders = []
    for path in sorted((PACKAGE / "templates").rglob("*.html")):
        text = path.read_text(encoding="utf-8")
        offenders += [f"{path.relative_to(PACKAGE)}: {needle}" for needle in ("strftime", "isoformat", "<time")
                      if needle in text]
    assert not offenders, offenders


# Where formatting a moment by hand is right: the one format itself, SQL's hour buckets, a file name.
HAND_FORMAT_ALLOWED = {"models/moments.py", "campaigns/queries.py", "devtools/smtp_capture.py"}


def hand_formatted_times(root: Path, allowed: set[str]) -> list[str]:
    """`.strftime(...)` calls and `{moment:%H...}` f-string formats in Python files outside `allowed`."""
    found = []
    for path in sorted(root.rglob("*.py")):
        where = path.relative_to(root).as_posix()
        if where in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            call = isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "strftime"
            spec = isinstance(node, ast.FormattedValue) and node.format_spec is not None and "%" in ast.unparse(
                node.format_spec)
            if call or spec:
                found.append(f"{where}:{node.lineno}")
    return found


def test_no_python_outside_the_one_format_formats_a_time_by_hand(tmp_path):
    assert hand_formatted_times(PACKAGE, HAND_FORMAT_ALLOWED) == []
    # The checker sees both shapes (it must not pass by checking nothing).
    (tmp_path / "views.py").write_text('def a(m):\n    return m.strftime("%H")\n\ndef b(m):\n    return f"{m:%H:%M}"\n')
    assert hand_formatted_times(tmp_path, set()) == ["views.py:2", "views.py:5"]
