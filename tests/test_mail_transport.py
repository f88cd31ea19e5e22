"""The SMTP transport: real conversations with the capture server, every failure path classified.

The rules that need a server the capture server cannot play (refusals while the session opens,
replies that are not SMTP) are in test_mail_classify.py."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailadmin.devtools.redis_server import free_port
from mailadmin.devtools.smtp_capture import CaptureSMTP
from mailadmin.mail.transports import PermanentSendError, TransientSendError
from mailadmin.mail.transports.pipelined import PipelinedSmtpTransport
from tests.support.waiting import wait_until

FROM = "news@shop.example.com"


def message(subject: str = "Hello", body: str = "Hi there.\r\n") -> bytes:
    return f"From: {FROM}\r\nTo: someone@example.com\r\nSubject: {subject}\r\n\r\n{body}".encode()


@pytest.fixture
def capture() -> Iterator[CaptureSMTP]:
    with CaptureSMTP() as server:
        yield server


@pytest.fixture
def transport(capture) -> Iterator[PipelinedSmtpTransport]:
    with PipelinedSmtpTransport.from_url(capture.url, timeout=5) as smtp:
        yield smtp


# --- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url, security, port",
    [
        ("smtp://mail.example.com", "plain", 25),
        ("smtp+starttls://mail.example.com", "starttls", 587),
        ("smtps://mail.example.com", "tls", 465),
        ("smtps://mail.example.com:2465", "tls", 2465),
    ],
)
def test_smtp_url_scheme_picks_security_and_default_port(url, security, port):
    transport = PipelinedSmtpTransport.from_url(url)

    assert (transport.security, transport.port, transport.provider) == (security, port, "mail.example.com")
    assert transport.username is None


def test_smtp_url_credentials_are_url_decoded_and_never_shown():
    transport = PipelinedSmtpTransport.from_url("smtp+starttls://apikey%40example.com:p%3As%2Fs%40word@smtp.example.com:2525")

    assert transport.username == "apikey@example.com"
    assert transport.password == "p:s/s@word"
    assert transport.port == 2525
    assert "p:s/s@word" not in repr(transport)


def test_smtp_url_with_another_scheme_is_refused():
    with pytest.raises(ValueError, match="scheme"):
        PipelinedSmtpTransport.from_url("http://mail.example.com")


# --- sending ------------------------------------------------------------------------------


def test_send_delivers_the_message_and_returns_the_servers_reply(capture, transport):
    outcome = transport.send(FROM, "jane@example.com", message("Welcome"))

    assert outcome.smtp_code == 250
    assert "queued as" in outcome.smtp_reply
    assert outcome.took_ms >= 0
    assert capture.wait_for(1, timeout=5)
    captured = capture.messages[0]
    assert (captured.mail_from, captured.rcpt_tos, captured.subject) == (FROM, ("jane@example.com",), "Welcome")


def test_nothing_connects_until_the_first_send(capture, transport):
    assert not transport.connected
    assert capture.connection_count == 0

    transport.send(FROM, "a@example.com", message())

    assert transport.connected


def test_many_sends_reuse_one_connection(capture, transport):
    for number in range(25):
        transport.send(FROM, f"user{number}@example.com", message(f"Message {number}"))

    assert capture.wait_for(25, timeout=5)
    assert capture.connection_count == 1
    assert transport.connections_opened == 1
    assert capture.recipients() == {f"user{number}@example.com": 1 for number in range(25)}


def test_lines_starting_with_a_dot_arrive_intact(capture, transport):
    data = message(body=".\r\n..two dots\r\n.leading dot\r\nend\r\n")

    transport.send(FROM, "a@example.com", data)

    assert capture.wait_for(1)
    assert capture.messages[0].data == data


def test_close_says_quit_and_the_server_sees_the_connection_end(capture):
    transport = PipelinedSmtpTransport.from_url(capture.url, timeout=5)
    transport.send(FROM, "a@example.com", message())
    assert capture.open_connections == 1

    transport.close()

    assert not transport.connected
    wait_until(lambda: capture.open_connections == 0, 5, 0.01, "the server to see the connection end")
    transport.close()  # closing twice is harmless


# --- dropped connections ------------------------------------------------------------------


def test_connection_dropped_while_idle_is_reopened_once_and_the_send_succeeds(capture, transport):
    transport.send(FROM, "a@example.com", message())
    capture.drop_open_connections()

    outcome = transport.send(FROM, "b@example.com", message())

    assert outcome.reconnected
    assert capture.wait_for(2)
    assert capture.count_for("b@example.com") == 1
    assert capture.connection_count == 2


def test_connection_dropped_at_mail_from_is_reopened_once_and_the_send_succeeds(capture, transport):
    transport.send(FROM, "a@example.com", message())
    capture.drop_connection_next("mail")

    outcome = transport.send(FROM, "b@example.com", message())

    assert outcome.reconnected
    assert capture.wait_for(lambda messages: any("b@example.com" in m.rcpt_tos for m in messages))
    assert capture.count_for("b@example.com") == 1


def test_connection_dropped_mid_transaction_is_transient_and_never_retried(capture, transport):
    transport.send(FROM, "a@example.com", message())
    capture.drop_connection_next("rcpt")

    with pytest.raises(TransientSendError) as caught:
        transport.send(FROM, "b@example.com", message())

    assert caught.value.stage == "rcpt"
    assert caught.value.outcome_unknown is False
    assert capture.count_for("b@example.com") == 0
    assert transport.send(FROM, "c@example.com", message()).smtp_code == 250  # reconnects lazily


def test_connection_lost_after_the_data_was_sent_is_transient_with_an_unknown_outcome(capture, transport):
    transport.send(FROM, "a@example.com", message())
    capture.drop_connection_next("data")

    with pytest.raises(TransientSendError) as caught:
        transport.send(FROM, "b@example.com", message())

    assert caught.value.stage == "data-end"
    assert caught.value.outcome_unknown is True  # the send loop must not blindly retry this one
    assert capture.count_for("b@example.com") == 0


# --- SMTP replies -------------------------------------------------------------------------


@pytest.mark.parametrize("code, stage", [(421, "mail"), (451, "rcpt"), (450, "rcpt"), (452, "data"), (451, "data")])
def test_4xx_replies_are_transient_at_every_stage(capture, transport, code, stage):
    capture.reply_with(code, stage=stage, times=1)

    with pytest.raises(TransientSendError) as caught:
        transport.send(FROM, "a@example.com", message())

    error = caught.value
    assert (error.smtp_code, error.error_class) == (code, "transient")
    assert error.stage == ("data-end" if stage == "data" else stage)
    assert transport.send(FROM, "a@example.com", message()).smtp_code == 250


def test_after_a_transient_reply_the_same_connection_stays_usable(capture, transport):
    capture.reply_with(451, stage="rcpt", times=2)
    for _ in range(2):
        with pytest.raises(TransientSendError):
            transport.send(FROM, "a@example.com", message())

    transport.send(FROM, "a@example.com", message())

    assert capture.connection_count == 1
    assert capture.count_for("a@example.com") == 1


def test_421_closes_the_connection_and_the_next_send_opens_a_new_one(capture, transport):
    transport.send(FROM, "a@example.com", message())
    capture.reply_with(421, stage="mail", times=1)

    with pytest.raises(TransientSendError):
        transport.send(FROM, "b@example.com", message())
    assert not transport.connected

    transport.send(FROM, "b@example.com", message())
    assert capture.connection_count == 2


def test_550_for_one_recipient_is_permanent_and_the_connection_stays_usable(capture, transport):
    capture.reply_for_address("gone@example.com", 550, "5.1.1 Mailbox does not exist")

    with pytest.raises(PermanentSendError) as caught:
        transport.send(FROM, "gone@example.com", message())
    outcome = transport.send(FROM, "alive@example.com", message())

    assert (caught.value.smtp_code, caught.value.error_class, caught.value.stage) == (550, "permanent", "rcpt")
    assert outcome.smtp_code == 250
    assert capture.connection_count == 1
    assert capture.recipients() == {"alive@example.com": 1}


@pytest.mark.parametrize("stage", ["mail", "data"])
def test_5xx_replies_to_mail_and_data_are_permanent(capture, transport, stage):
    capture.reply_with(554, stage=stage, times=1)

    with pytest.raises(PermanentSendError) as caught:
        transport.send(FROM, "a@example.com", message())

    assert caught.value.smtp_code == 554
    assert transport.send(FROM, "a@example.com", message()).smtp_code == 250
    assert capture.connection_count == 1


def test_error_messages_never_contain_the_recipient_address(capture, transport):
    address = "Jane.Doe+news@Example.com"
    capture.reply_for_address(address, 550, f"5.1.1 <{address}>: Recipient address rejected: {address.lower()} unknown")

    with pytest.raises(PermanentSendError) as caught:
        transport.send(FROM, address, message())

    error = caught.value
    for text in (str(error), repr(error), error.message, *map(str, error.args)):
        assert "jane.doe" not in text.lower()
    assert "<recipient>" in str(error)
    assert "Recipient address rejected" in str(error)
    assert error.__cause__ is None and error.__context__ is None


# --- network trouble ----------------------------------------------------------------------


def test_connection_refused_is_transient():
    transport = PipelinedSmtpTransport.from_url(f"smtp://127.0.0.1:{free_port()}", timeout=2)

    with pytest.raises(TransientSendError) as caught:
        transport.send(FROM, "a@example.com", message())

    assert caught.value.stage == "connect"
    assert caught.value.smtp_code is None
    assert "ConnectionRefusedError" in str(caught.value)


def test_server_that_never_greets_times_out_as_transient():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # accepts the TCP handshake, never says a word
        transport = PipelinedSmtpTransport.from_url(f"smtp://127.0.0.1:{silent.getsockname()[1]}", timeout=0.5)

        with pytest.raises(TransientSendError) as caught:
            transport.send(FROM, "a@example.com", message())

    assert caught.value.stage == "connect"
    assert "timed out" in str(caught.value)


def test_reply_slower_than_the_timeout_is_transient_with_an_unknown_outcome(capture):
    capture.delay_per_message(3)
    transport = PipelinedSmtpTransport.from_url(capture.url, timeout=0.5)

    with pytest.raises(TransientSendError) as caught:
        transport.send(FROM, "a@example.com", message())

    assert "timed out" in str(caught.value)
    assert caught.value.outcome_unknown is True
    transport.close()


# --- TLS and AUTH -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A certificate for localhost/127.0.0.1 made for this run: (server chain, server key, CA to trust)."""
    directory = tmp_path_factory.mktemp("tls")
    chain, key, authority_file = directory / "chain.pem", directory / "key.pem", directory / "ca.pem"
    try:
        import trustme  # type: ignore[import-not-found]
    except ImportError:
        trustme = None
    if trustme is not None:
        authority = trustme.CA()
        issued = authority.issue_cert("localhost", "127.0.0.1")
        issued.cert_chain_pems[0].write_to_path(str(chain))
        issued.private_key_pem.write_to_path(str(key))
        authority.cert_pem.write_to_path(str(authority_file))
        return chain, key, authority_file
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("TLS tests need a self-signed certificate: neither trustme nor the openssl command is available")
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(key), "-out", str(chain), "-days", "2", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return chain, key, chain  # self-signed: the certificate is its own authority


