"""Per-recipient MIME messages: standards-valid bytes, header injection refused, unsubscribe tokens."""

from __future__ import annotations

import os
import re
import time
from datetime import timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

import pytest

from bench.message_build import bench_build
from mailadmin.mail.message import (
    LIST_UNSUBSCRIBE_POST,
    HeaderInjectionError,
    InvalidAddressError,
    MessageBuilder,
    check_header_value,
)
from mailadmin.mail.templates import CampaignTemplates, recipient_fields
from mailadmin.mail.unsubscribe import (
    LEGACY_UNSUBSCRIBE_TOKENS_UNTIL,
    BadUnsubscribeToken,
    ExpiredUnsubscribeToken,
    make_unsubscribe_token,
    read_unsubscribe_token,
)

SECRET = "test-secret"
TEXT = "Hello {{ name }},\n\nYour order at {{ company }} is ready.\n.\nFrom here on: naïve café ☕ =3D\n"
HTML = "<html><body><p>Hello {{ name }},</p><p>café ☕ at {{ company }}</p></body></html>\n"


def unsubscribe_url_for(recipient_id) -> str:
    return f"https://mail.example.com/u/{make_unsubscribe_token(SECRET, 7, recipient_id)}"


def make_builder(subject="Hello {{ name }}", text=TEXT, html=HTML, mail_from="Shop <news@shop.example.com>"):
    templates = CampaignTemplates(subject, text, html)
    return MessageBuilder(7, mail_from, templates, unsubscribe_url_for, "mail.example.com")


def parse(data: bytes) -> EmailMessage:
    return BytesParser(policy=policy.default).parsebytes(data)  # type: ignore[return-value]


def normalized(text: str) -> str:
    return text.replace("\r\n", "\n")


def test_message_parses_back_with_every_header_and_both_parts():
    builder = make_builder(subject="Grüße, {{ name }}!")
    fields = recipient_fields("jane@example.com", "Jane Dœ", {"company": "Müller & Co"})

    built = builder.build(42, "jane@example.com", fields)
    message = parse(built.data)

    raw_subject = re.search(rb"^Subject: (.*(?:\r\n .*)*)", built.data, re.MULTILINE).group(1)
    assert raw_subject.startswith(b"=?utf-8?b?")  # RFC 2047, since the subject is not ASCII
    assert message["Subject"] == "Grüße, Jane Dœ!"
    assert message["From"].addresses[0].addr_spec == "news@shop.example.com"
    assert message["From"].addresses[0].display_name == "Shop"
    assert message["To"].addresses[0].addr_spec == "jane@example.com"
    assert message["To"].addresses[0].display_name == "Jane Dœ"
    assert message["Message-ID"] == built.message_id
    assert re.fullmatch(r"<campaign-7\.recipient-42\.[0-9a-f]+@mail\.example\.com>", built.message_id)
    assert message["Date"].datetime is not None
    assert message["MIME-Version"] == "1.0"
    # The link names this recipient (its token carries the second it was made: compared by what it says).
    link = message["List-Unsubscribe"]
    assert link.startswith("<https://mail.example.com/u/") and link.endswith(">")
    assert read_unsubscribe_token(SECRET, link[len("<https://mail.example.com/u/"):-1]) == (7, 42)
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click" == LIST_UNSUBSCRIBE_POST
    assert message.get_content_type() == "multipart/alternative"
    text_part, html_part = message.iter_parts()
    assert text_part.get_content_type() == "text/plain"
    assert html_part.get_content_type() == "text/html"
    assert normalized(text_part.get_content()) == CampaignTemplates("", TEXT).render(fields).text
    assert normalized(html_part.get_content()) == (
        "<html><body><p>Hello Jane Dœ,</p><p>café ☕ at Müller &amp; Co</p></body></html>\n"
    )
    assert not message.defects and not text_part.defects and not html_part.defects
    assert built.envelope_to == "jane@example.com"


