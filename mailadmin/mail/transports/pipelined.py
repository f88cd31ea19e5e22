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
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Hashable
from dataclasses import KW_ONLY, dataclass, field
from urllib.parse import unquote, urlsplit

from mailadmin.mail.transports.base import Finished, SendError, SendOutcome
from mailadmin.mail.transports.classify import (
    RepliesOutOfStep,
    ServerHungUp,
    SmtpProtocolError,
    Stage,
    failure_error,
    mask_addresses,
    refusal_error,
    reply_text,
)
from mailadmin.mail.transports.session import Session, SessionOptions, dot_stuffed, local_hostname, with_crlf

SECURITY_BY_SCHEME = {"smtp": "plain", "smtp+starttls": "starttls", "smtps": "tls"}
DEFAULT_PORTS = {"plain": 25, "starttls": 587, "tls": 465}
# A transaction's stages and the replies that let it go on: with DATA, and with BDAT ... LAST,
# whose reply is the message's final one.
_DATA_STAGES = ((Stage.MAIL, (250,)), (Stage.RCPT, (250, 251)), (Stage.DATA, (354,)))
_BDAT_STAGES = ((Stage.MAIL, (250,)), (Stage.RCPT, (250, 251)), (Stage.DATA_END, (250,)))
_Stages = tuple[tuple[Stage, tuple[int, ...]], ...]
_Reply = tuple[int, str]


def _in_step(code: int, wanted: tuple[int, ...]) -> bool:
    """A reply that can answer the command: the one that lets it go on, or a refusal (4xx, 5xx, and
    codes outside SMTP's range, classified as such). A positive reply meant for another command
    (a 354 to MAIL, a 250 to DATA) is out of step."""
    return code in wanted or not 100 <= code <= 399


def _first_refusal(stages: _Stages, replies: list[_Reply]) -> tuple[Stage, int, str] | None:
    for (stage, wanted), (code, reply) in zip(stages, replies, strict=False):
        if code not in wanted:
            return stage, code, reply
    return None


def _held_verdict(session: Session, held: _Message) -> Finished:
    """The verdict of the body that went out with this write (the first reply owed)."""
    code, reply = session.reply()
    if not _in_step(code, (250,)):
        raise RepliesOutOfStep()
    return held.sent(reply) if code == 250 else held.refused(code, reply, Stage.DATA_END)


