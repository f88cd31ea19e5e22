"""The capture server's CHUNKING (RFC 3030 `BDAT`), which `make run`'s development sink offers: the
pipelining client sends whole transactions to it, its faults and delays apply to a BDAT message as to
a DATA one, and chunks are joined, read whatever the reply, and dropped by RSET."""

from __future__ import annotations

import socket

import pytest

from mailadmin.devtools.smtp_capture import CaptureSMTP
from mailadmin.mail.transports import PermanentSendError
from mailadmin.mail.transports.pipelined import PipelinedSmtpTransport

FROM = "news@shop.example.com"
MESSAGE = b"From: news@shop.example.com\r\nSubject: Hello\r\n\r\nHi there.\r\n.leading dot\r\n"


def test_the_client_sends_whole_transactions_with_bdat_and_each_message_arrives_intact():
    with CaptureSMTP(chunking=True) as capture:
        capture.reply_for_address("gone@example.com", 550, "5.1.1 Mailbox does not exist", stage="data")
        with PipelinedSmtpTransport.from_url(capture.url, timeout=5) as transport:
            for number in range(10):
                transport.send(FROM, f"user{number}@example.com", MESSAGE)
            with pytest.raises(PermanentSendError):
                transport.send(FROM, "gone@example.com", MESSAGE)  # refused at the end of its data
            transport.send(FROM, "after@example.com", MESSAGE)
            assert transport.chunking
            assert transport.round_trips == transport.transactions == 12  # one round trip each

        assert capture.wait_for(11)
        assert capture.recipients() == {**{f"user{number}@example.com": 1 for number in range(10)},
                                        "after@example.com": 1}
        assert all(message.data == MESSAGE for message in capture.messages)  # no dot-stuffing with BDAT


def test_without_chunking_the_server_offers_no_bdat_and_the_client_uses_data():
    with CaptureSMTP() as capture:
        with PipelinedSmtpTransport.from_url(capture.url, timeout=5) as transport:
            transport.send(FROM, "a@example.com", MESSAGE)
            assert not transport.chunking
        assert capture.wait_for(1) and capture.messages[0].data == MESSAGE


def converse(port: int, lines: list[bytes]) -> bytes:
    """Send `lines` in one write after EHLO; every reply up to the server's 221."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.recv(1024)
        conn.sendall(b"EHLO client.example.com\r\n")
        received = b""
        while b"\r\n250 " not in received:  # the EHLO reply's last line
            received += conn.recv(4096)
        assert b"250-CHUNKING" in received
        conn.sendall(b"".join(lines) + b"QUIT\r\n")
        replies = b""
        while not replies.endswith(b"221 Bye\r\n") and (chunk := conn.recv(4096)):
            replies += chunk
        return replies


def test_chunks_are_joined_into_one_message_and_rset_drops_a_message_half_sent():
    with CaptureSMTP(chunking=True) as capture:
        replies = converse(capture.port, [
            b"MAIL FROM:<a@example.com>\r\n", b"RCPT TO:<dropped@example.com>\r\n", b"BDAT 6\r\n", b"Part 1",
            b"RSET\r\n",
            b"MAIL FROM:<a@example.com>\r\n", b"RCPT TO:<b@example.com>\r\n",
            b"BDAT 16\r\n", b"Subject: x\r\n\r\nHe", b"BDAT 6 LAST\r\n", b"llo\r\n.",
            b"BDAT 4 LAST\r\n", b"lost",  # no transaction: refused, its octets read all the same
        ])

        assert capture.wait_for(1)
        assert [message.data for message in capture.messages] == [b"Subject: x\r\n\r\nHello\r\n."]
        assert capture.recipients() == {"b@example.com": 1}
        assert b"250 2.0.0 6 octets received" in replies and b"503 5.5.1 Error: need RCPT command" in replies
        assert replies.endswith(b"221 Bye\r\n")  # the refused chunk's octets were not read as commands
