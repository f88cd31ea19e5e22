"""Per-user throttles (fail-closed), login protection and the global SMTP rate limiter (fail-open), on real Redis.

Redis: the suite's (TEST_REDIS_URL/REDIS_URL, only that database is flushed, else the embedded
redis-server). Fault tests always start their own redis-server and really stop it.
"""

from __future__ import annotations

import bisect
import hashlib
import multiprocessing
import queue
import random
import threading
from datetime import UTC, datetime, timedelta

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from mailadmin.devtools.redis_server import EmbeddedRedis
from mailadmin.limits.rate_limiter import (
    RATE_LIMIT_KEY,
    RATE_LIMIT_WINDOW_SECONDS,
    rate_limit_usage,
)
from mailadmin.limits.send_pace import (
    PER_SECOND_HEADROOM,
    reserve_send_tokens,
    settle_send_tokens,
    slot_interval,
)
from mailadmin.limits.throttle import (
    ACTION_CAMPAIGN_START,
    ACTION_LOGIN,
    ACTION_TEST_EMAIL,
    LOGIN_ACCOUNT_KEY_TEMPLATE,
    LOGIN_IP_KEY_TEMPLATE,
    LOGIN_THROTTLED_MESSAGE,
    REASON_LIMIT_REACHED,
    THROTTLE_BACKEND_UNAVAILABLE,
    THROTTLE_KEY_TEMPLATE,
    UNAVAILABLE_MESSAGE,
    LoginLimits,
    ThrottleResult,
    check_login_allowed,
    clear_login_failures,
    is_user_throttled,
    login_account_hash,
    login_account_key,
    record_login_failure,
    throttle_message,
)
from mailadmin.limits.waiting_line import (
    WAITING_LINE_DEADLINE_KEY,
    WAITING_LINE_GRACE_SECONDS,
    WAITING_LINE_KEY,
    keep_place_in_line,
    leave_waiting_line,
    waiting_line,
)
from mailadmin.limits.window import KEY_PREFIX, add_to_window, reserve_in_window, window_usage
from mailadmin.pii import email_hash

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
HOUR = 3600
# An exact hour boundary (UTC), so that clock-hour arithmetic in the seed model is easy to read.
T0 = 472_222 * HOUR  # 2023-11-14 22:00:00 UTC


def make_client(url: str) -> redis.Redis:
    """A client with short timeouts and one immediate retry, so a stopped Redis fails fast."""
    return redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1, retry=Retry(NoBackoff(), 1))


def at(seconds: float) -> datetime:
    """UTC datetime of a Unix time given in seconds (exact to the microsecond)."""
    return EPOCH + timedelta(microseconds=round(seconds * 1_000_000))


def take_token(client: redis.Redis, max_per_hour: int, *, now: float | None = None) -> bool:
    """One send's token through the send loop's own path (a batch of one); True when granted."""
    return reserve_send_tokens(client, 1, max_per_hour, now=now).granted == 1