def test_message_is_seven_bit_with_crlf_lines_no_longer_than_the_rfc_limit():
    builder = make_builder(subject="x" * 40 + " " + "y" * 40 + " long subject " * 10, text="a" * 3000 + "\n" + TEXT)

    data = builder.build(1, "a@example.com", recipient_fields("a@example.com", "A")).data

    assert data.isascii()
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert max(len(line) for line in data.split(b"\r\n")) <= 998
    header_lines = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    subject_at = next(i for i, line in enumerate(header_lines) if line.startswith(b"Subject:"))
    subject_lines = [header_lines[subject_at]]
    subject_lines += [line for line in header_lines[subject_at + 1 :] if line.startswith(b" ")]
    assert len(subject_lines) > 1 and max(len(line) for line in subject_lines) <= 78  # folded


def test_ascii_subject_stays_readable_and_long_ones_are_folded_losslessly():
    subject = "Our autumn catalogue is out with forty new items and free shipping for regular customers"

    built = make_builder(subject=subject).build(1, "a@example.com", recipient_fields("a@example.com", "A"))

    assert b"=?utf-8?" not in built.data.split(b"\r\n\r\n", 1)[0].split(b"Subject:")[1].split(b"\r\nDate")[0]
    assert parse(built.data)["Subject"] == subject


def test_text_only_campaign_is_a_single_text_plain_part():
    built = make_builder(html=None).build(3, "b@example.com", recipient_fields("b@example.com", "Bo", {"company": "X"}))
    message = parse(built.data)

    assert message.get_content_type() == "text/plain"
    assert message.get_content_charset() == "utf-8"
    assert normalized(message.get_content()).startswith("Hello Bo,\n\nYour order at X is ready.\n.\n")


def test_every_message_gets_its_own_message_id():
    builder = make_builder()
    fields = recipient_fields("a@example.com", "A")

    ids = {builder.build(1, "a@example.com", fields).message_id for _ in range(50)}

    assert len(ids) == 50


def test_international_domain_is_sent_in_its_ascii_form():
    built = make_builder().build(1, "anna@bücher.example", recipient_fields("anna@bücher.example", "Anna"))

    assert built.envelope_to == "anna@xn--bcher-kva.example"
    assert parse(built.data)["To"].addresses[0].domain == "xn--bcher-kva.example"


@pytest.mark.parametrize(
    "subject, name",
    [
        ("Hello {{ name }}", "Eve\r\nBcc: victim@example.com"),
        ("Hello {{ company }}", "Eve"),
        ("Hello", "Eve\nX-Injected: 1"),
    ],
)
def test_a_line_break_reaching_any_header_is_refused(subject, name):
    builder = make_builder(subject=subject)
    fields = recipient_fields("eve@example.com", name, {"company": "ACME\nBcc: victim@example.com"})

    with pytest.raises(HeaderInjectionError) as caught:
        builder.build(1, "eve@example.com", fields)

    assert "victim" not in str(caught.value) and "eve@" not in str(caught.value)


def test_a_line_break_in_the_recipient_address_is_refused():
    with pytest.raises(HeaderInjectionError):
        make_builder().build(1, "eve@example.com\r\nBcc: victim@example.com", recipient_fields("eve@example.com", "E"))


def test_a_recipient_address_that_is_not_a_single_plain_address_is_refused():
    for bad in ("eve@example.com>, <victim@example.com", "not-an-address", "ëve@example.com", "a b@example.com"):
        with pytest.raises(InvalidAddressError):
            make_builder().build(1, bad, recipient_fields(bad, "E"))


def test_a_line_break_in_mail_from_or_the_unsubscribe_url_is_refused():
    with pytest.raises(HeaderInjectionError):
        make_builder(mail_from="Shop <news@shop.example.com>\r\nBcc: victim@example.com")
    builder = MessageBuilder(7, "news@shop.example.com", CampaignTemplates("s", "t"), lambda rid: "https://x/u\r\nX: 1")
    with pytest.raises(HeaderInjectionError):
        builder.build(1, "a@example.com", recipient_fields("a@example.com", "A"))


def test_check_header_value_passes_clean_values_and_refuses_line_breaks_without_echoing_them():
    assert check_header_value("Subject", "Fine subject") == "Fine subject"
    for bad in ("a\rb", "a\nb", "a\r\nb", "a\x00b"):
        with pytest.raises(HeaderInjectionError) as caught:
            check_header_value("Subject", bad)
        assert "Subject" in str(caught.value)
        assert bad not in str(caught.value)
    assert issubclass(HeaderInjectionError, ValueError)


