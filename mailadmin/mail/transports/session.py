"""One open SMTP connection of the pipelined client: the socket, replies read off it, and opening the
session (implicit TLS or STARTTLS, EHLO with a HELO fallback, AUTH CRAM-MD5/PLAIN/LOGIN).

Replies are read through the session's own buffer rather than a file object, so that it can tell
without blocking whether the server has said something nobody asked for (`has_unread`): before
each write every reply owed has been read, so anything waiting then is a reply out of step, or the
server hanging up.

Failures are raised as they happen, an `SmtpProtocolError` for what the server did and an `OSError`
for the network; the transport classifies them with the stage it was at (classify.py).
"""

from __future__ import annotations

import base64
import hmac
import re
import select
import socket
import ssl
from dataclasses import dataclass
from functools import lru_cache

from mailadmin.mail.transports.classify import ExtensionMissing, ReplyRefused, ServerHungUp

# Longest reply line we accept (RFC 5321 allows 512 octets; relays add a bit).
_MAX_LINE = 8192
# Preference order when the server offers several AUTH mechanisms (smtplib's order).
_AUTH_PREFERENCE = ("CRAM-MD5", "PLAIN", "LOGIN")
_LINE_ENDS = re.compile(rb"\r\n|\n|\r")
_LEADING_DOT = re.compile(rb"(?m)^\.")


@lru_cache(maxsize=1)
def local_hostname() -> str:
    """This host's name for EHLO."""
    # getfqdn() may do a slow reverse DNS lookup; do it once per process, not per connection.
    return socket.getfqdn() or "localhost"


