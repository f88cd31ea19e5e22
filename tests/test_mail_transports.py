"""The transport seam: `transport_from_url` picks the transport, every one satisfies `Transport`,
and every message carries the same unsubscribe URL."""

from __future__ import annotations

import pytest

from mailadmin.mail.transports import PipelinedSmtpTransport, Transport, transport_from_url
from mailadmin.mail.unsubscribe import read_unsubscribe_token, unsubscribe_url_for
from mailadmin.settings import Settings


@pytest.mark.parametrize("url", ["smtp://mail.example.com", "smtp+starttls://u:p@mail.example.com:2525",
                                 "smtps://mail.example.com"])
def test_smtp_urls_get_the_smtp_transport(url):
    transport = transport_from_url(url, timeout=3)

    assert isinstance(transport, PipelinedSmtpTransport)
    assert transport.provider == "mail.example.com"
    assert transport.timeout == 3


def test_another_scheme_is_refused_with_the_schemes_we_know():
    with pytest.raises(ValueError, match="smtp, smtp\\+starttls, smtps"):
        transport_from_url("https://api.mail.example.com")


def test_a_test_double_fits_the_protocol():
    class Recording:
        provider = "double"

        def __init__(self) -> None:
            self.sent: list[tuple[str, str, bytes]] = []

        def send(self, envelope_from: str, envelope_to: str, data: bytes):
            self.sent.append((envelope_from, envelope_to, data))

        def close(self) -> None:
            pass

    double: Transport = Recording()  # what a second provider or a test double implements
    double.send("a@example.com", "b@example.com", b"x")
    assert double.sent == [("a@example.com", "b@example.com", b"x")]


def test_unsubscribe_url_names_the_campaign_and_recipient():
    settings = Settings(secret_key="s3cret", public_url="https://mail.example.com")

    url = unsubscribe_url_for(settings, 7)(42)

    assert url.startswith("https://mail.example.com/u/")
    assert read_unsubscribe_token("s3cret", url.rsplit("/", 1)[1]) == (7, 42)
