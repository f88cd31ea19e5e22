"""SMTP delivery over one reused connection that pipelines (RFC 2920): one round trip per message in
the steady state. The send loop's and the test email's transport (`transport_from_url`).

Why our own: `smtplib` waits for a reply after every command (four round trips per message), and
so does aiosmtplib (its `sendmail` awaits `mail()`, each `rcpt()` and `data()` in turn). Through a
relay tens of milliseconds away the round trips are the whole cost of a send, so this client
writes as much as SMTP lets it in one segment, and reads the replies in order:

* with PIPELINING, `start()` writes MAIL FROM, RCPT TO and DATA in one write; once DATA is
  answered 354, the message's body and its end of data wait for company: the next `start()` sends
  them *with* the next message's MAIL/RCPT/DATA, and reads the previous message's final reply and
  the next envelope's replies (RFC 2920 section 3.1 allows the end of data in a group). `finish()`
  sends a waiting body alone when no next message comes. A busy connection: one write, one round
  trip per message;
* with CHUNKING as well (RFC 3030), the whole transaction is one write: MAIL, RCPT and
  `BDAT <size> LAST` followed by the message; nothing waits for company;
* a relay that offers neither gets the commands in lock-step (CHUNKING alone: BDAT after RCPT).

Bookkeeping: replies come in the order of the commands, so each is matched to its command by
position, and before every write every reply owed has been read. Then a reply that cannot answer
its command (a 354 to MAIL, a 250 to DATA), one more than asked for, or data waiting before a write
means the relay is out of step: the connection is dropped, and each message of that exchange ends
as what is known for it: `outcome_unknown` when all of it had gone out (its body written, or BDAT),
transient when it had not (its body never went out, so it was not delivered). A reply that never
comes (the timeout) and a hang-up are treated the same way. Every message handed over comes back
exactly once (`Finished`), sent, refused (the classification of its reply) or failed.

Why blocking sockets: the send loop is synchronous (SQLAlchemy sessions, RQ jobs) and runs one
thread per SMTP connection; a blocking socket per thread needs no event loop to bridge, and the
GIL is released while a thread waits on the network.

`SMTP_URL` picks the security mode by scheme: `smtp://` (plain, port 25), `smtp+starttls://`
(STARTTLS, 587) and `smtps://` (implicit TLS, 465); `user:password@` is URL-decoded and used for
AUTH. The session is opened lazily (session.py), reused for every send, and reopened once when a
reused connection turns out to be dropped before anything of the message went out (found closed
before the write, or closed before MAIL FROM was answered); a refused envelope is followed by RSET
(the connection is dropped instead after a 421). `round_trips` and `transactions` count what the
client really spent: writes that wait for a reply, and messages handed over.

In three pieces: this module (the account, opening sessions, handing messages over: `start`,
`finish`, `send`), conversation.py (the exchanges over the open connection and the bookkeeping
above) and transaction.py (one message's transaction: its commands, the replies each stage may
get, its verdict).
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Hashable
from dataclasses import KW_ONLY, dataclass, field
from urllib.parse import unquote, urlsplit

from mailadmin.mail.transports.base import Finished, SendError, SendOutcome
from mailadmin.mail.transports.classify import SmtpProtocolError, Stage, failure_error
from mailadmin.mail.transports.conversation import SmtpConversation
from mailadmin.mail.transports.session import Session, SessionOptions, local_hostname
from mailadmin.mail.transports.transaction import PendingMessage

SECURITY_BY_SCHEME = {"smtp": "plain", "smtp+starttls": "starttls", "smtps": "tls"}
DEFAULT_PORTS = {"plain": 25, "starttls": 587, "tls": 465}


@dataclass(eq=False, repr=False)
class PipelinedSmtpTransport:
    """One SMTP account over one connection, pipelined when offered. Not thread-safe."""

    host: str
    port: int | None = None
    _: KW_ONLY
    security: str = "plain"
    username: str | None = None
    password: str | None = None
    timeout: float = 30
    ssl_context: ssl.SSLContext | None = None
    local_hostname: str | None = None
    # False forces lock-step even when the relay offers PIPELINING (benchmarks compare both).
    use_pipelining: bool = True
    # False sends DATA even when the relay offers CHUNKING.
    use_chunking: bool = True
    connections_opened: int = field(default=0, init=False)
    transactions: int = field(default=0, init=False)  # messages handed over
    # The open connection, the body waiting to go out, and the exchanges over it.
    conversation: SmtpConversation = field(default_factory=SmtpConversation, init=False)

    def __post_init__(self) -> None:
        if self.security not in DEFAULT_PORTS:
            raise ValueError(f"security must be one of {', '.join(DEFAULT_PORTS)}, got {self.security!r}")
        self.port = self.port or DEFAULT_PORTS[self.security]

    @classmethod
    def from_url(
        cls,
        url: str,
        timeout: float = 30,
        *,
        pipelining: bool = True,
        chunking: bool = True,
        ssl_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
    ) -> PipelinedSmtpTransport:
        """A transport for `smtp://`, `smtp+starttls://` or `smtps://` [user:password@]host[:port]."""
        parts = urlsplit(url)
        security = SECURITY_BY_SCHEME.get(parts.scheme.lower())
        if security is None:
            raise ValueError(f"SMTP URL scheme must be one of {', '.join(SECURITY_BY_SCHEME)}, got {parts.scheme!r}")
        if not parts.hostname:
            raise ValueError("SMTP URL has no host")
        return cls(
            parts.hostname,
            parts.port,
            security=security,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            timeout=timeout,
            ssl_context=ssl_context,
            local_hostname=local_hostname,
            use_pipelining=pipelining,
            use_chunking=chunking,
        )

    @property
    def provider(self) -> str:
        """The SMTP host name, for the "provider" log field."""
        return self.host

    @property
    def round_trips(self) -> int:
        """Writes that waited for a reply, over every connection this transport opened."""
        return self.conversation.round_trips

    @property
    def _session(self) -> Session | None:
        return self.conversation.session

    @property
    def connected(self) -> bool:
        return self._session is not None

    @property
    def pipelining(self) -> bool:
        """Whether the open connection pipelines (the relay advertised PIPELINING and it is wanted)."""
        return bool(self._session and self.use_pipelining and self._session.offers_pipelining)

    @property
    def chunking(self) -> bool:
        """Whether the open connection sends BDAT (the relay advertised CHUNKING and it is wanted)."""
        return bool(self._session and self.use_chunking and self._session.offers_chunking)

    @property
    def awaiting(self) -> bool:
        """A message's body waits to go out with the next message (`finish()` sends it alone)."""
        return self.conversation.held is not None

    def __repr__(self) -> str:  # never shows the password
        return f"<PipelinedSmtpTransport {self.security} {self.host}:{self.port}>"

    # --- the session ---------------------------------------------------------------------

    def connect(self) -> None:
        """Open the session now (greeting, EHLO, STARTTLS, AUTH); raises TransientSendError."""
        if self._session is not None:
            return
        options = SessionOptions(
            self.host,
            self.port or DEFAULT_PORTS[self.security],
            self.security,
            self.timeout,
            self.local_hostname or local_hostname(),
            tls=None if self.security == "plain" else self.ssl_context or ssl.create_default_context(),
            username=self.username,
            password=self.password,
        )
        failure: SmtpProtocolError | OSError | None = None
        try:
            session = Session.open(options)
        except (SmtpProtocolError, OSError) as exc:
            failure = exc
        if failure is not None:
            # Raised outside the except block so no traceback chains to the server's text.
            raise failure_error(failure, Stage.CONNECT)
        self.conversation.session = session
        self.connections_opened += 1

    def close(self) -> None:
        """QUIT and close the connection, if one is open; never raises.

        Call `finish()` first: a message still awaiting is abandoned (the connection is closed in
        the middle of its DATA, so the server discards it) and its verdict is never reported."""
        self.conversation.close()

    def __enter__(self) -> PipelinedSmtpTransport:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- messages ------------------------------------------------------------------------

    def send(self, from_addr: str, to_addr: str, data: bytes) -> SendOutcome:
        """Deliver one message to one recipient and wait for its verdict (`start` + `finish`);
        raises TransientSendError or PermanentSendError."""
        if self.awaiting:
            raise RuntimeError("send() while a started message awaits its verdict: finish() it first")
        (finished,) = self.start(from_addr, to_addr, data, ticket=None) + self.finish()
        if finished.error is not None:
            raise finished.error
        return finished.outcome  # type: ignore[return-value]

    def start(self, envelope_from: str, envelope_to: str, data: bytes, ticket: Hashable) -> list[Finished]:
        """Hand one message to the connection: written with whatever waits to go out (a previous
        message's body), and the replies owed read. Returns every message whose transaction is now
        over, each exactly once: the previous one, this one, both or neither (this one's body then
        waits, `awaiting`). Raises ValueError for a line break in an address, before any write."""
        if any(ch in address for address in (envelope_from, envelope_to) for ch in "\r\n"):
            raise ValueError("line break in an SMTP envelope address")
        self.transactions += 1
        message = PendingMessage(ticket, envelope_from, envelope_to, data, time.perf_counter())
        finished: list[Finished] = []
        while True:
            if self.conversation.drop_if_out_of_step(finished):
                message.reconnected = True  # found closed (or worse) before anything of it went out
            reused = self.connected
            try:
                self.connect()
            except SendError as exc:  # the session could not be opened: this message's failure
                finished.append(Finished(ticket, error=exc))
                return finished
            exchange = self.conversation.pipelined if self.pipelining else self.conversation.lock_step
            if not exchange(message, finished, chunking=self.chunking, may_retry=reused and not message.reconnected):
                return finished
            message.reconnected = True

    def finish(self) -> list[Finished]:
        """Send the waiting body, if any, alone and read its final reply: its verdict (or nothing)."""
        finished: list[Finished] = []
        if self.conversation.drop_if_out_of_step(finished) or not self.awaiting:
            return finished
        return [self.conversation.send_held()]
