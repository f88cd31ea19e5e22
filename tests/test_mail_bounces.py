"""Bounces: hard-bounce replies, and the campaign and recipient our own Message-IDs name."""

from __future__ import annotations

import pytest

from mailadmin.mail.bounces import SentMessageRef, is_hard_bounce, parse_message_id
from mailadmin.mail.message import MessageBuilder
from mailadmin.mail.templates import CampaignTemplates, recipient_fields


def test_a_message_id_we_built_names_its_campaign_and_recipient():
    templates = CampaignTemplates("Hello {{ name }}", "Hi {{ name }}\n", None)
    builder = MessageBuilder(7, "Shop <news@shop.example.com>", templates, lambda rid: f"https://x.example/u/{rid}")

    built = builder.build(4211, "jane@example.com", recipient_fields("jane@example.com", "Jane", {}))

    assert parse_message_id(built.message_id) == SentMessageRef(campaign_id=7, recipient_id=4211)
    assert parse_message_id(f"  {built.message_id.strip('<>')} ") == SentMessageRef(7, 4211)


@pytest.mark.parametrize("value", [
    None,
    "",
    "<CAF=abc123@mail.gmail.com>",
    "<campaign-7.recipient-x.abc@shop.example.com>",
    "<campaign-7.recipient-42@shop.example.com>",  # no random part: not the shape we write
    "<campaign-7.recipient-42.abc@shop.example.com> <other@example.com>",
])
def test_anyone_elses_message_id_names_nothing(value):
    assert parse_message_id(value) is None


def test_the_test_email_is_recipient_zero():
    assert parse_message_id("<campaign-3.recipient-0.0a1b2c3d4e5f@shop.example.com>") == SentMessageRef(3, 0)


def test_only_user_unknown_refusals_are_hard_bounces():
    assert is_hard_bounce(550, "SMTP 550 at RCPT TO: 5.1.1 <recipient>: Recipient address rejected: User unknown")
    assert is_hard_bounce(553, "SMTP 553 at RCPT TO: mailbox not found")
    assert not is_hard_bounce(554, "SMTP 554 at DATA: 5.7.1 spam")
    assert not is_hard_bounce(550, "SMTP 550 at DATA: 5.7.1 Message rejected by policy")
    assert not is_hard_bounce(None, "user unknown")
