"""The start page's estimate (a pure function). Plural wording: tests/test_languages.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mailadmin.campaigns.display import format_duration
from mailadmin.services.estimates import ASSUMED_PER_SECOND, estimate_sending, send_speed

NOW = datetime(2031, 5, 3, 12, 0, tzinfo=UTC)


def sends(count: int, start: datetime, every: timedelta = timedelta(seconds=1)) -> list[datetime]:
    return [start + every * n for n in range(count)]


def test_a_small_campaign_with_the_quota_free_takes_seconds_at_the_measured_speed():
    # 21 recipients that really went out in about 2 s must not be promised "13 min".
    estimate = estimate_sending(21, now=NOW, max_per_hour=100, window_sends=[], measured_per_second=10)
    assert estimate.duration == timedelta(seconds=2)
    assert not estimate.waits_for_quota and estimate.free_now == 100 and estimate.next_free_at is None
    assert format_duration(estimate.duration) == "under a minute"


def test_with_the_quota_used_up_it_waits_for_the_oldest_sends_to_leave_the_hour():
    # 100 of 100 used over the last 50 minutes: the first slot frees 10 minutes from now.
    used = sends(100, NOW - timedelta(minutes=50), timedelta(seconds=30))
    estimate = estimate_sending(3, now=NOW, max_per_hour=100, window_sends=used, measured_per_second=10)
    assert estimate.free_now == 0 and estimate.waits_for_quota
    assert estimate.next_free_at == NOW + timedelta(minutes=10)
    # Each next message waits for the next old send to expire (one every 30 s).
    assert estimate.finishes_at == NOW + timedelta(minutes=11)
    assert format_duration(estimate.duration) == "11 min"


def test_a_campaign_larger_than_the_quota_takes_whole_hours():
    estimate = estimate_sending(417, now=NOW, max_per_hour=100, window_sends=[], measured_per_second=50)
    assert estimate.waits_for_quota
    # 100 now, 100 an hour later, ... the last 17 go four hours after the first.
    assert timedelta(hours=4) <= estimate.duration < timedelta(hours=4, minutes=1)
    assert format_duration(estimate.duration) == "4 h"


def test_part_of_the_quota_free_sends_that_part_at_once_then_waits():
    used = sends(90, NOW - timedelta(minutes=30), timedelta(seconds=1))
    estimate = estimate_sending(15, now=NOW, max_per_hour=100, window_sends=used, measured_per_second=100)
    assert estimate.free_now == 10 and estimate.next_free_at is None
    # 10 go now; the other 5 when the five oldest sends leave the window, 30 minutes from now.
    assert estimate.finishes_at == NOW + timedelta(minutes=30, seconds=4)


def test_sends_older_than_an_hour_do_not_count():
    stale = sends(100, NOW - timedelta(hours=2))
    estimate = estimate_sending(5, now=NOW, max_per_hour=100, window_sends=stale, measured_per_second=5)
    assert estimate.free_now == 100 and not estimate.waits_for_quota


def test_the_per_second_cap_is_used_when_it_is_slower_than_the_measured_speed():
    estimate = estimate_sending(29, now=NOW, max_per_hour=1000, window_sends=[], max_per_second=14, measured_per_second=40)
    assert estimate.per_second == 14 and estimate.duration == timedelta(seconds=2)


@pytest.mark.parametrize(
    ("cap", "measured", "expected"),
    [(0, None, (ASSUMED_PER_SECOND, False)), (0, 8.0, (8.0, True)), (14, None, (14, False)), (14, 3.0, (3.0, True))],
)
def test_send_speed_is_the_slower_of_the_cap_and_the_measurement_and_zero_means_off(cap, measured, expected):
    assert send_speed(cap, measured) == expected


def test_nothing_to_send_takes_no_time():
    estimate = estimate_sending(0, now=NOW, max_per_hour=100, window_sends=[])
    assert estimate.duration == timedelta(0) and estimate.finishes_at == NOW


def test_the_measured_speed_is_the_fastest_recent_finished_campaign(app, make_user):
    from mailadmin.extensions import db
    from mailadmin.models import Campaign, Recipient
    from mailadmin.services.estimates import measured_send_rate

    owner = make_user("m@example.com")
    assert measured_send_rate() is None
    for name, seconds in (("slow", 100.0), ("fast", 2.0)):
        campaign = Campaign(owner_id=owner.id, name=name, subject="s", body_text="t", status="finished",
                            sent_count=10, recipients_total=10, finished_at=NOW)
        db.session.add(campaign)
        db.session.flush()
        for n in range(10):
            moment = NOW + timedelta(seconds=seconds * n / 9)
            db.session.add(Recipient(campaign_id=campaign.id, email=f"{n}@{name}.test", status="sent", sent_at=moment))
    db.session.commit()
    assert measured_send_rate() == pytest.approx(10 / 2.0)