@pytest.fixture
def server_tls(certificate) -> ssl.SSLContext:
    chain, key, _ = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(chain), str(key))
    return context


@pytest.fixture
def client_tls(certificate) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certificate[2]))


def test_starttls_upgrades_the_connection_before_mail(server_tls, client_tls):
    with CaptureSMTP(tls_context=server_tls, require_starttls=True) as server:
        assert server.url.startswith("smtp+starttls://")
        with PipelinedSmtpTransport.from_url(server.url, timeout=5, ssl_context=client_tls) as transport:
            transport.send(FROM, "a@example.com", message())
            transport.send(FROM, "b@example.com", message())

        assert server.wait_for(2)
        assert server.connection_count == 1


def test_implicit_tls_smtps_sends(server_tls, client_tls):
    with CaptureSMTP(tls_context=server_tls, implicit_tls=True) as server:
        assert server.url.startswith("smtps://")
        with PipelinedSmtpTransport.from_url(server.url, timeout=5, ssl_context=client_tls) as transport:
            assert transport.send(FROM, "a@example.com", message()).smtp_code == 250

        assert server.wait_for(1)


def test_untrusted_certificate_is_a_transient_session_error(server_tls):
    with CaptureSMTP(tls_context=server_tls, implicit_tls=True) as server:
        transport = PipelinedSmtpTransport.from_url(server.url, timeout=5)  # system CAs: the self-signed cert is untrusted

        with pytest.raises(TransientSendError) as caught:
            transport.send(FROM, "a@example.com", message())

    assert caught.value.stage == "connect"
    assert "SSL" in str(caught.value)


def test_login_with_the_urls_credentials_over_starttls(server_tls, client_tls):
    with CaptureSMTP(tls_context=server_tls, credentials=("mailer@example.com", "s3cr:t/pw")) as server:
        assert "mailer%40example.com:s3cr%3At%2Fpw@" in server.url
        with PipelinedSmtpTransport.from_url(server.url, timeout=5, ssl_context=client_tls) as transport:
            assert transport.send(FROM, "a@example.com", message()).smtp_code == 250


def test_wrong_password_is_transient_so_the_circuit_breaker_pauses_instead_of_failing_everyone(server_tls, client_tls):
    with CaptureSMTP(tls_context=server_tls, credentials=("mailer", "right")) as server:
        url = server.url.replace(":right@", ":wrong@")
        transport = PipelinedSmtpTransport.from_url(url, timeout=5, ssl_context=client_tls)

        with pytest.raises(TransientSendError) as caught:
            transport.send(FROM, "a@example.com", message())

    assert (caught.value.smtp_code, caught.value.stage) == (535, "connect")
    assert "wrong" not in str(caught.value)
