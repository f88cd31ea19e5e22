"""A list's public subscription form and double opt-in: the sign-up, its guards (honeypot, fill time,
rate limits, fail-closed), the same answer for a known and an unknown address, the confirmation
mail through the real SMTP capture and the quota's head of line, and the signed confirm link."""

from __future__ import annotations

import re
import time

import pytest
from sqlalchemy import func, select

from mailadmin.extensions import db, get_redis, get_settings
from mailadmin.limits.form_throttle import SUBSCRIBE_PER_CLIENT_PER_HOUR, check_subscribe_allowed
from mailadmin.limits.send_pace import reserve_send_tokens, settle_send_tokens
from mailadmin.limits.waiting_line import waiting_line
from mailadmin.models import Contact, ListMembership
from mailadmin.services.audiences.subscriptions import send_confirmations, set_form_published
from mailadmin.subscribe.form_guard import HONEYPOT_FIELD, STAMP_FIELD, make_form_stamp
from tests.factories import add_member, create_list, membership_history, membership_status
from tests.support.jobs import run_queued_jobs
from tests.support.web import submit

CONFIRM_LINK = re.compile(r"http://mailadmin\.test(/subscribe/confirm/[A-Za-z0-9_.\-]+)")


def sign_up(client, mailing_list, email: str, *, name: str = "", served_seconds_ago: float = 10, **extra):
    """POST the hosted form as a person who took `served_seconds_ago` to fill it in."""
    stamp = make_form_stamp(get_settings().secret_key, mailing_list.public_id, now=time.time() - served_seconds_ago)
    data = {"email": email, "name": name, STAMP_FIELD: stamp, HONEYPOT_FIELD: "", **extra}
    return client.post(f"/subscribe/{mailing_list.public_id}", data=data)


def contact_named(email: str) -> Contact | None:
    db.session.expire_all()
    return db.session.scalar(select(Contact).where(Contact.email == email))


def confirm_path(message) -> str:
    match = CONFIRM_LINK.search(message.parsed().get_content())
    assert match, message.parsed().get_content()
    return match.group(1)


def test_double_opt_in_end_to_end_form_to_mail_to_link_to_subscribed(app, app_env, client, manager, smtp):
    newsletter = create_list(manager, "Product news", opt_in="double", published=True)
    assert client.get(f"/subscribe/{newsletter.public_id}").status_code == 200

    answer = sign_up(client, newsletter, "Jane@Example.com", name="Jane")
    assert answer.status_code == 200 and b"check your inbox" in answer.data
    jane = contact_named("jane@example.com")
    assert membership_status(newsletter, jane) == "unconfirmed"

    run_queued_jobs(app_env["REDIS_URL"])
    [mail] = smtp.messages
    assert mail.rcpt_tos == ("jane@example.com",) and "Product news" in mail.subject
    path = confirm_path(mail)

    assert b"Confirm my subscription" in client.get(path).data
    assert membership_status(newsletter, jane) == "unconfirmed"  # a GET (a link scanner) confirms nothing
    assert b"You are subscribed" in client.post(path).data
    assert b"You are subscribed" in client.post(path).data  # confirming twice is harmless
    assert membership_status(newsletter, jane) == "subscribed"
    assert membership_history(newsletter, jane) == [(None, "unconfirmed", "form"),
                                                    ("unconfirmed", "subscribed", "confirmation")]


def test_a_single_opt_in_list_subscribes_at_once_and_sends_nothing(app, app_env, client, manager, smtp):
    news = create_list(manager, opt_in="single", published=True)
    assert sign_up(client, news, "max@example.com").status_code == 200
    assert membership_status(news, contact_named("max@example.com")) == "subscribed"
    run_queued_jobs(app_env["REDIS_URL"])
    assert smtp.messages == []