def with_crlf(data: bytes) -> bytes:
    """`data` with CRLF line ends, ending in CRLF: a BDAT payload (RFC 3030), sent as it is."""
    # Our builder already writes CRLF: counting (C speed) spares a regex pass and a copy of every
    # message when there is nothing to change.
    crlf = data.count(b"\r\n")
    if crlf != data.count(b"\n") or crlf != data.count(b"\r"):
        data = _LINE_ENDS.sub(b"\r\n", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data


def dot_stuffed(data: bytes) -> bytes:
    """DATA payload: CRLF line ends, leading dots doubled, terminated by CRLF.CRLF (RFC 5321 4.5.2)."""
    data = with_crlf(data)
    if data.startswith(b".") or b"\n." in data:  # rare in our messages: no regex pass otherwise
        data = _LEADING_DOT.sub(b"..", data)
    return data + b".\r\n"


@dataclass(frozen=True, slots=True)
class SessionOptions:
    """How to open a session: where, how secured, as whom."""

    host: str
    port: int
    security: str  # "plain", "starttls" or "tls"
    timeout: float
    hostname: str  # ours, for EHLO
    tls: ssl.SSLContext | None = None  # required unless security is "plain"
    username: str | None = None
    password: str | None = None


class Session:
    """One open SMTP connection: the socket, its receive buffer and what EHLO advertised."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = bytearray()  # received, not yet read as a reply
        self._ended = False  # the server closed its side
        self._poller = select.poll()
        self._poller.register(sock.fileno(), select.POLLIN)
        self.extensions: dict[str, str] = {}
        self.esmtp = False

    @classmethod
    def open(cls, options: SessionOptions) -> Session:
        """Connected, greeted, said hello, secured and authenticated as `options` ask; closed on failure."""
        sock = socket.create_connection((options.host, options.port), timeout=options.timeout)
        try:
            # Commands are small writes answered by the server: Nagle's delay would only cost latency.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if options.security == "tls":
                sock = options.tls.wrap_socket(sock, server_hostname=options.host)  # type: ignore[union-attr]
            session = cls(sock)
        except BaseException:
            sock.close()
            raise
        try:
            session._start(options)
        except BaseException:
            session.close()
            raise
        return session

    def _start(self, options: SessionOptions) -> None:
        """Greeting, EHLO (HELO if refused), STARTTLS and a second EHLO, AUTH."""
        code, reply = self.reply()
        if code != 220:
            raise ReplyRefused(code, reply)
        self._hello(options.hostname)
        if options.security == "starttls":
            if "STARTTLS" not in self.extensions:
                raise ExtensionMissing("STARTTLS extension not supported by server")
            code, reply = self.command("STARTTLS")
            if code != 220:
                raise ReplyRefused(code, reply)
            self._buffer.clear()  # nothing the server sent before TLS may count as said inside it
            self.sock = options.tls.wrap_socket(self.sock, server_hostname=options.host)  # type: ignore[union-attr]
            self._hello(options.hostname)
        if options.username:
            self._authenticate(options.username, options.password or "")

    def _hello(self, hostname: str) -> None:
        code, reply = self.command(f"EHLO {hostname}")
        if code == 250:
            self._learn_extensions(reply)
            return
        self.extensions, self.esmtp = {}, False
        code, reply = self.command(f"HELO {hostname}")
        if code != 250:
            raise ReplyRefused(code, reply)

    def _learn_extensions(self, reply: str) -> None:
        """Keywords of an EHLO reply, upper-cased, with their parameters."""
        self.extensions = {}
        for line in reply.split("\n")[1:]:
            keyword, _, params = line.strip().partition(" ")
            if keyword:
                self.extensions[keyword.upper()] = params
        self.esmtp = True

    def _authenticate(self, user: str, password: str) -> None:
        offered = self.extensions.get("AUTH", "").upper().split()
        mechanism = next((name for name in _AUTH_PREFERENCE if name in offered), None)
        if mechanism is None:
            raise ExtensionMissing("no suitable authentication method offered")
        if mechanism == "PLAIN":
            code, reply = self.command("AUTH PLAIN " + _b64(f"\0{user}\0{password}"))
        elif mechanism == "LOGIN":
            code, reply = self.command(f"AUTH LOGIN {_b64(user)}")
            if code == 334:
                code, reply = self.command(_b64(password))
        else:
            code, reply = self.command("AUTH CRAM-MD5")
            if code == 334:
                challenge = base64.b64decode(reply.encode("ascii"))
                digest = hmac.new(password.encode(), challenge, "md5").hexdigest()
                code, reply = self.command(_b64(f"{user} {digest}"))
        if code not in (235, 503):  # 503: already authenticated
            raise ReplyRefused(code, reply)

    @property
    def offers_pipelining(self) -> bool:
        """The server advertised PIPELINING (RFC 2920)."""
        return "PIPELINING" in self.extensions

    @property
    def offers_chunking(self) -> bool:
        """The server advertised CHUNKING: BDAT instead of DATA (RFC 3030)."""
        return "CHUNKING" in self.extensions

    @property
    def takes_size(self) -> bool:
        """The server takes MAIL FROM's SIZE= parameter (RFC 1870)."""
        return self.esmtp and "SIZE" in self.extensions

    def write(self, data: bytes) -> None:
        self.sock.sendall(data)

    def command(self, line: str) -> tuple[int, str]:
        """Send one command and read its reply (lock-step)."""
        self.write(line.encode("utf-8") + b"\r\n")
        return self.reply()

    def reply(self) -> tuple[int, str]:
        """Read one (possibly multi-line) reply; raises ServerHungUp on EOF or garbage."""
        lines: list[bytes] = []
        while True:
            line = self._line()
            if not line:
                raise ServerHungUp("Connection unexpectedly closed")
            if len(line) > _MAX_LINE:
                raise ReplyRefused(500, "Line too long.")
            code_text, more = line[:3], line[3:4]
            lines.append(line[4:].strip(b" \t\r\n"))
            if more != b"-":
                break
        try:
            code = int(code_text)
        except ValueError:
            raise ServerHungUp(f"Not an SMTP reply: {code_text!r}") from None
        return code, b"\n".join(lines).decode("utf-8", errors="replace")

    def _line(self) -> bytes:
        """The next line the server sent (b"" once it has closed), at most `_MAX_LINE` + 1 octets."""
        buffer = self._buffer
        while True:
            end = buffer.find(b"\n", 0, _MAX_LINE + 1)
            if end >= 0 or len(buffer) > _MAX_LINE or self._ended:
                taken = end + 1 if end >= 0 else min(len(buffer), _MAX_LINE + 1)
                line = bytes(buffer[:taken])
                del buffer[:taken]
                return line
            chunk = self.sock.recv(65536)
            if chunk:
                buffer += chunk
            else:
                self._ended = True

    @property
    def hung_up(self) -> bool:
        """The server closed the connection and everything it sent before has been read."""
        return self._ended and not self._buffer

    def has_unread(self) -> bool:
        """The server has said something not yet read, or hung up; never waits.

        Called when every reply owed has been read: then anything waiting is out of step."""
        if self._buffer or self._ended:
            return True
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            return True
        if not self._poller.poll(0):
            return False
        # Readable: data, the end of the stream, or (TLS) a record without data, such as a session ticket.
        timeout = self.sock.gettimeout()
        self.sock.settimeout(0)
        try:
            chunk = self.sock.recv(65536)
        except (BlockingIOError, ssl.SSLWantReadError):
            return False
        except OSError:
            return True  # broken: the next write or read says how
        finally:
            self.sock.settimeout(timeout)
        if chunk:
            self._buffer += chunk
        else:
            self._ended = True
        return True

    def close(self) -> None:
        self.sock.close()


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode("ascii")
