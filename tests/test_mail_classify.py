"""Every classification rule of the SMTP client, each shown on a real server answering that way.

test_mail_transport.py drives the capture server through 4xx and 5xx replies at MAIL, RCPT and the
end of DATA, refused and dropped connections, timeouts and a refused AUTH. Here: the capture
server without the extension the URL asks for, and the scripted server for what the capture server
cannot say (refusals while the session opens, a refused DATA command, replies that are not SMTP).
Last, the rule itself as a table.
"""

from __future__ import annotations

import ssl

import pytest

from mailadmin.devtools.smtp_capture import CaptureSMTP
from mailadmin.mail.transports import ErrorClass, PermanentSendError, SendError, TransientSendError
from mailadmin.mail.transports.classify import Stage, error_class_for, failure_error, mask_addresses
from mailadmin.mail.transports.pipelined import PipelinedSmtpTransport
from tests.support.scripted_smtp import ScriptedServer, accept_body_and_quit, answer_quit, until_closed

FROM = "news@shop.example.com"
TO = "jane@example.com"
MESSAGE = b"From: news@shop.example.com\r\nSubject: Hello\r\n\r\nHi there.\r\n"


def refusal_of_one_send(url: str) -> SendError:
    """The SendError one message to TO ends in (the test fails if it is accepted)."""
    transport = PipelinedSmtpTransport.from_url(url, timeout=5)
    try:
        with pytest.raises(SendError) as caught:
            transport.send(FROM, TO, MESSAGE)
    finally:
        transport.close()
    return caught.value


def answer_rset_and_quit(conn, read_until) -> None:
    """The end of a script whose transaction was refused: the client resets, then says goodbye."""
    assert read_until(b"\r\n") == b"RSET\r\n"
    conn.sendall(b"250 Ok\r\n")
    answer_quit(conn, read_until)


# --- a refusal while the session opens is transient, 5xx included ------------------------------


def test_a_5xx_greeting_is_transient_at_session_setup():
    refusing = ScriptedServer(lambda conn, read_until: None, greeting=b"554 5.7.1 No SMTP service for you", hello=False)
    with refusing as server:
        error = refusal_of_one_send(server.url)
        server.join()

    assert type(error) is TransientSendError
    assert (error.smtp_code, error.stage, error.error_class) == (554, "connect", "transient")
    assert str(error) == "SMTP 554 at session setup: 5.7.1 No SMTP service for you"


def test_ehlo_and_helo_refused_with_5xx_are_transient_at_session_setup():
    def script(conn, read_until):
        assert read_until(b"\r\n").startswith(b"EHLO ")
        conn.sendall(b"502 5.5.2 Command not recognized\r\n")
        assert read_until(b"\r\n").startswith(b"HELO ")
        conn.sendall(b"550 5.7.1 Client host rejected\r\n")

    with ScriptedServer(script, hello=False) as server:
        error = refusal_of_one_send(server.url)
        server.join()

    assert type(error) is TransientSendError
    assert (error.smtp_code, error.stage) == (550, "connect")


def test_a_refused_ehlo_falls_back_to_helo_and_sends_in_lock_step_without_size():
    def script(conn, read_until):
        read_until(b"\r\n")
        conn.sendall(b"500 5.5.1 Unknown command\r\n")
        assert read_until(b"\r\n").startswith(b"HELO ")
        conn.sendall(b"250 scripted\r\n")
        assert read_until(b"\r\n") == f"MAIL FROM:<{FROM}>\r\n".encode()
        for reply in (b"250 Ok", b"250 Ok", b"354 Go ahead"):
            conn.sendall(reply + b"\r\n")
            if reply != b"354 Go ahead":
                read_until(b"\r\n")
        accept_body_and_quit(conn, read_until)

    with ScriptedServer(script, hello=False) as server:
        with PipelinedSmtpTransport.from_url(server.url, timeout=5) as transport:
            assert transport.send(FROM, TO, MESSAGE).smtp_code == 250
            assert not transport.pipelining
        server.join()


def test_a_5xx_to_starttls_is_transient_at_session_setup():
    def script(conn, read_until):
        read_until(b"\r\n")
        conn.sendall(b"250-scripted\r\n250 STARTTLS\r\n")
        assert read_until(b"\r\n") == b"STARTTLS\r\n"
        conn.sendall(b"554 5.7.3 TLS not available\r\n")

    with ScriptedServer(script, hello=False) as server:
        error = refusal_of_one_send(server.url.replace("smtp://", "smtp+starttls://"))
        server.join()

    assert type(error) is TransientSendError
    assert (error.smtp_code, error.stage) == (554, "connect")