def test_the_answer_is_the_same_whether_or_not_the_address_is_known(app, client, manager):
    news = create_list(manager, opt_in="double", published=True)
    add_member(news, "known@example.com", "subscribed", name="Known Person")
    add_member(news, "gone@example.com", "unsubscribed")

    answers = {email: sign_up(client, news, email, name="Someone Else") for email in
               ("new@example.com", "known@example.com", "gone@example.com")}

    assert {answer.status_code for answer in answers.values()} == {200}
    assert len({answer.data for answer in answers.values()}) == 1
    assert contact_named("known@example.com").name == "Known Person"  # a stranger cannot rewrite a known contact
    assert membership_status(news, contact_named("known@example.com")) == "subscribed"


def test_a_filled_honeypot_is_answered_like_a_sign_up_and_stores_nothing(app, client, manager):
    news = create_list(manager, opt_in="double", published=True)
    bot = sign_up(client, news, "bot@example.com", **{HONEYPOT_FIELD: "http://spam.example"})
    person = sign_up(client, news, "person@example.com")
    assert bot.status_code == 200 and bot.data == person.data
    assert contact_named("bot@example.com") is None


def test_a_form_sent_sooner_than_the_minimum_fill_time_is_refused(app, client, manager):
    news = create_list(manager, published=True)
    answer = sign_up(client, news, "quick@example.com", served_seconds_ago=0)
    assert answer.status_code == 400 and b"press Subscribe again" in answer.data
    assert contact_named("quick@example.com") is None


def test_a_forged_or_another_lists_stamp_is_refused(app, client, manager):
    news, other = create_list(manager, published=True), create_list(manager, "Other", published=True)
    forged = sign_up(client, news, "a@example.com", **{STAMP_FIELD: "x.y.z"})
    elsewhere = client.post(f"/subscribe/{news.public_id}", data={
        "email": "b@example.com", STAMP_FIELD: make_form_stamp(get_settings().secret_key, other.public_id,
                                                               now=time.time() - 60)})
    assert forged.status_code == elsewhere.status_code == 400
    assert db.session.scalar(select(func.count()).select_from(Contact)) == 0


def test_the_snippets_post_without_a_stamp_gets_the_form_back_filled_in(app, client, manager):
    news = create_list(manager, published=True)
    answer = client.post(f"/subscribe/{news.public_id}", data={"email": "snippet@example.com", "name": "Sam"})
    assert answer.status_code == 200 and b'value="snippet@example.com"' in answer.data
    assert STAMP_FIELD.encode() in answer.data and contact_named("snippet@example.com") is None


def test_sign_ups_beyond_the_limit_per_client_address_are_refused(app, client, manager):
    news = create_list(manager, published=True)
    for index in range(SUBSCRIBE_PER_CLIENT_PER_HOUR):
        assert sign_up(client, news, f"p{index}@example.com").status_code == 200
    refused = sign_up(client, news, "one-more@example.com")
    assert refused.status_code == 429 and b"Too many sign-ups" in refused.data
    assert contact_named("one-more@example.com") is None


def test_the_limit_per_list_counts_every_client_address(app, manager):
    redis = get_redis()
    verdicts = [check_subscribe_allowed(redis, f"192.0.2.{n}", 7, per_list=3).is_throttled for n in range(4)]
    assert verdicts == [False, False, False, True]
    assert not check_subscribe_allowed(redis, "192.0.2.9", 8, per_list=3).is_throttled  # another list


def test_sign_ups_are_refused_while_redis_is_down(own_redis, app, client, manager):
    news = create_list(manager, published=True)
    own_redis.stop()
    answer = sign_up(client, news, "later@example.com")
    assert answer.status_code == 503 and b"Service temporarily unavailable" in answer.data
    assert contact_named("later@example.com") is None


def test_an_unpublished_or_unknown_form_answers_404(app, client, manager):
    news = create_list(manager, published=True)
    set_form_published(news.id, False, manager)
    assert client.get(f"/subscribe/{news.public_id}").status_code == 404
    assert sign_up(client, news, "x@example.com").status_code == 404
    assert client.get("/subscribe/no-such-form").status_code == 404


