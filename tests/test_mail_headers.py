"""Date and List-Id on the messages the product sends, read back as the tests' SMTP capture server
received them: a numeric zone (RFC 5322 3.3, never the obsolete "GMT") and one List-Id per
campaign (RFC 2919) next to List-Unsubscribe / List-Unsubscribe-Post, which no campaign name can
turn into another header."""

from __future__ import annotations

import re
from email.message import EmailMessage

import pytest

from mailadmin.mail.message import InvalidListIdError, MessageBuilder, format_list_id
from mailadmin.mail.templates import CampaignTemplates
from tests.factories import create_started_campaign, fresh_campaign, make_draft
from tests.support.jobs import run_queued_jobs
from tests.support.web import flashes, submit

# RFC 5322 3.3 date-time as we write it: "Mon, 07 Dec 2026 20:04:16 +0000".
NUMERIC_ZONE_DATE = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} "
    r"\d\d:\d\d:\d\d \+0000"
)
# RFC 2919: list-id = list-label "." list-id-namespace, dot-atom-text (RFC 5322 3.2.3).
ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
LIST_ID_HEADER = re.compile(rf"(?P<phrase>.*?)\s*<(?P<id>{ATEXT}(?:\.{ATEXT})+)>")
HOSTILE_NAME = 'Evil" <x@y>\r\nBcc: victim@example.com\nX-Injected: yes\r\n\r\nbody'


def raw_header_block(data: bytes) -> str:
    """The message's header section exactly as received (folded lines kept)."""
    return data.split(b"\r\n\r\n", 1)[0].decode("ascii")


def date_as_received(raw: str) -> str:
    """The Date header's value as written on the wire."""
    return re.search(r"^Date: ([^\r\n]*)", raw, re.MULTILINE)[1]


def header_names(data: bytes) -> list[str]:
    """The header field names in the order they were received."""
    return [line.split(":", 1)[0] for line in raw_header_block(data).split("\r\n") if line and not line[0].isspace()]


def list_id_of(message: EmailMessage) -> tuple[str, str]:
    """(description, list-id) of the message's one List-Id header."""
    assert len(message.get_all("List-Id")) == 1
    match = LIST_ID_HEADER.fullmatch(str(message["List-Id"]))
    assert match, message["List-Id"]
    return match["phrase"].strip().removeprefix('"').removesuffix('"'), match["id"]


def send_campaign(app_env, owner, name: str, recipients: int = 3):
    campaign = create_started_campaign(owner, recipients, name=name)
    run_queued_jobs(app_env["REDIS_URL"])
    assert fresh_campaign(campaign.id).status == "finished"
    return campaign


def test_campaign_messages_carry_a_numeric_zone_date_and_the_campaigns_list_id(app, app_env, smtp, owner):
    campaign = send_campaign(app_env, owner, "Spring news")

    assert len(smtp.messages) == 3
    for received in smtp.messages:
        raw = raw_header_block(received.data)
        assert NUMERIC_ZONE_DATE.fullmatch(date_as_received(raw))
        assert "GMT" not in raw
        message = received.parsed()
        assert message["Date"].datetime.utcoffset().total_seconds() == 0
        assert list_id_of(message) == ("Spring news", f"campaign-{campaign.id}.mailadmin.test")
        names = header_names(received.data)
        at = names.index("List-Unsubscribe")
        assert names[at:at + 3] == ["List-Unsubscribe", "List-Unsubscribe-Post", "List-Id"]


def test_each_campaign_has_its_own_list_id_and_a_non_ascii_name_is_encoded(app, app_env, smtp, owner):
    first = send_campaign(app_env, owner, "Осенние новости ☕", recipients=1)
    second = send_campaign(app_env, owner, "Осенние новости ☕", recipients=1)

    raw = raw_header_block(smtp.messages[0].data)
    assert "List-Id: =?utf-8?b?" in raw  # RFC 2047 in the phrase; the header stays 7-bit
    ids = [list_id_of(received.parsed()) for received in smtp.messages]
    assert sorted(ids) == sorted([
        ("Осенние новости ☕", f"campaign-{first.id}.mailadmin.test"),
        ("Осенние новости ☕", f"campaign-{second.id}.mailadmin.test"),
    ])


def test_a_hostile_campaign_name_cannot_inject_a_header(app, app_env, smtp, owner):
    campaign = send_campaign(app_env, owner, HOSTILE_NAME, recipients=2)

    assert len(smtp.messages) == 2
    for received in smtp.messages:
        message = received.parsed()
        assert message["Bcc"] is None and message["X-Injected"] is None
        assert len(received.rcpt_tos) == 1
        description, list_id = list_id_of(message)
        assert list_id == f"campaign-{campaign.id}.mailadmin.test"
        assert "\n" not in description and "Bcc: victim@example.com" in description
        assert message.get_body(("plain",)).get_content().strip() != "body"
    assert "victim@example.com" not in smtp.recipients()


def test_a_test_email_carries_the_same_date_form_and_list_id(app, smtp, manager, manager_client):
    campaign = make_draft(manager, name="Spring news", recipients="email,name\nreal@example.com,Real Person\n")
    response = submit(manager_client, f"/campaigns/{campaign.id}/test-email", {"to_address": "tester@example.net"},
                      follow_redirects=True)
    assert flashes(response.get_data(as_text=True))[0][0] == "success"
    assert smtp.wait_for(1)

    raw = raw_header_block(smtp.messages[0].data)
    assert NUMERIC_ZONE_DATE.fullmatch(date_as_received(raw))
    assert list_id_of(smtp.messages[0].parsed()) == ("Spring news", f"campaign-{campaign.id}.mailadmin.test")


def test_the_list_id_is_built_once_per_campaign_and_a_later_list_can_pass_its_own_label():
    builder = MessageBuilder(7, "News <news@Shop.Example.com>", CampaignTemplates("s", "t"), lambda rid: "https://x/u",
                             list_name="Spring news")
    first, second = (builder.build(rid, f"r{rid}@example.com", {}).data for rid in (1, 2))
    assert b'\r\nList-Id: "Spring news" <campaign-7.shop.example.com>\r\n' in first
    assert first[first.index(b"List-Unsubscribe-Post"):] == second[second.index(b"List-Unsubscribe-Post"):]

    audience = MessageBuilder(8, "news@shop.example.com", CampaignTemplates("s", "t"), lambda rid: "https://x/u",
                              list_label="list-3", list_name="Customers")
    assert b'\r\nList-Id: "Customers" <list-3.shop.example.com>\r\n' in audience.build(1, "a@example.com", {}).data


@pytest.mark.parametrize(("label", "namespace"), [
    ("campaign 1", "example.com"), ("campaign-1", "example..com"), (".campaign", "example.com"),
    ("campaign-1", "example.com\r\nBcc: x@y"), ("campaign-1", "exämple.com"), ("x" * 250, "example.com"),
])
def test_a_list_id_that_is_not_dot_atom_text_or_too_long_is_refused(label, namespace):
    with pytest.raises(InvalidListIdError):
        format_list_id(label, namespace, "Name")


def test_a_long_description_is_folded_before_the_id_and_every_line_stays_short():
    value = format_list_id("campaign-12", "mailadmin.test", "A" * 58)
    assert value == f'"{"A" * 58}"\r\n <campaign-12.mailadmin.test>'
    value = format_list_id("campaign-12", "mailadmin.test", "Ж" * 80)
    assert all(len(line) <= 78 for line in f"List-Id: {value}".split("\r\n"))
    assert format_list_id("campaign-12", "mailadmin.test", " \r\n ") == "<campaign-12.mailadmin.test>"
