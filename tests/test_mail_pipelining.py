"""The pipelining SMTP client: one write for MAIL/RCPT/DATA when offered, lock-step otherwise.

The classification of every reply is proven in test_mail_transport.py. Here: what pipelining
does, against a scripted server that checks the bytes on the wire, the capture server, and
postfix's smtp-sink.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from mailadmin.devtools.redis_server import free_port
from mailadmin.devtools.smtp_capture import CaptureSMTP
from mailadmin.mail.transports import PermanentSendError, TransientSendError
from mailadmin.mail.transports.pipelined import PipelinedSmtpTransport
from tests.support.scripted_smtp import ScriptedServer, accept_body_and_quit, answer_quit
from tests.support.system_packages import missing_system_package

FROM = "news@shop.example.com"
MESSAGE = b"From: news@shop.example.com\r\nSubject: Hello\r\n\r\nHi there.\r\n.leading dot\r\n"
SMTP_SINK = shutil.which("smtp-sink") or next(
    (path for path in ("/usr/sbin/smtp-sink", "/usr/lib/postfix/sbin/smtp-sink") if os.access(path, os.X_OK)), None
)


# --- a scripted server that sees every byte ---------------------------------------------------


def test_envelope_and_data_go_out_in_one_write_before_any_reply():
    seen: dict[str, bytes] = {}

    def script(conn, read_until):
        # No reply is sent until MAIL, RCPT and DATA have all arrived: a lock-step client would hang here.
        seen["envelope"] = read_until(b"DATA\r\n")
        conn.sendall(b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n")
        seen["body"] = accept_body_and_quit(conn, read_until)

    with ScriptedServer(script, pipelining=True) as server:
        with PipelinedSmtpTransport.from_url(server.url, timeout=5) as transport:
            outcome = transport.send(FROM, "jane@example.com", MESSAGE)
            assert transport.pipelining
        server.join()

    assert outcome.smtp_code == 250 and "queued as ABC" in outcome.smtp_reply
    assert seen["envelope"] == (
        f"MAIL FROM:<{FROM}> SIZE={len(MESSAGE)}\r\nRCPT TO:<jane@example.com>\r\nDATA\r\n".encode()
    )
    assert seen["body"].endswith(b"\r\n..leading dot\r\n.\r\n")


def test_without_pipelining_each_command_waits_for_its_reply():
    received: list[bytes] = []

    def script(conn, read_until):
        for line, reply in ((b"MAIL", b"250 Ok"), (b"RCPT", b"250 Ok"), (b"DATA", b"354 Go ahead")):
            received.append(read_until(b"\r\n"))
            time.sleep(0.05)  # a pipelining client would have sent the next command by now
            conn.setblocking(False)
            try:
                early = conn.recv(65536)
            except BlockingIOError:
                early = b""
            conn.setblocking(True)
            conn.settimeout(5)
            assert early == b"", f"{early!r} arrived before the reply to {line!r}"
            conn.sendall(reply + b"\r\n")
        accept_body_and_quit(conn, read_until)

    with ScriptedServer(script, pipelining=False) as server:
        with PipelinedSmtpTransport.from_url(server.url, timeout=5) as transport:
            assert transport.send(FROM, "jane@example.com", MESSAGE).smtp_code == 250
            assert not transport.pipelining
        server.join()

    assert [line[:4] for line in received] == [b"MAIL", b"RCPT", b"DATA"]


def test_a_421_to_a_pipelined_mail_from_followed_by_a_hang_up_is_that_421():
    def script(conn, read_until):
        read_until(b"DATA\r\n")
        conn.sendall(b"421 4.7.0 Too many messages, slow down\r\n")
        conn.shutdown(socket.SHUT_RDWR)

    with ScriptedServer(script, pipelining=True) as server:
        transport = PipelinedSmtpTransport.from_url(server.url, timeout=5)
        with pytest.raises(TransientSendError) as caught:
            transport.send(FROM, "jane@example.com", MESSAGE)
        server.join()

    assert (caught.value.smtp_code, caught.value.stage) == (421, "mail")
    assert "Too many messages" in str(caught.value)
    assert not transport.connected


def test_a_354_to_a_pipelined_data_after_a_refused_recipient_ends_an_empty_message_and_resets():
    def script(conn, read_until):
        read_until(b"DATA\r\n")
        conn.sendall(b"250 Ok\r\n550 5.1.1 <gone@example.com>: unknown\r\n354 Go ahead\r\n")
        assert read_until(b".\r\n") == b".\r\n"  # nothing but the end of an empty message
        conn.sendall(b"554 5.5.1 No valid recipients\r\n")
        assert read_until(b"\r\n") == b"RSET\r\n"
        conn.sendall(b"250 Ok\r\n")
        answer_quit(conn, read_until)

    with ScriptedServer(script, pipelining=True) as server:
        with PipelinedSmtpTransport.from_url(server.url, timeout=5) as transport:
            with pytest.raises(PermanentSendError) as caught:
                transport.send(FROM, "gone@example.com", MESSAGE)
            assert transport.connected
        server.join()

    assert (caught.value.smtp_code, caught.value.stage) == (550, "rcpt")
    assert "gone@example.com" not in str(caught.value)


# --- the capture server, with and without PIPELINING ------------------------------------------


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "lock-step"])
def test_many_sends_over_one_connection_with_a_refused_recipient_in_between(pipelining):
    with CaptureSMTP(pipelining=pipelining) as capture:
        capture.reply_for_address("gone@example.com", 550, "5.1.1 Mailbox does not exist")
        with PipelinedSmtpTransport.from_url(capture.url, timeout=5) as transport:
            for number in range(20):
                transport.send(FROM, f"user{number}@example.com", MESSAGE)
                if number == 10:
                    with pytest.raises(PermanentSendError):
                        transport.send(FROM, "gone@example.com", MESSAGE)
            assert transport.pipelining is pipelining

        assert capture.wait_for(20)
        assert capture.connection_count == 1
        assert capture.recipients() == {f"user{number}@example.com": 1 for number in range(20)}
        assert all(message.data == MESSAGE for message in capture.messages)


def test_pipelining_can_be_turned_off_even_when_offered():
    with CaptureSMTP(pipelining=True) as capture:
        with PipelinedSmtpTransport.from_url(capture.url, timeout=5) as transport:
            transport.use_pipelining = False
            transport.send(FROM, "a@example.com", MESSAGE)
            assert not transport.pipelining


# --- postfix's smtp-sink ----------------------------------------------------------------------


@contextmanager
def smtp_sink(*options: str) -> Iterator[str]:
    if SMTP_SINK is None:
        missing_system_package("postfix", "postfix's smtp-sink")
    port = free_port()
    command = [SMTP_SINK, *(["-u", "nobody"] if os.geteuid() == 0 else []), *options, f"127.0.0.1:{port}", "64"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("smtp-sink did not start") from None
                time.sleep(0.05)
        yield f"smtp://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


@pytest.mark.parametrize("options, pipelining", [((), True), (("-p",), False)], ids=["pipelining", "no-pipelining"])
def test_smtp_sink_takes_hundreds_of_messages_over_one_connection(options, pipelining):
    with smtp_sink(*options) as url:
        with PipelinedSmtpTransport.from_url(url, timeout=5) as transport:
            outcomes = [transport.send(FROM, f"user{number}@example.com", MESSAGE) for number in range(300)]
            assert transport.pipelining is pipelining
            assert transport.connections_opened == 1

    assert {outcome.smtp_code for outcome in outcomes} == {250}


@pytest.mark.parametrize(
    "options, error_type, stage",
    [
        (("-r", "RCPT"), TransientSendError, "rcpt"),
        (("-f", "RCPT"), PermanentSendError, "rcpt"),
        (("-r", "MAIL"), TransientSendError, "mail"),
        (("-f", "DATA"), PermanentSendError, "data"),
        (("-f", "."), PermanentSendError, "data-end"),
        (("-r", "."), TransientSendError, "data-end"),
    ],
)
def test_smtp_sink_refusals_are_classified_at_their_stage(options, error_type, stage):
    with smtp_sink(*options) as url:
        with PipelinedSmtpTransport.from_url(url, timeout=5) as transport:
            for _ in range(3):  # RSET keeps the connection usable after each refusal
                with pytest.raises(error_type) as caught:
                    transport.send(FROM, "jane@example.com", MESSAGE)
                assert caught.value.stage == stage
                assert caught.value.outcome_unknown is False
            assert transport.connections_opened == 1


def test_smtp_sink_hanging_up_after_the_final_dot_leaves_the_outcome_unknown():
    with smtp_sink("-q", ".") as url:
        transport = PipelinedSmtpTransport.from_url(url, timeout=5)
        with pytest.raises(TransientSendError) as caught:
            transport.send(FROM, "jane@example.com", MESSAGE)

    assert caught.value.stage == "data-end"
    assert caught.value.outcome_unknown is True
