"""SMTP delivery over one reused connection that pipelines MAIL FROM, RCPT TO and DATA (RFC 2920):
two round trips per message. The send loop's and the test email's transport (`transport_from_url`).

Why our own: `smtplib` waits for a reply after every command (four round trips per message), and
so does aiosmtplib (its `sendmail` awaits `mail()`, each `rcpt()` and `data()` in turn). Through a
relay tens of milliseconds away the round trips are the whole cost of a send, so this client
writes the envelope and DATA in one segment and then reads the three replies in order; the body
and its final reply are the second round trip. A relay that does not advertise PIPELINING gets
the same commands in lock-step.

Why blocking sockets: the send loop is synchronous (SQLAlchemy sessions, RQ jobs) and runs one
thread per SMTP connection; a blocking socket per thread needs no event loop to bridge, and the
GIL is released while a thread waits on the network.

`SMTP_URL` picks the security mode by scheme: `smtp://` (plain, port 25), `smtp+starttls://`
(STARTTLS, 587) and `smtps://` (implicit TLS, 465); `user:password@` is URL-decoded and used for
AUTH. The session is opened lazily (session.py), reused for every send, and reopened once when a
reused connection turns out to be dropped before anything of the message went out; a refused
transaction is followed by RSET (the connection is dropped instead after a 421), and
`outcome_unknown` is set when the whole message went out and the final reply was lost. Every
failure is classified by classify.py, with the stage it happened at.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import KW_ONLY, dataclass, field
from urllib.parse import unquote, urlsplit

from mailadmin.mail.transports.base import SendOutcome
from mailadmin.mail.transports.classify import (
    ServerHungUp,
    SmtpProtocolError,
    Stage,
    failure_error,
    mask_addresses,
    refusal_error,
    reply_text,
)
from mailadmin.mail.transports.session import Session, SessionOptions, dot_stuffed, local_hostname

SECURITY_BY_SCHEME = {"smtp": "plain", "smtp+starttls": "starttls", "smtps": "tls"}
DEFAULT_PORTS = {"plain": 25, "starttls": 587, "tls": 465}
# The envelope's stages and the replies that let the transaction go on.
_ENVELOPE_STAGES = ((Stage.MAIL, (250,)), (Stage.RCPT, (250, 251)), (Stage.DATA, (354,)))


def _all_positive(replies: list[tuple[int, str]]) -> bool:
    return all(code in wanted for (code, _), (_, wanted) in zip(replies, _ENVELOPE_STAGES, strict=False))


@dataclass(eq=False, repr=False)
class PipelinedSmtpTransport:
    """One SMTP account over one connection, MAIL/RCPT/DATA pipelined when offered. Not thread-safe."""

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
    connections_opened: int = field(default=0, init=False)
    _session: Session | None = field(default=None, init=False)
    _stage: Stage = field(default=Stage.MAIL, init=False)  # the reply being waited for
    _broken: bool = field(default=False, init=False)  # the open connection cannot take another command

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
        )

    @property
    def provider(self) -> str:
        """The SMTP host name, for the "provider" log field."""
        return self.host

    @property
    def connected(self) -> bool:
        return self._session is not None

    @property
    def pipelining(self) -> bool:
        """Whether the open connection pipelines (the relay advertised PIPELINING and it is wanted)."""
        return bool(self._session and self.use_pipelining and self._session.offers_pipelining)

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
        self._session = session
        self.connections_opened += 1

    def _discard(self) -> None:
        self._broken = False
        session, self._session = self._session, None
        if session is not None:
            session.close()

    def close(self) -> None:
        """QUIT and close the connection, if one is open; never raises."""
        self._broken = False
        session, self._session = self._session, None
        if session is None:
            return
        try:
            session.command("QUIT")
        except (SmtpProtocolError, OSError):
            pass
        finally:
            session.close()

    def __enter__(self) -> PipelinedSmtpTransport:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- one message ---------------------------------------------------------------------

    def send(self, from_addr: str, to_addr: str, data: bytes) -> SendOutcome:
        """Deliver one message to one recipient; raises TransientSendError or PermanentSendError."""
        if any(ch in address for address in (from_addr, to_addr) for ch in "\r\n"):
            raise ValueError("line break in an SMTP envelope address")
        started = time.perf_counter()
        code, reply, reconnected = self._deliver(from_addr, to_addr, data)
        if code == 250:
            took_ms = (time.perf_counter() - started) * 1000
            return SendOutcome(code, mask_addresses(reply_text(reply), to_addr), took_ms, reconnected)
        stage = self._stage
        self._reset_after_refusal(code)
        raise refusal_error(code, reply, stage, recipient=to_addr)

    def _deliver(self, from_addr: str, to_addr: str, data: bytes) -> tuple[int, str, bool]:
        """The transaction's last reply, and whether the connection had to be reopened for it."""
        reconnected = False
        while True:
            reused = self.connected
            self.connect()
            failure: SmtpProtocolError | OSError | None = None
            try:
                code, reply = self._transaction(self._session, from_addr, to_addr, data)  # type: ignore[arg-type]
            except (SmtpProtocolError, OSError) as exc:
                failure, stage = exc, self._stage
                self._discard()
            if failure is None:
                return code, reply, reconnected
            dropped = isinstance(failure, (ServerHungUp, ConnectionError))
            if dropped and reused and not reconnected and stage is Stage.MAIL:
                # The server closed an idle connection before answering MAIL: the body never
                # went out, so trying once more on a fresh connection is safe.
                reconnected = True
                continue
            # Raised outside the except block so no traceback chains to the server's text.
            raise failure_error(failure, stage, recipient=to_addr, outcome_unknown=stage is Stage.DATA_END)

    def _envelope(self, session: Session, from_addr: str, to_addr: str, data: bytes) -> list[str]:
        size = f" SIZE={len(data)}" if session.takes_size else ""
        return [f"MAIL FROM:<{from_addr}>{size}", f"RCPT TO:<{to_addr}>", "DATA"]

    def _envelope_replies(self, session: Session, commands: list[str]) -> list[tuple[int, str]]:
        """Send MAIL, RCPT, DATA and read their replies: one write when pipelining, else lock-step.

        `self._stage` names the reply being waited for, also when an exception escapes.
        """
        replies: list[tuple[int, str]] = []
        if self.pipelining:
            self._stage = Stage.MAIL
            session.write("".join(f"{command}\r\n" for command in commands).encode("utf-8"))
            for stage, _ in _ENVELOPE_STAGES:
                self._stage = stage
                try:
                    replies.append(session.reply())
                except (SmtpProtocolError, OSError):
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

    def _transaction(self, session: Session, from_addr: str, to_addr: str, data: bytes) -> tuple[int, str]:
        """MAIL, RCPT, DATA, body; returns the first non-positive reply or the final one."""
        replies = self._envelope_replies(session, self._envelope(session, from_addr, to_addr, data))
        for (stage, wanted), (code, reply) in zip(_ENVELOPE_STAGES, replies, strict=False):
            if code not in wanted:
                self._stage = stage
                if replies[-1][0] == 354 and len(replies) == 3:
                    # A pipelined DATA was accepted although the envelope was not: end an empty message.
                    session.write(b".\r\n")
                    session.reply()
                return code, reply
        self._stage = Stage.DATA_END
        session.write(dot_stuffed(data))
        return session.reply()

    def _reset_after_refusal(self, code: int) -> None:
        """RSET after a refused transaction so the connection stays usable; drop it if that fails."""
        if self._session is None:
            return
        if code == 421 or self._broken:  # the server announced it is closing the channel
            self._discard()
            return
        try:
            rset_code, _ = self._session.command("RSET")
        except (SmtpProtocolError, OSError):
            rset_code = None
        if rset_code != 250:
            self._discard()
