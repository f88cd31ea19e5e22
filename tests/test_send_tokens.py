"""The send slice's token books (`mailadmin/jobs/send/tokens.py`) on real Redis: how many tokens one
reservation asks for, which tokens go back when a batch is settled, and when a refused quota is asked again."""

from __future__ import annotations

import time

from mailadmin.extensions import get_redis, get_settings
from mailadmin.jobs.send.tokens import TokenBooks
from mailadmin.limits.handover import Accepted, read_handover_record
from mailadmin.limits.rate_limiter import rate_limit_moments
from mailadmin.limits.send_pace import TokenBatch
from mailadmin.models.types import utcnow
from mailadmin.services.delivery import Claim
from tests.support.env import with_env

CAMPAIGN_ID = 7
JOB_ID = "send-7-test"


def claims(count: int, first: int = 1) -> list[Claim]:
    return [Claim(first + index, f"r{first + index}@example.test", None, None) for index in range(count)]


def new_books() -> TokenBooks:
    return TokenBooks(get_redis(), get_settings(), CAMPAIGN_ID, utcnow)


def tokens_in_the_hour() -> int:
    return len(rate_limit_moments(get_redis()))


@with_env(MAILER_SMTP_MAX_PER_HOUR="10", MAILER_SEND_BATCH_SIZE="3")
def test_one_reservation_asks_for_one_claim_batch_at_most(engine_env, app):
    books = new_books()

    assert [books.wanted(waiting, free_connections=0, room=100) for waiting in (1, 3, 8)] == [1, 3, 3]
    tokens = books.reserve(claims(3), JOB_ID)
    assert tokens.granted == 3 and tokens_in_the_hour() == 3 and books.batches == [tokens]


@with_env(MAILER_SMTP_MAX_PER_SECOND="10", MAILER_SEND_BATCH_SIZE="5")
def test_paced_sending_asks_only_for_the_connections_free_now(engine_env, app):
    books = new_books()

    assert [books.wanted(8, free_connections=free, room=100) for free in (0, 2, 9)] == [0, 2, 5]


@with_env(MAILER_SEND_BATCH_SIZE="50")
def test_a_reservation_asks_no_more_than_the_connections_have_room_for(engine_env, app):
    books = new_books()

    assert [books.wanted(40, free_connections=0, room=room) for room in (-2, 0, 12, 60)] == [0, 0, 12, 40]


@with_env(MAILER_SMTP_MAX_PER_HOUR="3", MAILER_SEND_BATCH_SIZE="5")
def test_the_reservation_adds_the_recipients_granted_a_token_to_the_jobs_hand_over_record(engine_env, app):
    books = new_books()
    assert read_handover_record(get_redis(), JOB_ID).handed_over is None  # nothing handed over yet

    assert books.reserve(claims(2, first=10), JOB_ID).granted == 2
    accepted = [Accepted(10, 250, "<10.ab@mailadmin.test>", 1_800_000_000.25)]
    assert books.reserve(claims(4, first=20), JOB_ID, accepted).granted == 1  # the quota's last token
    assert books.reserve(claims(1, first=30), JOB_ID, [Accepted(11, 250, None, 1_800_000_001.0)]) is None

    record = read_handover_record(get_redis(), JOB_ID)
    assert record.handed_over == {10, 11, 20}  # 30 was refused a token: never handed over
    assert record.accepted == [*accepted, Accepted(11, 250, None, 1_800_000_001.0)]


@with_env(MAILER_SMTP_MAX_PER_HOUR="10", MAILER_SEND_BATCH_SIZE="4")
def test_settling_keeps_accepted_and_lost_verdict_tokens_and_gives_back_refused_and_unused_ones(engine_env, app):
    books = new_books()
    tokens = books.reserve(claims(4), JOB_ID)
    now = time.time()
    tokens.finish(0, now)  # accepted
    tokens.finish(1, now, counted=False)  # refused by the relay
    tokens.finish(2, None)  # never sent (build failure, or given back untried)
    tokens.finish(3, now, counted=True)  # verdict lost after the whole message went out

    books.settle(finished_only=False)

    assert tokens_in_the_hour() == 2 and books.batches == []
    assert books.refusals_given_back  # a refused message gave its token back


@with_env(MAILER_SMTP_MAX_PER_HOUR="10", MAILER_SEND_BATCH_SIZE="2")
def test_a_batch_with_a_message_in_flight_is_settled_only_when_that_message_is_done(engine_env, app):
    books = new_books()
    tokens = books.reserve(claims(2), JOB_ID)
    tokens.finish(0, None)

    books.settle(finished_only=True)
    assert books.batches == [tokens] and tokens_in_the_hour() == 2

    tokens.finish(1, time.time())
    books.settle(finished_only=True)
    assert books.batches == [] and tokens_in_the_hour() == 1


def refused_after_the_whole_quota(books: TokenBooks) -> TokenBatch:
    """Reserve the whole quota (2 tokens), then be refused: the tokens in hand, their messages not sent yet."""
    tokens = books.reserve(claims(2), JOB_ID)
    assert books.reserve(claims(1), JOB_ID) is None and books.refused_until is not None
    return tokens


@with_env(MAILER_SMTP_MAX_PER_HOUR="2", MAILER_SEND_BATCH_SIZE="2")
def test_a_refused_quota_is_asked_again_only_after_a_refused_message_gave_its_token_back(engine_env, app):
    books = new_books()
    tokens = refused_after_the_whole_quota(books)
    assert not books.may_ask_again()  # nothing settled yet

    tokens.finish(0, time.time())
    tokens.finish(1, time.time(), counted=False)

    assert books.may_ask_again() and books.refused_until is None
    assert books.reserve(claims(1), JOB_ID).granted == 1 and tokens_in_the_hour() == 2


@with_env(MAILER_SMTP_MAX_PER_HOUR="2", MAILER_SEND_BATCH_SIZE="2")
def test_a_refused_quota_stays_refused_when_the_relay_refused_none_of_the_messages_in_hand(engine_env, app):
    books = new_books()
    tokens = refused_after_the_whole_quota(books)
    refused_until = books.refused_until

    tokens.finish(0, time.time())
    tokens.finish(1, None)  # an unused token goes back too, but nothing the relay refused

    assert not books.may_ask_again() and books.refused_until == refused_until
    assert tokens_in_the_hour() == 1