def test_a_forged_confirmation_link_changes_nothing(app, client):
    assert client.post("/subscribe/confirm/forged.token").status_code == 404
    assert client.get("/subscribe/confirm/forged.token").status_code == 404


def test_send_confirmations_mails_the_unconfirmed_members_an_import_made(app, app_env, manager, smtp):
    news = create_list(manager, opt_in="double")
    waiting = [add_member(news, f"new{n}@example.com", "unconfirmed") for n in range(3)]
    member = add_member(news, "member@example.com", "subscribed")

    send_confirmations(news.id, [contact.id for contact in [*waiting, member]])
    run_queued_jobs(app_env["REDIS_URL"])

    assert sorted(smtp.recipients()) == [f"new{n}@example.com" for n in range(3)]


def test_no_confirmation_goes_to_a_suppressed_address(app, app_env, client, manager, smtp):
    from tests.factories import create_suppressions

    news = create_list(manager, opt_in="double", published=True)
    create_suppressions(["blocked@example.com"])
    assert sign_up(client, news, "blocked@example.com").status_code == 200
    run_queued_jobs(app_env["REDIS_URL"])
    assert smtp.messages == []


@pytest.fixture
def small_quota(app_env):
    app_env["MAILER_SMTP_MAX_PER_HOUR"] = "10"


def test_a_confirmation_goes_ahead_of_a_campaign_waiting_for_the_quota(small_quota, app, app_env, client, manager,
                                                                      smtp):
    redis = get_redis()
    used = reserve_send_tokens(redis, 10, 10)
    assert reserve_send_tokens(redis, 5, 10, campaign_id=7, batch_size=5).granted == 0  # campaign 7 waits in line
    for index in range(3):  # three messages were refused by the relay: their tokens come back
        used.finish(index, None)
    for index in range(3, 10):
        used.finish(index, time.time())
    settle_send_tokens(redis, used)

    news = create_list(manager, opt_in="double", published=True)
    sign_up(client, news, "first@example.com")
    run_queued_jobs(app_env["REDIS_URL"])

    assert smtp.count_for("first@example.com") == 1  # ahead of campaign 7, which would hold 5 of the 3 free
    assert [waiter.campaign_id for waiter in waiting_line(redis)] == [7]
    assert reserve_send_tokens(redis, 5, 10, campaign_id=7, batch_size=5).granted == 2  # the campaign gets the rest


def test_a_confirmation_waits_for_the_quota_when_it_is_used_up(small_quota, app, app_env, client, manager, smtp):
    from rq_scheduler import Scheduler

    from mailadmin.extensions import SEND_QUEUE

    reserve_send_tokens(get_redis(), 10, 10)
    news = create_list(manager, opt_in="double", published=True)
    sign_up(client, news, "patient@example.com")
    run_queued_jobs(app_env["REDIS_URL"])

    assert smtp.messages == []
    [job] = Scheduler(queue_name=SEND_QUEUE, connection=get_redis()).get_jobs()
    assert job.func_name == "mailadmin.jobs.confirmations.send_confirmation_batch"
    assert db.session.scalar(select(ListMembership.status)) == "unconfirmed"


def test_the_owner_publishes_the_form_and_sees_the_snippet(app, manager, manager_client, other_client):
    news = create_list(manager, "Weekly")
    assert other_client.get(f"/subscribe/lists/{news.id}").status_code == 404  # another's list

    published = submit(manager_client, f"/subscribe/lists/{news.id}", {"published": "1"}, follow_redirects=True)
    page = published.data.decode()
    db.session.expire_all()
    assert news.form_published and f"/subscribe/{news.public_id}" in page
    assert "&lt;form method=&#34;post&#34;" in page and HONEYPOT_FIELD in page


def test_publishing_the_form_needs_the_csrf_token(app, manager, manager_client):
    news = create_list(manager, "Weekly")
    assert manager_client.post(f"/subscribe/lists/{news.id}", data={"published": "1"}).status_code == 400
    db.session.expire_all()
    assert not news.form_published
