"""An SMTP client that pipelines MAIL FROM, RCPT TO and DATA (RFC 2920): two round trips per message.

Why our own: `smtplib` waits for a reply after every command (four round trips per message), and
so does aiosmtplib (its `sendmail` awaits `mail()`, each `rcpt()` and `data()` in turn). Through a
relay tens of milliseconds away the round trips are the whole cost of a send, so this client
writes the envelope and DATA in one segment and then reads the three replies in order; the body
and its final reply are the second round trip. A relay that does not advertise PIPELINING gets
the same commands in lock-step.

Why blocking sockets: the send loop is synchronous (SQLAlchemy sessions, RQ jobs) and runs one
thread per SMTP connection; a blocking socket per thread needs no event loop to bridge, and the
GIL is released while a thread waits on the network.

The interface and the classification are today's `SmtpTransport`'s: the same `SendOutcome`,
`TransientSendError`/`PermanentSendError`, stages and masked texts (`classify_smtp_error` does the
classifying for both), the same lazy connect with one reconnect when a reused connection turns out
to be dropped before anything of the message went out, RSET after a refused transaction (the
connection is dropped instead after a 421), and `outcome_unknown` when the whole message went out
and the final reply was lost.
"""

from __future__ import annotations

import base64
import hmac
import smtplib
import socket
from typing import BinaryIO

from mailadmin.mail.transports.smtp import (
    SmtpTransport,
    _dot_stuffed,
    _local_hostname,
    _reply_text,
)

# Longest reply line we accept (RFC 5321 allows 512 octets; relays add a bit).
_MAX_LINE = 8192
# Preference order when the server offers several AUTH mechanisms (smtplib's order).
_AUTH_PREFERENCE = ("CRAM-MD5", "PLAIN", "LOGIN")
# The envelope's stages and the replies that let the transaction go on.
_ENVELOPE_STAGES = (("mail", (250,)), ("rcpt", (250, 251)), ("data", (354,)))


def _all_positive(replies: list[tuple[int, str]]) -> bool:
    return all(code in wanted for (code, _), (_, wanted) in zip(replies, _ENVELOPE_STAGES, strict=False))