def test_unsubscribe_token_names_the_campaign_and_recipient_and_expires_after_180_days(monkeypatch):
    from itsdangerous.timed import TimestampSigner

    token = make_unsubscribe_token(SECRET, 12, 3456)
    assert re.fullmatch(r"[A-Za-z0-9_\-.]+", token)
    assert read_unsubscribe_token(SECRET, token) == (12, 3456)

    now = time.time()
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: int(now + 179 * 86400))
    assert read_unsubscribe_token(SECRET, token) == (12, 3456)
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: int(now + 181 * 86400))
    with pytest.raises(ExpiredUnsubscribeToken):
        read_unsubscribe_token(SECRET, token)


def test_links_from_before_timestamps_work_until_the_cutoff_then_expire():
    from itsdangerous import URLSafeSerializer

    legacy = URLSafeSerializer(SECRET, salt="unsubscribe").dumps([12, 3456])
    before = LEGACY_UNSUBSCRIBE_TOKENS_UNTIL - timedelta(days=1)
    assert read_unsubscribe_token(SECRET, legacy, now=before) == (12, 3456)
    with pytest.raises(BadUnsubscribeToken):
        read_unsubscribe_token(SECRET, legacy, now=LEGACY_UNSUBSCRIBE_TOKENS_UNTIL)


@pytest.mark.parametrize("ids", [(12, 3456), (1, 1), (1111111111, 1111111111), (2**31 - 1, 2**63 - 1)])
def test_tokens_are_itsdangerous_tokens_and_those_it_makes_or_compresses_read_back(ids, monkeypatch):
    """Ours skip itsdangerous's zlib attempt (one per message); a link's form is otherwise the same."""
    from itsdangerous import URLSafeTimedSerializer
    from itsdangerous.timed import TimestampSigner

    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: 1_790_000_000)
    theirs = URLSafeTimedSerializer(SECRET, salt="unsubscribe").dumps(list(ids))
    ours = make_unsubscribe_token(SECRET, *ids)
    if not theirs.startswith("."):  # not compressed: the very same token
        assert ours == theirs
    assert read_unsubscribe_token(SECRET, ours) == read_unsubscribe_token(SECRET, theirs) == ids


@pytest.mark.parametrize("token", ["", "garbage", "WzEyLDM0NTZd.forged"])
def test_forged_or_mangled_unsubscribe_tokens_are_refused(token):
    with pytest.raises(BadUnsubscribeToken):
        read_unsubscribe_token(SECRET, token)


def test_unsubscribe_token_from_another_secret_or_salt_is_refused():
    from itsdangerous import URLSafeSerializer

    with pytest.raises(BadUnsubscribeToken):
        read_unsubscribe_token(SECRET, make_unsubscribe_token("other-secret", 1, 2))
    with pytest.raises(BadUnsubscribeToken):
        read_unsubscribe_token(SECRET, URLSafeSerializer(SECRET, salt="other").dumps([1, 2]))
    with pytest.raises(BadUnsubscribeToken):  # right signature, wrong shape
        read_unsubscribe_token(SECRET, URLSafeSerializer(SECRET, salt="unsubscribe").dumps({"c": 1}))


def test_builder_is_much_faster_than_one_email_message_per_recipient():
    result = bench_build(300)

    assert result["bench"] == "message_build"
    assert result["messages"] == 300
    assert result["rate"] > 0 and result["baseline_rate"] > 0
    assert result["ratio"] == pytest.approx(result["rate"] / result["baseline_rate"], rel=0.01)
    assert result["ratio"] > 2


def test_message_id_random_parts_never_repeat_and_a_forked_work_horse_draws_its_own():
    """The random part is drawn from a pool of OS randomness: across refills nothing repeats, and a
    forked process (RQ's work horse) never reuses what its parent would draw next."""
    from mailadmin.mail.message import _unguessable_hex

    drawn = [_unguessable_hex(6) for _ in range(2000)]  # several 4 KiB pools
    assert len(set(drawn)) == 2000 and all(re.fullmatch(r"[0-9a-f]{12}", part) for part in drawn)

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: one draw, then gone
        os.write(write_end, _unguessable_hex(6).encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read_end, 64).decode()
    os.close(read_end)
    os.close(write_end)
    assert re.fullmatch(r"[0-9a-f]{12}", child) and child != _unguessable_hex(6)
