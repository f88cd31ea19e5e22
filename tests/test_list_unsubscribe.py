"""The one-click unsubscribe of a list campaign (off that campaign's lists only), "unsubscribe from
everything", and the signed preference page's switches — each change one membership history row."""

from __future__ import annotations

import re

from mailadmin.extensions import get_settings
from mailadmin.mail.unsubscribe import make_preferences_token, make_unsubscribe_token
from mailadmin.services.suppressions import is_suppressed
from tests.factories import (
    add_member,
    create_campaign,
    create_list,
    membership_history,
    membership_status,
    recipient_of,
    target_lists,
)

ONE_CLICK = {"List-Unsubscribe": "One-Click"}
JANE = "jane@example.com"


def link_of(campaign, address: str) -> str:
    recipient = recipient_of(campaign, address)
    return f"/u/{make_unsubscribe_token(get_settings().secret_key, campaign.id, recipient.id)}"


def preferences_link(contact) -> str:
    return f"/p/{make_preferences_token(get_settings().secret_key, contact.id)}"


def lists_campaign(owner, lists, *, exclude=()):
    campaign = create_campaign(owner, [JANE, "max@example.com"], name="List news")
    target_lists(campaign, lists, exclude=exclude)
    return campaign


def test_the_one_click_link_of_a_list_campaign_leaves_the_person_on_their_other_lists(app, client, manager):
    news, offers, events = (create_list(manager, name) for name in ("News", "Offers", "Events"))
    jane = add_member(news, JANE)
    add_member(offers, JANE)
    add_member(events, JANE)
    campaign = lists_campaign(manager, [news, offers], exclude=[events])

    answer = client.post(link_of(campaign, JANE), data=ONE_CLICK)

    assert answer.status_code == 200 and b"News" in answer.data and b"Offers" in answer.data
    assert (membership_status(news, jane), membership_status(offers, jane), membership_status(events, jane)) == (
        "unsubscribed", "unsubscribed", "subscribed")
    assert membership_history(news, jane)[-1] == ("subscribed", "unsubscribed", "unsubscribe_link")
    assert not is_suppressed(JANE)
    client.post(link_of(campaign, JANE), data=ONE_CLICK)  # again: idempotent, no second history row
    assert len(membership_history(news, jane)) == 2


def test_a_one_off_campaigns_link_still_puts_the_address_on_the_suppression_list(app, client, manager):
    news = create_list(manager)
    jane = add_member(news, JANE)
    campaign = create_campaign(manager, [JANE])

    assert client.post(link_of(campaign, JANE), data=ONE_CLICK).status_code == 200

    assert is_suppressed(JANE) and membership_status(news, jane) == "subscribed"


def test_a_list_campaign_recipient_on_none_of_its_lists_is_suppressed(app, client, manager):
    news = create_list(manager)
    add_member(news, "max@example.com")
    campaign = lists_campaign(manager, [news])  # jane came in some other way (a segment)

    client.post(link_of(campaign, JANE), data=ONE_CLICK)

    assert is_suppressed(JANE)


def test_the_unsubscribe_page_names_the_lists_and_offers_everything_and_the_preferences(app, client, manager):
    news = create_list(manager, "Weekly news")
    jane = add_member(news, JANE)
    campaign = lists_campaign(manager, [news])

    page = client.get(link_of(campaign, JANE)).get_data(as_text=True)

    assert "Weekly news" in page and "Unsubscribe from everything" in page
    assert re.search(r'href="/p/[^"]+"', page)
    assert membership_status(news, jane) == "subscribed"  # a GET changes nothing


def test_unsubscribe_from_everything_puts_the_address_on_the_suppression_list(app, client, manager):
    news = create_list(manager)
    jane = add_member(news, JANE)
    campaign = lists_campaign(manager, [news])

    answer = client.post(link_of(campaign, JANE) + "/everything")

    assert answer.status_code == 200 and b"no more emails from us" in answer.data
    assert is_suppressed(JANE) and membership_status(news, jane) == "subscribed"


def test_the_preference_page_switches_each_of_the_persons_lists(app, client, manager):
    news, offers, secret = (create_list(manager, name) for name in ("News", "Offers", "Board minutes"))
    jane = add_member(news, JANE)
    add_member(offers, JANE, "unsubscribed")
    add_member(secret, "max@example.com")  # not Jane's: never shown to her, never changed by her

    page = client.get(preferences_link(jane)).get_data(as_text=True)
    assert "News" in page and "Offers" in page and "Board minutes" not in page
    assert re.search(rf'value="{news.id}" checked', page) and not re.search(rf'value="{offers.id}" checked', page)

    saved = client.post(preferences_link(jane), data={"list": [str(offers.id), str(secret.id)]})

    assert saved.status_code == 200 and b"2 changes" in saved.data
    assert (membership_status(news, jane), membership_status(offers, jane)) == ("unsubscribed", "subscribed")
    assert membership_status(secret, jane) is None
    assert membership_history(offers, jane)[-1] == ("unsubscribed", "subscribed", "preferences")
    assert membership_history(news, jane)[-1] == ("subscribed", "unsubscribed", "preferences")


def test_an_unconfirmed_list_left_off_stays_unconfirmed(app, client, manager):
    news = create_list(manager, opt_in="double")
    jane = add_member(news, JANE, "unconfirmed")
    client.post(preferences_link(jane), data={})
    assert membership_status(news, jane) == "unconfirmed"


def test_a_forged_preference_link_answers_404_and_an_unsubscribe_token_is_no_preference_token(app, client, manager):
    news = create_list(manager)
    add_member(news, JANE)
    campaign = lists_campaign(manager, [news])
    assert client.get("/p/forged").status_code == 404
    unsubscribe_token = link_of(campaign, JANE).removeprefix("/u/")
    assert client.get(f"/p/{unsubscribe_token}").status_code == 404