def test_starttls_not_offered_is_transient_at_session_setup():
    with CaptureSMTP() as capture:  # no TLS context: it does not offer STARTTLS
        error = refusal_of_one_send(capture.url.replace("smtp://", "smtp+starttls://"))

    assert type(error) is TransientSendError
    assert (error.smtp_code, error.stage) == (None, "connect")
    assert "STARTTLS" in str(error)


def test_credentials_for_a_server_that_offers_no_auth_are_transient_at_session_setup():
    with CaptureSMTP() as capture:  # no credentials configured: it does not offer AUTH
        error = refusal_of_one_send(capture.url.replace("smtp://", "smtp://mailer:secret@"))
        assert capture.messages == []

    assert type(error) is TransientSendError
    assert (error.smtp_code, error.stage) == (None, "connect")
    assert "secret" not in str(error)


# --- the DATA command, and replies that cannot be read ---------------------------------------


@pytest.mark.parametrize("code, error_type", [(451, TransientSendError), (554, PermanentSendError)])
def test_a_refused_data_command_is_classified_by_its_code_at_data(code, error_type):
    def script(conn, read_until):
        read_until(b"DATA\r\n")
        conn.sendall(b"250 Ok\r\n250 Ok\r\n" + f"{code} No data for now\r\n".encode())
        answer_rset_and_quit(conn, read_until)

    with ScriptedServer(script, pipelining=True) as server:
        error = refusal_of_one_send(server.url)
        server.join()

    assert type(error) is error_type
    assert (error.smtp_code, error.stage, error.outcome_unknown) == (code, "data", False)


def test_a_reply_line_too_long_to_read_counts_as_a_500_at_its_stage():
    def script(conn, read_until):
        read_until(b"DATA\r\n")
        conn.sendall(b"250 Ok\r\n550 " + b"x" * 9000 + b"\r\n")
        until_closed(conn)  # the client drops a connection it cannot read

    with ScriptedServer(script, pipelining=True) as server:
        error = refusal_of_one_send(server.url)
        server.join()

    assert type(error) is PermanentSendError
    assert (error.smtp_code, error.stage) == (500, "rcpt")


def test_a_reply_without_a_code_is_the_server_hanging_up_transient():
    def script(conn, read_until):
        read_until(b"DATA\r\n")
        conn.sendall(b"250 Ok\r\nHello there, this is not SMTP\r\n")
        until_closed(conn)

    with ScriptedServer(script, pipelining=True) as server:
        error = refusal_of_one_send(server.url)
        server.join()

    assert type(error) is TransientSendError
    assert (error.smtp_code, error.stage) == (None, "rcpt")
    assert str(error) == "connection closed by the server at RCPT TO"


def test_a_reply_code_outside_smtps_range_is_transient_without_a_code():
    def script(conn, read_until):
        read_until(b"DATA\r\n")
        conn.sendall(b"250 Ok\r\n999 No such code\r\n503 Bad sequence of commands\r\n")
        answer_rset_and_quit(conn, read_until)

    with ScriptedServer(script, pipelining=True) as server:
        error = refusal_of_one_send(server.url)
        server.join()

    assert type(error) is TransientSendError
    assert (error.smtp_code, error.stage) == (None, "rcpt")


# --- the rule as a table ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "code, stage, expected",
    [
        *((None, stage, ErrorClass.TRANSIENT) for stage in Stage),
        *((code, Stage.CONNECT, ErrorClass.TRANSIENT) for code in (421, 535, 550, 554)),
        *((code, stage, ErrorClass.TRANSIENT) for code in (421, 450, 451, 452) for stage in Stage),
        *((code, stage, ErrorClass.PERMANENT) for code in (500, 550, 552, 554, 599)
          for stage in (Stage.MAIL, Stage.RCPT, Stage.DATA, Stage.DATA_END)),
    ],
)
def test_only_a_5xx_inside_a_transaction_is_permanent(code, stage, expected):
    assert error_class_for(code, stage) is expected


@pytest.mark.parametrize(
    "exc, text",
    [
        (ConnectionResetError(104, "Connection reset by peer"), "ConnectionResetError at RCPT TO: Connection reset by peer"),
        (TimeoutError("timed out"), "timed out at RCPT TO"),
        (ssl.SSLCertVerificationError(1, "certificate verify failed"), "SSLCertVerificationError at RCPT TO: "),
    ],
)
def test_network_errors_are_transient_and_say_where(exc, text):
    error = failure_error(exc, Stage.RCPT, recipient=TO)

    assert type(error) is TransientSendError
    assert (error.smtp_code, error.stage, error.error_class) == (None, "rcpt", "transient")
    assert str(error).startswith(text)


def test_mask_addresses_hides_every_address_like_token():
    text = "5.1.1 <bob@example.com>: unknown user bob@example.com (sender news@shop.example)"

    assert mask_addresses(text) == "5.1.1 <recipient>: unknown user <recipient> (sender <recipient>)"