@dataclass(slots=True, eq=False)
class _Message:
    """A message handed over: what to send, and what its verdict needs."""

    ticket: Hashable
    envelope_from: str
    envelope_to: str
    data: bytes
    started: float
    reconnected: bool = False
    body: bytes = b""  # with DATA accepted (354): the body and its end, waiting to go out

    def sent(self, reply: str) -> Finished:
        took_ms = (time.perf_counter() - self.started) * 1000
        return Finished(self.ticket, SendOutcome(250, mask_addresses(reply_text(reply), self.envelope_to), took_ms,
                                                 self.reconnected))

    def refused(self, code: int, reply: str, stage: Stage) -> Finished:
        return Finished(self.ticket, error=refusal_error(code, reply, stage, recipient=self.envelope_to))

    def failed(self, exc: SmtpProtocolError | OSError, stage: Stage, *, all_out: bool) -> Finished:
        """Failed at `stage`; `all_out`: the whole message had gone out, so it may have been delivered."""
        return Finished(self.ticket, error=failure_error(exc, stage, recipient=self.envelope_to,
                                                         outcome_unknown=all_out))


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
    round_trips: int = field(default=0, init=False)  # writes, each waiting for its replies
    transactions: int = field(default=0, init=False)  # messages handed over
    _session: Session | None = field(default=None, init=False)
    _held: _Message | None = field(default=None, init=False)  # its body waits to go out
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
        return self._held is not None

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
        """QUIT and close the connection, if one is open; never raises.

        Call `finish()` first: a message still awaiting is abandoned (the connection is closed in
        the middle of its DATA, so the server discards it) and its verdict is never reported."""
        self._broken = False
        held, self._held = self._held, None
        session, self._session = self._session, None
        if session is None:
            return
        if held is not None:  # "QUIT" would be read as a line of its body
            session.close()
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


    # --- messages ------------------------------------------------------------------------

    def send(self, from_addr: str, to_addr: str, data: bytes) -> SendOutcome:
        """Deliver one message to one recipient and wait for its verdict (`start` + `finish`);
        raises TransientSendError or PermanentSendError."""
        if self._held is not None:
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
        message = _Message(ticket, envelope_from, envelope_to, data, time.perf_counter())
        finished: list[Finished] = []
        while True:
            if self._drop_if_out_of_step(finished):
                message.reconnected = True  # found closed (or worse) before anything of it went out
            reused = self.connected
            try:
                self.connect()
            except SendError as exc:  # the session could not be opened: this message's failure
                finished.append(Finished(ticket, error=exc))
                return finished
            exchange = self._pipelined if self.pipelining else self._lock_step
            if not exchange(message, finished, may_retry=reused and not message.reconnected):
                return finished
            message.reconnected = True

    def finish(self) -> list[Finished]:
        """Send the waiting body, if any, alone and read its final reply: its verdict (or nothing)."""
        finished: list[Finished] = []
        if self._drop_if_out_of_step(finished) or self._held is None:
            return finished
        held, self._held = self._held, None
        session = self._session
        try:
            self._write(session, held.body)  # type: ignore[arg-type]
            code, reply = session.reply()  # type: ignore[union-attr]
            if not _in_step(code, (250,)) or (code != 421 and session.has_unread()):  # type: ignore[union-attr]
                raise RepliesOutOfStep()
        except (SmtpProtocolError, OSError) as exc:
            self._discard()
            return [held.failed(exc, Stage.DATA_END, all_out=True)]
        if code == 421:
            self._discard()
        return [held.sent(reply) if code == 250 else held.refused(code, reply, Stage.DATA_END)]

    def _drop_if_out_of_step(self, finished: list[Finished]) -> bool:
        """Before a write, every reply owed has been read: anything waiting is a reply out of step, or
        the server hanging up. Then drop the connection (True); a waiting body never went out, so its
        message failed transiently."""
        session = self._session
        if session is None or not session.has_unread():
            return False
        held, self._held = self._held, None
        failure = ServerHungUp("Connection unexpectedly closed") if session.hung_up else RepliesOutOfStep()
        self._discard()
        if held is not None:
            finished.append(held.failed(failure, Stage.DATA, all_out=False))
        return True

    def _write(self, session: Session, data: bytes) -> None:
        """A write that waits for replies: one round trip."""
        self.round_trips += 1
        session.write(data)

    def _commands(self, session: Session, message: _Message, chunking: bool) -> list[bytes]:
        """MAIL FROM, RCPT TO, and DATA or `BDAT <size> LAST` with the message: one item per reply."""
        size = f" SIZE={len(message.data)}" if session.takes_size else ""
        mail = f"MAIL FROM:<{message.envelope_from}>{size}\r\n".encode()
        rcpt = f"RCPT TO:<{message.envelope_to}>\r\n".encode()
        if not chunking:
            return [mail, rcpt, b"DATA\r\n"]
        payload = with_crlf(message.data)
        return [mail, rcpt, b"BDAT %d LAST\r\n" % len(payload) + payload]

    def _pipelined(self, message: _Message, finished: list[Finished], *, may_retry: bool) -> bool:
        """One write: the waiting body (if any) and `message`'s commands; then every reply owed.
        True when `message` should be tried again on a fresh connection (nothing of it went out)."""
        session = self._session
        assert session is not None
        held, self._held = self._held, None
        chunking = self.chunking
        stages = _BDAT_STAGES if chunking else _DATA_STAGES
        replies: list[_Reply] = []
        stage = Stage.MAIL  # the stage of `message` whose reply is awaited
        verdict_at = len(finished)  # where the held message's verdict goes
        try:
            commands = self._commands(session, message, chunking)
            self._write(session, b"".join([held.body, *commands] if held else commands))  # one copy, one write
            if held is not None:
                finished.append(_held_verdict(session, held))
            for step, wanted in stages:
                stage = step  # the stage a failure below belongs to
                try:
                    code, reply = session.reply()
                except (SmtpProtocolError, OSError):
                    if _first_refusal(stages, replies) is None:
                        raise
                    # An earlier command was refused and the server hung up (e.g. after a 421):
                    # the refusal is the answer; the connection is gone.
                    self._broken = True
                    break
                if not _in_step(code, wanted):
                    raise RepliesOutOfStep()
                replies.append((code, reply))
            closing = self._broken or any(code == 421 for code, _ in replies)
            if not closing and session.has_unread():  # more replies than commands
                raise RepliesOutOfStep()
        except (SmtpProtocolError, OSError) as exc:
            self._discard()
            if held is not None:
                # Its verdict never came, or cannot be trusted when the replies are out of step.
                finished[verdict_at:] = [held.failed(exc, Stage.DATA_END, all_out=True)]
            dropped = isinstance(exc, (ServerHungUp, ConnectionError))
            if dropped and may_retry and held is None and not chunking and stage is Stage.MAIL:
                # The server closed a reused connection before answering MAIL: the body never
                # went out, so trying once more on a fresh connection is safe.
                return True
            finished.append(message.failed(exc, stage, all_out=chunking))
            return False
        if held is not None and finished[verdict_at].error is not None and finished[verdict_at].error.smtp_code == 421:
            self._broken = True  # the server announced it is closing the channel
        self._conclude(message, stages, replies, finished)
        return False

    def _conclude(self, message: _Message, stages: _Stages, replies: list[_Reply], finished: list[Finished]) -> None:
        """`message`'s envelope replies read: it waits for its body to go out, is sent (BDAT), or refused."""
        refusal = _first_refusal(stages, replies)
        if refusal is None:
            if stages is _BDAT_STAGES:
                finished.append(message.sent(replies[-1][1]))
            elif self._broken:  # the previous message's 421: the server is closing
                self._discard()
                finished.append(message.failed(ServerHungUp("Connection closing"), Stage.DATA, all_out=False))
            else:
                message.body = dot_stuffed(message.data)
                self._held = message
            return
        stage, code, reply = refusal
        if stages is _DATA_STAGES and len(replies) == 3 and replies[-1][0] == 354:
            # A pipelined DATA was accepted although the envelope was not: end an empty message.
            try:
                self._write(self._session, b".\r\n")  # type: ignore[arg-type]
                self._session.reply()  # type: ignore[union-attr]
            except (SmtpProtocolError, OSError):
                self._broken = True
        finished.append(message.refused(code, reply, stage))
        self._reset_after_refusal(code, stage)

    def _lock_step(self, message: _Message, finished: list[Finished], *, may_retry: bool) -> bool:
        """Each command waits for its reply (no PIPELINING); BDAT and the message are one command.
        True when `message` should be tried again on a fresh connection (nothing of it went out)."""
        session = self._session
        assert session is not None
        chunking = self.chunking
        stages = _BDAT_STAGES if chunking else _DATA_STAGES
        replies: list[_Reply] = []
        stage = Stage.MAIL
        try:
            for (step, wanted), command in zip(stages, self._commands(session, message, chunking), strict=True):
                stage = step  # the stage a failure below belongs to
                self._write(session, command)
                code, reply = session.reply()
                if not _in_step(code, wanted):
                    raise RepliesOutOfStep()
                replies.append((code, reply))
                if code not in wanted:
                    break
            if not chunking and _first_refusal(stages, replies) is None:
                stage = Stage.DATA_END
                self._write(session, dot_stuffed(message.data))
                code, reply = session.reply()
                if not _in_step(code, (250,)):
                    raise RepliesOutOfStep()
                replies.append((code, reply))
        except (SmtpProtocolError, OSError) as exc:
            self._discard()
            if isinstance(exc, (ServerHungUp, ConnectionError)) and may_retry and stage is Stage.MAIL:
                return True  # a reused connection closed before MAIL was answered: nothing went out
            finished.append(message.failed(exc, stage, all_out=stage is Stage.DATA_END))
            return False
        stages = (*_DATA_STAGES, (Stage.DATA_END, (250,))) if not chunking else stages
        refusal = _first_refusal(stages, replies)
        if refusal is None:
            finished.append(message.sent(replies[-1][1]))
            return False
        stage, code, reply = refusal
        finished.append(message.refused(code, reply, stage))
        self._reset_after_refusal(code, stage)
        return False

    def _reset_after_refusal(self, code: int, stage: Stage) -> None:
        """RSET after a refused envelope so the connection stays usable; drop it after a 421 or when
        that fails. (A refused end of data needs none: the transaction is over.)"""
        if self._session is None:
            return
        if code == 421 or self._broken:  # the server announced it is closing the channel
            self._discard()
            return
        if stage is Stage.DATA_END:
            return
        try:
            self._write(self._session, b"RSET\r\n")
            rset_code, _ = self._session.reply()
        except (SmtpProtocolError, OSError):
            rset_code = None
        if rset_code != 250:
            self._discard()