class _Session:
    """One open SMTP connection: the socket, a buffered reader and what EHLO advertised."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader: BinaryIO = sock.makefile("rb")
        self.extensions: dict[str, str] = {}
        self.esmtp = False

    def write(self, data: bytes) -> None:
        self.sock.sendall(data)

    def command(self, line: str) -> tuple[int, str]:
        """Send one command and read its reply (lock-step)."""
        self.write(line.encode("utf-8") + b"\r\n")
        return self.reply()

    def reply(self) -> tuple[int, str]:
        """Read one (possibly multi-line) reply; raises SMTPServerDisconnected on EOF or garbage."""
        lines: list[bytes] = []
        while True:
            line = self.reader.readline(_MAX_LINE + 1)
            if not line:
                raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
            if len(line) > _MAX_LINE:
                raise smtplib.SMTPResponseException(500, b"Line too long.")
            code_text, more = line[:3], line[3:4]
            lines.append(line[4:].strip(b" \t\r\n"))
            if more != b"-":
                break
        try:
            code = int(code_text)
        except ValueError:
            raise smtplib.SMTPServerDisconnected(f"Not an SMTP reply: {code_text!r}") from None
        return code, b"\n".join(lines).decode("utf-8", errors="replace")

    def learn_extensions(self, reply: str) -> None:
        """Keywords of an EHLO reply, upper-cased, with their parameters."""
        self.extensions = {}
        for line in reply.split("\n")[1:]:
            keyword, _, params = line.strip().partition(" ")
            if keyword:
                self.extensions[keyword.upper()] = params
        self.esmtp = True

    def close(self) -> None:
        try:
            self.reader.close()
        finally:
            self.sock.close()


def _refused(code: int, reply: str, stage: str) -> smtplib.SMTPResponseException:
    """The smtplib exception `classify_smtp_error` expects for a refusal at `stage`."""
    if stage == "connect":
        return smtplib.SMTPConnectError(code, reply)
    return smtplib.SMTPResponseException(code, reply)


class PipelinedSmtpTransport(SmtpTransport):
    """One SMTP account over one connection, MAIL/RCPT/DATA pipelined when offered. Not thread-safe."""

    def __init__(self, *args, pipelining: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # False forces lock-step even when the relay offers PIPELINING (benchmarks compare both).
        self.use_pipelining = pipelining
        self._session: _Session | None = None
        self._broken = False  # the open connection cannot take another command

    @classmethod
    def from_url(cls, url: str, timeout: float = 30, *, pipelining: bool = True, **options) -> PipelinedSmtpTransport:
        """A transport for `smtp://`, `smtp+starttls://` or `smtps://` [user:password@]host[:port]."""
        transport = super().from_url(url, timeout, **options)
        transport.use_pipelining = pipelining
        return transport  # type: ignore[return-value]

    @property
    def pipelining(self) -> bool:
        """Whether the open connection pipelines (the relay advertised PIPELINING and it is wanted)."""
        return bool(self._session and self.use_pipelining and "PIPELINING" in self._session.extensions)

    def __repr__(self) -> str:  # never shows the password
        return f"<PipelinedSmtpTransport {self.security} {self.host}:{self.port}>"

    # --- the session ---------------------------------------------------------------------

    def _open_session(self) -> _Session:
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        try:
            # Commands are small writes answered by the server: Nagle's delay would only cost latency.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.security == "tls":
                sock = self._tls_context().wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise
        return _Session(sock)

    def _start_session(self, session: _Session) -> None:
        """Greeting, EHLO (HELO if refused), STARTTLS and a second EHLO, AUTH."""
        code, reply = session.reply()
        if code != 220:
            raise smtplib.SMTPConnectError(code, reply)
        self._hello(session)
        if self.security == "starttls":
            if "STARTTLS" not in session.extensions:
                raise smtplib.SMTPNotSupportedError("STARTTLS extension not supported by server.")
            code, reply = session.command("STARTTLS")
            if code != 220:
                raise smtplib.SMTPConnectError(code, reply)
            session.reader.close()
            session.sock = self._tls_context().wrap_socket(session.sock, server_hostname=self.host)
            session.reader = session.sock.makefile("rb")
            self._hello(session)
        if self.username:
            self._authenticate(session)

    def _hello(self, session: _Session) -> None:
        hostname = self.local_hostname or _local_hostname()
        code, reply = session.command(f"EHLO {hostname}")
        if code == 250:
            session.learn_extensions(reply)
            return
        session.extensions, session.esmtp = {}, False
        code, reply = session.command(f"HELO {hostname}")
        if code != 250:
            raise smtplib.SMTPHeloError(code, reply)

    def _authenticate(self, session: _Session) -> None:
        offered = session.extensions.get("AUTH", "").upper().split()
        mechanism = next((name for name in _AUTH_PREFERENCE if name in offered), None)
        if mechanism is None:
            raise smtplib.SMTPNotSupportedError("No suitable authentication method found.")
        user, password = self.username or "", self.password or ""
        if mechanism == "PLAIN":
            token = base64.b64encode(f"\0{user}\0{password}".encode()).decode("ascii")
            code, reply = session.command(f"AUTH PLAIN {token}")
        elif mechanism == "LOGIN":
            code, reply = session.command(f"AUTH LOGIN {base64.b64encode(user.encode()).decode('ascii')}")
            if code == 334:
                code, reply = session.command(base64.b64encode(password.encode()).decode("ascii"))
        else:
            code, reply = session.command("AUTH CRAM-MD5")
            if code == 334:
                challenge = base64.b64decode(reply.encode("ascii"))
                digest = hmac.new(password.encode(), challenge, "md5").hexdigest()
                code, reply = session.command(base64.b64encode(f"{user} {digest}".encode()).decode("ascii"))
        if code not in (235, 503):  # 503: already authenticated
            raise smtplib.SMTPAuthenticationError(code, reply)

    def _discard(self) -> None:
        self._broken = False
        session, self._session = self._session, None
        if session is not None:
            session.close()

    # --- one message ---------------------------------------------------------------------

    def _envelope(self, session: _Session, from_addr: str, to_addr: str, data: bytes) -> list[str]:
        size = f" SIZE={len(data)}" if session.esmtp and "SIZE" in session.extensions else ""
        return [f"MAIL FROM:<{from_addr}>{size}", f"RCPT TO:<{to_addr}>", "DATA"]

    def _envelope_replies(self, session: _Session, commands: list[str]) -> list[tuple[int, str]]:
        """Send MAIL, RCPT, DATA and read their replies: one write when pipelining, else lock-step.

        `self._stage` names the reply being waited for, also when an exception escapes.
        """
        replies: list[tuple[int, str]] = []
        if self.pipelining:
            self._stage = "mail"
            session.write("".join(f"{command}\r\n" for command in commands).encode("utf-8"))
            for stage, _ in _ENVELOPE_STAGES:
                self._stage = stage
                try:
                    replies.append(session.reply())
                except (smtplib.SMTPException, OSError):
                    if _all_positive(replies):
                        raise
                    # An earlier command was refused and the server hung up (e.g. after a 421):
                    # the refusal is the answer; the connection is gone.
                    self._broken = True
                    break
            return replies
        for (stage, wanted), command in zip(_ENVELOPE_STAGES, commands, strict=True):
            self._stage = stage
            replies.append(session.command(command))
            if replies[-1][0] not in wanted:
                break
        return replies

    def _transaction(self, session: _Session, from_addr: str, to_addr: str, data: bytes) -> tuple[int, str]:
        """MAIL, RCPT, DATA, body; returns the first non-positive reply or the final one."""
        replies = self._envelope_replies(session, self._envelope(session, from_addr, to_addr, data))
        for (stage, wanted), (code, reply) in zip(_ENVELOPE_STAGES, replies, strict=False):
            if code not in wanted:
                self._stage = stage
                if replies[-1][0] == 354 and len(replies) == 3:
                    # A pipelined DATA was accepted although the envelope was not: end an empty message.
                    session.write(b".\r\n")
                    session.reply()
                return code, _reply_text(reply)
        self._stage = "data-end"
        session.write(_dot_stuffed(data))
        code, reply = session.reply()
        return code, _reply_text(reply)

    def _reset_after_refusal(self, code: int | None) -> None:
        """RSET after a refused transaction so the connection stays usable; drop it if that fails."""
        if self._session is None:
            return
        if code == 421 or self._broken:  # the server announced it is closing the channel
            self._discard()
            return
        try:
            rset_code, _ = self._session.command("RSET")
        except (smtplib.SMTPException, OSError):
            rset_code = None
        if rset_code != 250:
            self._discard()

    def _refusal(self, code: int, reply: str, stage: str) -> smtplib.SMTPResponseException:
        return _refused(code, reply, stage)

    def close(self) -> None:
        """QUIT and close the connection, if one is open; never raises."""
        session, self._session = self._session, None
        if session is None:
            return
        try:
            session.command("QUIT")
        except (smtplib.SMTPException, OSError):
            pass
        finally:
            session.close()