@pytest.fixture
def r(redis_url):
    """A client of the suite's Redis database (TEST_REDIS_URL/REDIS_URL or the embedded server), emptied."""
    client = make_client(redis_url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def stoppable_redis():
    """A redis-server of this test's own, which the test may stop and start again."""
    with EmbeddedRedis() as server:
        client = make_client(server.url)
        yield server, client
        client.close()


# --- per-user throttles -------------------------------------------------------------------------


def test_sixth_test_email_in_an_hour_is_refused_with_the_spec_text(r):
    for expected_count in range(1, 6):
        assert is_user_throttled(r, ACTION_TEST_EMAIL, 7, 5) == (False, expected_count, None)

    is_throttled, count, reason = is_user_throttled(r, ACTION_TEST_EMAIL, 7, 5)

    assert (is_throttled, count, reason) == (True, 5, REASON_LIMIT_REACHED)
    assert throttle_message(ACTION_TEST_EMAIL, 5, reason) == "Test email limit reached (5 test emails per hour)."


def test_eleventh_campaign_start_in_an_hour_is_refused(r):
    results = [is_user_throttled(r, ACTION_CAMPAIGN_START, 7, 10) for _ in range(11)]

    assert [result.is_throttled for result in results] == [False] * 10 + [True]
    assert results[-1] == ThrottleResult(True, 10, REASON_LIMIT_REACHED)
    assert throttle_message(ACTION_CAMPAIGN_START, 10) == "Campaign start limit reached (10 starts per hour)."


def test_throttle_message_uses_the_configured_limit_and_the_singular_for_one():
    assert throttle_message(ACTION_CAMPAIGN_START, 1) == "Campaign start limit reached (1 start per hour)."
    assert throttle_message(ACTION_TEST_EMAIL, 1) == "Test email limit reached (1 test email per hour)."
    assert throttle_message(ACTION_TEST_EMAIL, 12) == "Test email limit reached (12 test emails per hour)."
    assert throttle_message(ACTION_TEST_EMAIL, 5, THROTTLE_BACKEND_UNAVAILABLE) == UNAVAILABLE_MESSAGE
    assert UNAVAILABLE_MESSAGE == "Service temporarily unavailable. Please try again later."
    assert throttle_message(ACTION_LOGIN, 10) == LOGIN_THROTTLED_MESSAGE


def test_throttles_count_per_user_and_per_action(r):
    for _ in range(6):
        is_user_throttled(r, ACTION_TEST_EMAIL, 1, 5)
    assert is_user_throttled(r, ACTION_TEST_EMAIL, 1, 5).is_throttled

    assert is_user_throttled(r, ACTION_TEST_EMAIL, 2, 5) == (False, 1, None)
    assert is_user_throttled(r, ACTION_CAMPAIGN_START, 1, 10) == (False, 1, None)


def test_refused_attempts_are_not_counted(r):
    for i in range(5):
        assert not is_user_throttled(r, ACTION_TEST_EMAIL, 3, 5, now=T0 + i).is_throttled
    for i in range(20):
        assert is_user_throttled(r, ACTION_TEST_EMAIL, 3, 5, now=T0 + 100 + i).is_throttled
    assert r.zcard(THROTTLE_KEY_TEMPLATE.format(action=ACTION_TEST_EMAIL, user_id=3)) == 5

    # Had the 20 refusals been counted, the window would stay full until T0 + 100 + 3600.
    assert is_user_throttled(r, ACTION_TEST_EMAIL, 3, 5, now=T0 + HOUR) == (False, 5, None)
    assert is_user_throttled(r, ACTION_TEST_EMAIL, 3, 5, now=T0 + HOUR).is_throttled


def test_window_slides_and_the_oldest_attempt_frees_exactly_one_hour_later(r):
    for minute in range(0, 50, 10):  # T0, T0+10 min, ... T0+40 min
        assert not is_user_throttled(r, ACTION_TEST_EMAIL, 4, 5, now=T0 + minute * 60).is_throttled

    assert is_user_throttled(r, ACTION_TEST_EMAIL, 4, 5, now=T0 + HOUR - 0.000001).is_throttled
    assert is_user_throttled(r, ACTION_TEST_EMAIL, 4, 5, now=T0 + HOUR) == (False, 5, None)
    assert is_user_throttled(r, ACTION_TEST_EMAIL, 4, 5, now=T0 + HOUR + 599).is_throttled
    assert not is_user_throttled(r, ACTION_TEST_EMAIL, 4, 5, now=T0 + HOUR + 600).is_throttled


def test_throttle_key_is_named_after_action_and_user_and_expires_with_the_window(r):
    is_user_throttled(r, ACTION_CAMPAIGN_START, 42, 10)

    key = THROTTLE_KEY_TEMPLATE.format(action=ACTION_CAMPAIGN_START, user_id=42)
    assert key == "mailadmin:throttle:campaign_start:user:42"
    assert [k.decode() for k in r.keys("*")] == [key]
    assert 0 < r.pttl(key) <= HOUR * 1000


# --- the shared window --------------------------------------------------------------------------


def test_peeking_at_a_window_never_counts(r):
    for _ in range(3):
        reserve_in_window(r, "mailadmin:test:window", 3, 60)
    for _ in range(5):
        usage = window_usage(r, "mailadmin:test:window", 3, 60)
        assert (usage.allowed, usage.count, usage.limit) == (False, 3, 3)
    assert reserve_in_window(r, "mailadmin:test:window", 4, 60, peek=True).allowed
    assert r.zcard("mailadmin:test:window") == 3


def test_adding_to_a_window_records_events_without_a_limit(r):
    counts = [add_to_window(r, "mailadmin:test:failures", 900) for _ in range(4)]

    assert counts == [1, 2, 3, 4]
    assert 0 < r.pttl("mailadmin:test:failures") <= 900 * 1000


def test_next_free_at_is_unset_until_the_window_is_full(r):
    first = reserve_in_window(r, "mailadmin:test:window", 2, 60, now=T0)
    second = reserve_in_window(r, "mailadmin:test:window", 2, 60, now=T0 + 1)

    assert (first.allowed, first.count, first.next_free_at) == (True, 1, None)
    assert (second.allowed, second.count, second.next_free_at) == (True, 2, at(T0 + 60))


# --- login brute-force protection ---------------------------------------------------------------


SALT = "test-salt"
LIMITS = LoginLimits(per_account_ip=10, per_account=100, per_ip=50)


def test_ten_failed_logins_from_one_ip_lock_that_pair_but_not_the_owner_elsewhere(r):
    for _ in range(10):
        assert not check_login_allowed(r, "alice@example.com", "203.0.113.5", LIMITS, SALT).is_throttled
        record_login_failure(r, "alice@example.com", "203.0.113.5", SALT)

    assert check_login_allowed(r, "alice@example.com", "203.0.113.5", LIMITS, SALT) == (True, 10, REASON_LIMIT_REACHED)
    # The owner, from their own address, is not locked out by someone else's guesses.
    assert not check_login_allowed(r, "Alice@Example.com", "198.51.100.9", LIMITS, SALT).is_throttled
    assert check_login_allowed(r, "bob@example.com", "198.51.100.9", LIMITS, SALT) == (False, 0, None)
    # Checking does not count.
    assert r.zcard(login_account_key("alice@example.com", SALT)) == 10


def test_failed_logins_from_many_ips_hit_the_much_higher_per_account_bar(r):
    limits = LoginLimits(per_account_ip=10, per_account=30, per_ip=50)
    for n in range(30):
        record_login_failure(r, "alice@example.com", f"203.0.113.{n}", SALT)

    assert check_login_allowed(r, "alice@example.com", "198.51.100.9", limits, SALT) == (True, 30, REASON_LIMIT_REACHED)


def test_failed_logins_across_accounts_from_one_ip_hit_the_per_ip_limit(r):
    for n in range(5):
        record_login_failure(r, f"user{n}@example.com", "203.0.113.7", SALT)

    limits = LoginLimits(10, 100, 5)
    assert check_login_allowed(r, "new@example.com", "203.0.113.7", limits, SALT) == (True, 5, REASON_LIMIT_REACHED)
    assert not check_login_allowed(r, "new@example.com", "203.0.113.8", limits, SALT).is_throttled


def test_account_lock_lifts_after_the_login_window(r):
    for i in range(10):
        record_login_failure(r, "carol@example.com", "203.0.113.5", SALT, now=T0 + i)

    assert check_login_allowed(r, "carol@example.com", "203.0.113.5", LIMITS, SALT, now=T0 + 899).is_throttled
    assert not check_login_allowed(r, "carol@example.com", "203.0.113.5", LIMITS, SALT, now=T0 + 910).is_throttled


def test_successful_login_clears_the_pair_but_not_the_account_or_ip_counts(r):
    for _ in range(9):
        record_login_failure(r, "dave@example.com", "203.0.113.5", SALT)

    clear_login_failures(r, "DAVE@example.com ", "203.0.113.5", SALT)

    assert check_login_allowed(r, "dave@example.com", "203.0.113.5", LIMITS, SALT) == (False, 0, None)
    assert r.zcard(login_account_key("dave@example.com", SALT)) == 9
    assert r.zcard(LOGIN_IP_KEY_TEMPLATE.format(ip="203.0.113.5")) == 9


def test_login_keys_hash_the_lower_cased_email_with_the_salt_and_never_hold_the_address(r):
    record_login_failure(r, "Erin.Smith@Example.COM", "2001:DB8::1", SALT)
    record_login_failure(r, "erin.smith@example.com", "2001:db8::1", SALT)

    keys = sorted(k.decode() for k in r.keys("*"))
    account_hash = login_account_hash("erin.smith@example.com", SALT)
    assert account_hash == email_hash("erin.smith@example.com", SALT)  # the logs' email_hash
    assert account_hash != login_account_hash("erin.smith@example.com", "another-salt")
    assert account_hash != hashlib.sha256(b"erin.smith@example.com").hexdigest()[:16]
    assert keys == [
        f"mailadmin:throttle:login:account-ip:{account_hash}:2001:db8::1",
        f"mailadmin:throttle:login:account:{account_hash}",
        "mailadmin:throttle:login:ip:2001:db8::1",
    ]
    assert not any("@" in key or "erin" in key.lower() for key in keys)
    assert all(r.zcard(key) == 2 and 0 < r.pttl(key) <= 900 * 1000 for key in keys)


def test_key_names_share_the_mailadmin_prefix():
    assert KEY_PREFIX == "mailadmin:"
    assert THROTTLE_KEY_TEMPLATE == "mailadmin:throttle:{action}:user:{user_id}"
    assert LOGIN_ACCOUNT_KEY_TEMPLATE == "mailadmin:throttle:login:account:{account_hash}"
    assert LOGIN_IP_KEY_TEMPLATE == "mailadmin:throttle:login:ip:{ip}"
    assert RATE_LIMIT_KEY == "mailadmin:ratelimit:smtp"


# --- global SMTP rate limiter -------------------------------------------------------------------


def reference_sliding_log(times_us: list[int], limit: int, window_us: int) -> list[bool]:
    """The rule the limiter must follow, in plain Python: allowed iff fewer than `limit` allowed in (t - window, t]."""
    allowed_at: list[int] = []
    decisions = []
    for t in times_us:
        in_window = len(allowed_at) - bisect.bisect_right(allowed_at, t - window_us)
        decisions.append(in_window < limit)
        if in_window < limit:
            allowed_at.append(t)
    return decisions


def seed_clock_hour_reserve(client: redis.Redis, max_per_hour: int, now: float) -> bool:
    """The seed's scheme: INCR a key named after the current clock hour."""
    key = f"test:seed-ratelimit:{datetime.fromtimestamp(now, UTC):%Y%m%d%H}"
    count = client.incr(key)
    client.expire(key, 2 * HOUR)
    return count <= max_per_hour


def busiest_hour(times_us: list[int], window_us: int = HOUR * 1_000_000) -> int:
    """Most events in any half-open window [s, s + 1 h): every event time and every whole second as a start."""
    times_us = sorted(times_us)
    if not times_us:
        return 0
    seconds = range(times_us[0] // 1_000_000 - HOUR, times_us[-1] // 1_000_000 + 2)
    starts = set(times_us) | {s * 1_000_000 for s in seconds}
    return max(bisect.bisect_left(times_us, s + window_us) - bisect.bisect_left(times_us, s) for s in starts)


def three_hour_schedule(seed: int) -> list[float]:
    """Random send attempts over 3 hours, with bursts on both sides of each full hour."""
    rng = random.Random(seed)
    times = [T0 + rng.uniform(0, 3 * HOUR) for _ in range(150)]
    for boundary in (T0 + HOUR, T0 + 2 * HOUR, T0 + 3 * HOUR):
        times += [boundary + rng.uniform(-300, 300) for _ in range(60)]
    return sorted({round(t, 6) for t in times})


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_no_rolling_hour_ever_holds_more_than_the_quota_over_three_hours(r, seed):
    max_per_hour = 40
    schedule = three_hour_schedule(seed)
    times_us = [round(t * 1_000_000) for t in schedule]

    ours = [take_token(r, max_per_hour, now=t) for t in schedule]
    seeds = [seed_clock_hour_reserve(r, max_per_hour, t) for t in schedule]

    ours_us = [t for t, ok in zip(times_us, ours, strict=True) if ok]
    seeds_us = [t for t, ok in zip(times_us, seeds, strict=True) if ok]
    assert busiest_hour(ours_us) == max_per_hour  # full, and never over
    assert busiest_hour(seeds_us) > max_per_hour  # the clock-hour key overshoots on the same traffic
    # Not stricter than needed either: exactly the decisions of the sliding-log rule.
    assert ours == reference_sliding_log(times_us, max_per_hour, RATE_LIMIT_WINDOW_SECONDS * 1_000_000)


def test_clock_hour_key_lets_twice_the_quota_through_around_the_hour_but_the_rolling_window_does_not(r):
    max_per_hour = 30
    # 30 attempts in the last minute of an hour, 30 in the first minute of the next.
    schedule = [T0 + HOUR - 60 + 2 * i for i in range(30)] + [T0 + HOUR + 2 * i for i in range(30)]

    seeds = [seed_clock_hour_reserve(r, max_per_hour, t) for t in schedule]
    ours = [take_token(r, max_per_hour, now=t) for t in schedule]

    assert sum(seeds) == 2 * max_per_hour  # 60 sends within two minutes
    assert sum(ours) == max_per_hour
    assert ours == [True] * 30 + [False] * 30


def test_next_free_at_is_exactly_the_oldest_reservation_plus_one_hour(r):
    for t in (T0 + 0.123456, T0 + 10, T0 + 20):
        assert take_token(r, 3, now=t)

    refused = reserve_send_tokens(r, 1, 3, now=T0 + 30)

    assert (refused.granted, refused.current_count, refused.next_free_at) == (0, 3, at(T0 + 0.123456 + HOUR))
    usage = rate_limit_usage(r, 3, now=T0 + 30)
    assert (usage.allowed, usage.current_count, usage.next_free_at) == (False, 3, refused.next_free_at)
    assert not take_token(r, 3, now=T0 + HOUR + 0.123455)
    assert take_token(r, 3, now=T0 + HOUR + 0.123456)
    assert rate_limit_usage(r, 3, now=T0 + HOUR + 1).next_free_at == at(T0 + 10 + HOUR)


def test_next_free_at_after_the_quota_was_lowered_is_when_usage_drops_below_the_new_quota(r):
    for i in range(5):
        assert take_token(r, 5, now=T0 + i)

    refused = reserve_send_tokens(r, 1, 3, now=T0 + 10)

    # T0, T0+1 and T0+2 must expire before 2 < 3 tokens are in use.
    assert (refused.granted, refused.current_count, refused.next_free_at) == (0, 5, at(T0 + 2 + HOUR))
    assert not take_token(r, 3, now=T0 + 1 + HOUR)
    assert take_token(r, 3, now=T0 + 2 + HOUR)


def test_next_free_at_uses_the_redis_server_clock_when_no_time_is_given(r):
    server_before = r.time()
    for _ in range(3):
        assert take_token(r, 3)

    refused = reserve_send_tokens(r, 1, 3)

    oldest_us = int(r.zrange(RATE_LIMIT_KEY, 0, 0, withscores=True)[0][1])
    assert refused.granted == 0
    assert refused.next_free_at == EPOCH + timedelta(microseconds=oldest_us + HOUR * 1_000_000)
    assert oldest_us >= server_before[0] * 1_000_000 + server_before[1]
    usage = rate_limit_usage(r, 3)
    assert (usage.current_count, usage.max_per_hour, usage.next_free_at) == (3, 3, refused.next_free_at)
    assert 0 < r.pttl(RATE_LIMIT_KEY) <= HOUR * 1000


def test_rate_limit_usage_reports_used_and_max_without_reserving(r):
    take_token(r, 100)
    take_token(r, 100)

    usage = rate_limit_usage(r, 100)

    assert (usage.allowed, usage.current_count, usage.max_per_hour, usage.next_free_at) == (True, 2, 100, None)
    assert r.zcard(RATE_LIMIT_KEY) == 2


def test_reserving_a_token_logs_a_debug_record_with_the_window(r, log_records):
    reserve_send_tokens(r, 3, 100, campaign_id=5)

    (record,) = [rec for rec in log_records if rec["message"] == "Rate limit token reserve"]
    assert record["level"].name == "DEBUG"
    assert record["extra"] == {
        "campaign_id": 5,
        "allowed": True,
        "current_count": 3,
        "max_per_hour": 100,
        "window": "rolling_3600s",
        "wanted": 3,
        "granted": 3,
        "waiting_ahead": 0,
        "max_per_second": 0,
    }


def reserve_many(url: str, attempts: int, start, results) -> None:
    """Worker body for the concurrency test: wait for the start signal, then reserve as fast as possible."""
    client = make_client(url)
    try:
        start.wait(30)
        results.put(sum(take_token(client, 20) for _ in range(attempts)))
    finally:
        client.close()


def test_three_threads_and_two_processes_racing_never_reserve_more_than_the_quota(r, redis_url):
    # fork: the child needs no import of this test module; processes start before any thread.
    context = multiprocessing.get_context("fork")
    process_start, process_results = context.Event(), context.Queue()
    processes = [
        context.Process(target=reserve_many, args=(redis_url, 40, process_start, process_results))
        for _ in range(2)
    ]
    for process in processes:
        process.start()
    thread_start, thread_results = threading.Event(), queue.Queue()
    threads = [
        threading.Thread(target=reserve_many, args=(redis_url, 40, thread_start, thread_results))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()

    process_start.set()
    thread_start.set()
    allowed = [process_results.get(timeout=30) for _ in processes]
    for thread in threads:
        thread.join(timeout=30)
    allowed += [thread_results.get(timeout=1) for _ in threads]
    for process in processes:
        process.join(timeout=30)

    assert [process.exitcode for process in processes] == [0, 0]
    assert sum(allowed) == 20
    assert r.zcard(RATE_LIMIT_KEY) == 20


# --- Redis really stopped -----------------------------------------------------------------------


def test_throttle_refuses_while_redis_is_down_and_works_again_after(stoppable_redis, log_records):
    server, client = stoppable_redis
    assert is_user_throttled(client, ACTION_CAMPAIGN_START, 11, 10) == (False, 1, None)
    server.stop()

    result = is_user_throttled(client, ACTION_CAMPAIGN_START, 11, 10)

    assert result == ThrottleResult(True, 0, THROTTLE_BACKEND_UNAVAILABLE)
    assert throttle_message(ACTION_CAMPAIGN_START, 10, result.reason) == UNAVAILABLE_MESSAGE
    (record,) = [rec for rec in log_records if rec["message"] == "Throttle backend unavailable"]
    assert record["level"].name == "ERROR"
    assert record["extra"]["policy"] == "fail_closed"
    assert record["extra"]["action"] == ACTION_CAMPAIGN_START
    assert record["extra"]["user_id"] == 11
    assert record["extra"]["error_type"] == "ConnectionError"

    server.start()
    assert is_user_throttled(client, ACTION_CAMPAIGN_START, 11, 10) == (False, 1, None)


def test_rate_limiter_allows_while_redis_is_down_and_works_again_after(stoppable_redis, log_records):
    server, client = stoppable_redis
    assert reserve_send_tokens(client, 1, 100, campaign_id=3).backend_available
    server.stop()

    reservation = reserve_send_tokens(client, 1, 100, campaign_id=3)

    assert (reservation.granted, reservation.current_count, reservation.next_free_at) == (1, 0, None)
    assert not reservation.backend_available
    (record,) = [rec for rec in log_records if rec["message"] == "Error reserving rate limit token (Redis unavailable)"]
    assert record["level"].name == "ERROR"
    assert record["extra"]["policy"] == "fail_open"
    assert record["extra"]["campaign_id"] == 3
    assert record["extra"]["error_type"] == "ConnectionError"
    assert not rate_limit_usage(client, 100).backend_available

    server.start()
    after = reserve_send_tokens(client, 1, 100, campaign_id=3)
    assert (after.granted, after.current_count, after.backend_available) == (1, 1, True)


def test_login_is_refused_while_redis_is_down(stoppable_redis, log_records):
    server, client = stoppable_redis
    server.stop()

    assert check_login_allowed(client, "frank@example.com", "203.0.113.5", LIMITS, SALT) == (
        True,
        0,
        THROTTLE_BACKEND_UNAVAILABLE,
    )
    record_login_failure(client, "frank@example.com", "203.0.113.5", SALT)  # must not raise
    clear_login_failures(client, "frank@example.com", "203.0.113.5", SALT)  # must not raise

    errors = [rec for rec in log_records if rec["message"] == "Throttle backend unavailable"]
    assert len(errors) == 3
    assert all(rec["extra"]["policy"] == "fail_closed" for rec in errors)
    assert not any("frank" in str(rec["extra"]) or "frank" in rec["message"] for rec in log_records)

    server.start()
    assert check_login_allowed(client, "frank@example.com", "203.0.113.5", LIMITS, SALT) == (False, 0, None)


# --- batch tokens and the per-second pace (send_pace) --------------------------------------------


def test_a_batch_takes_hourly_tokens_in_one_call_and_is_cut_to_what_is_left(r):
    first = reserve_send_tokens(r, 8, max_per_hour=10, now=T0)
    second = reserve_send_tokens(r, 8, max_per_hour=10, now=T0 + 1)
    third = reserve_send_tokens(r, 8, max_per_hour=10, now=T0 + 2)

    assert (first.granted, second.granted, third.granted) == (8, 2, 0)
    assert third.next_free_at == at(T0 + HOUR)  # the oldest token frees exactly an hour later
    assert r.zcard(RATE_LIMIT_KEY) == 10


def test_unused_tokens_go_back_and_used_ones_move_to_when_their_message_went_out(r):
    batch = reserve_send_tokens(r, 5, max_per_hour=5, now=T0)
    batch.finish(0, T0 + 0.5)
    batch.finish(1, T0 + 1.5)

    settle_send_tokens(r, batch)

    assert [score / 1_000_000 for _, score in r.zrange(RATE_LIMIT_KEY, 0, -1, withscores=True)] == [T0 + 0.5, T0 + 1.5]
    refill = reserve_send_tokens(r, 5, max_per_hour=5, now=T0 + 2)
    assert refill.granted == 3
    # The hour counts from when the messages went out, not from when their tokens were taken.
    assert reserve_send_tokens(r, 1, max_per_hour=5, now=T0 + HOUR + 0.4).granted == 0
    assert reserve_send_tokens(r, 1, max_per_hour=5, now=T0 + HOUR + 0.6).granted == 1


def test_per_second_slots_are_evenly_spaced_across_batches_and_clients(r, redis_url):
    other = make_client(redis_url)
    interval = slot_interval(14)
    batches = [reserve_send_tokens(client, 5, 10**6, 14, now=T0) for client in (r, other, r)]
    other.close()

    slots = [slot for batch in batches for slot in batch.slots]
    assert interval == pytest.approx(1 / (14 * PER_SECOND_HEADROOM))
    assert slots == pytest.approx([T0 + i * interval for i in range(15)], abs=1e-6)


def test_per_second_pace_never_puts_more_than_the_cap_in_any_second_with_threads_racing(r, redis_url):
    slots: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        client = make_client(redis_url)
        for _ in range(10):
            batch = reserve_send_tokens(client, random.randint(1, 7), 10**6, 14)
            with lock:
                slots.extend(batch.slots)
        client.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    slots.sort()
    assert len(slots) == len(set(slots)) > 40
    # Any 15 consecutive slots span more than a second (with room for the provider's jitter).
    assert min(slots[i + 14] - slots[i] for i in range(len(slots) - 14)) >= 1.1


def test_a_slot_given_back_at_the_tail_is_reused_but_not_one_someone_reserved_behind(r):
    interval = slot_interval(10)
    batch = reserve_send_tokens(r, 4, 10**6, 10, now=T0)
    batch.finish(0, T0)
    settle_send_tokens(r, batch)  # three unused slots at the tail come back
    again = reserve_send_tokens(r, 2, 10**6, 10, now=T0)
    blocked = reserve_send_tokens(r, 2, 10**6, 10, now=T0)
    settle_send_tokens(r, again)  # someone reserved behind: the pace stays where it is

    assert again.slots == pytest.approx([T0 + interval, T0 + 2 * interval])
    assert reserve_send_tokens(r, 1, 10**6, 10, now=T0).slots == pytest.approx([blocked.slots[-1] + interval])


def test_batch_tokens_are_granted_and_paced_locally_while_redis_is_down(stoppable_redis, log_records):
    server, client = stoppable_redis
    server.stop()

    batch = reserve_send_tokens(client, 3, 100, 10, campaign_id=3, now=T0)
    settle_send_tokens(client, batch)  # nothing to give back, and no error either

    assert batch.slots == pytest.approx([T0, T0 + slot_interval(10), T0 + 2 * slot_interval(10)])
    assert not batch.backend_available
    (record,) = [rec for rec in log_records if rec["message"] == "Error reserving rate limit token (Redis unavailable)"]
    assert (record["level"].name, record["extra"]["policy"], record["extra"]["campaign_id"]) == ("ERROR", "fail_open", 3)
    server.start()
    assert reserve_send_tokens(client, 3, 100, 10).backend_available


# --- the quota's waiting line (fairness) ----------------------------------------------------------


def ask(client: redis.Redis, campaign_id: int, now: float, *, wanted: int = 1, batch_size: int = 1, quota: int = 3):
    """Campaign `campaign_id` asks for `wanted` tokens at `now`, as its send slice would."""
    return reserve_send_tokens(client, wanted, quota, campaign_id=campaign_id, batch_size=batch_size, now=now)


def line_of(client: redis.Redis) -> list[int]:
    return [waiter.campaign_id for waiter in waiting_line(client)]


def test_three_waiting_campaigns_get_freed_tokens_in_the_order_they_started_waiting(r):
    for t in (T0, T0 + 10, T0 + 20):  # the quota is used up; one token frees at each of these + 1 h
        assert take_token(r, 3, now=t)
    told = {campaign: ask(r, campaign, T0 + 30 + campaign).next_free_at for campaign in (1, 2, 3)}

    # Each is told when a token frees beyond one batch for each campaign ahead of it.
    assert told == {1: at(T0 + HOUR), 2: at(T0 + 10 + HOUR), 3: at(T0 + 20 + HOUR)}
    assert line_of(r) == [1, 2, 3]
    # As each token frees, the campaigns ask last-in-line first: only the first in line gets it.
    granted = []
    for freed in (T0 + HOUR, T0 + 10 + HOUR, T0 + 20 + HOUR):
        granted += [campaign for campaign in (3, 2, 1) if campaign in line_of(r) and ask(r, campaign, freed).granted]
    assert granted == [1, 2, 3]
    assert line_of(r) == [] and not r.exists(WAITING_LINE_KEY, WAITING_LINE_DEADLINE_KEY)


def test_a_campaign_with_part_of_its_batch_goes_to_the_back_so_two_campaigns_alternate(r):
    for t in (T0, T0 + 10, T0 + 20):
        assert take_token(r, 3, now=t)
    ask(r, 1, T0 + 30, wanted=2, batch_size=2)
    ask(r, 2, T0 + 31, wanted=2, batch_size=2)

    granted = []
    for freed in (T0 + HOUR, T0 + 10 + HOUR, T0 + 20 + HOUR):
        # The campaign later in line asks first each time.
        for campaign in reversed(line_of(r)):
            if ask(r, campaign, freed, wanted=2, batch_size=2).granted:
                granted.append(campaign)

    assert granted == [1, 2, 1]


def test_a_waiter_that_never_comes_back_blocks_the_line_for_the_grace_at_most(r):
    assert reserve_send_tokens(r, 3, 3, now=T0).granted == 3
    assert ask(r, 1, T0 + 30, wanted=3, batch_size=3).granted == 0  # campaign 1 waits first, then is paused

    behind = ask(r, 2, T0 + HOUR, wanted=3, batch_size=3)  # the tokens are free, but held for campaign 1

    deadline = T0 + HOUR + WAITING_LINE_GRACE_SECONDS
    assert (behind.granted, behind.next_free_at) == (0, at(deadline))  # told to come back when 1 loses its place
    assert ask(r, 2, deadline - 1, wanted=3, batch_size=3).granted == 0
    assert ask(r, 2, deadline, wanted=3, batch_size=3).granted == 3
    assert line_of(r) == []


def test_plenty_of_quota_leaves_the_line_empty_and_a_waiter_takes_only_what_is_beyond_the_held_batches(r):
    assert ask(r, 1, T0, wanted=50, batch_size=50, quota=100).granted == 50
    assert not r.exists(WAITING_LINE_KEY)
    keep_place_in_line(r, 7, at(T0 + 300), now=T0 + 1)  # deferred by a 451: keeps a batch until its retry

    assert ask(r, 2, T0 + 2, wanted=50, batch_size=30, quota=100).granted == 20
    assert line_of(r) == [7, 2]  # 2 got part of what it asked: behind 7
    leave_waiting_line(r, 7)
    assert ask(r, 2, T0 + 3, wanted=30, batch_size=30, quota=100).granted == 30
    assert line_of(r) == []


def test_a_refused_message_gives_its_token_back_and_an_accepted_or_unanswered_one_counts(r):
    batch = reserve_send_tokens(r, 4, 10, campaign_id=1, now=T0)
    batch.begin(0, T0 + 0.1)
    batch.finish(0, T0 + 0.1)  # accepted (250 after DATA)
    batch.begin(1, T0 + 0.2)
    batch.finish(1, T0 + 0.2, counted=False)  # refused (4xx/5xx to RCPT or DATA)
    batch.begin(2, T0 + 0.3)  # still in flight when settled: its verdict is open, it counts
    batch.finish(3, None)  # never used

    settle_send_tokens(r, batch)

    assert [score / 1_000_000 for _, score in r.zrange(RATE_LIMIT_KEY, 0, -1, withscores=True)] == [T0 + 0.1, T0 + 0.3]
