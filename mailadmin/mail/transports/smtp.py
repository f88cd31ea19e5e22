"""SMTP delivery over one reused connection, with every failure classified for the send loop.

The first (and so far only) `Transport` (see `mailadmin.mail.transports`).

`SMTP_URL` picks the security mode by scheme: `smtp://` (plain, port 25),
`smtp+starttls://` (STARTTLS, 587) and `smtps://` (implicit TLS, 465);
`user:password@` is URL-decoded and used for AUTH.

Classification (SPEC "Transient errors and the circuit breaker"):

* transient - connection refused/reset, timeouts, socket and TLS errors, the server
  closing the connection, any 4xx reply; also *any* failure while opening the
  session (greeting, EHLO, STARTTLS, AUTH), 5xx included: a wrong password or a
  blocked IP is not the recipient's fault, so it must trip the circuit breaker
  rather than fail every recipient permanently;
* permanent - a 5xx reply to MAIL, RCPT or DATA.

Error texts never contain an address: SMTP servers love to quote the recipient,
so every address-like token is replaced by "<recipient>" (SPEC "Logging").
"""

from __future__ import annotations

import re
import smtplib
import socket
import ssl
import time
from dataclasses import KW_ONLY, dataclass, field
from functools import lru_cache
from urllib.parse import unquote, urlsplit

from mailadmin.mail.transports.base import PermanentSendError, SendError, SendOutcome, TransientSendError

SECURITY_BY_SCHEME = {"smtp": "plain", "smtp+starttls": "starttls", "smtps": "tls"}
DEFAULT_PORTS = {"plain": 25, "starttls": 587, "tls": 465}
STAGE_LABELS = {
    "connect": "session setup",
    "mail": "MAIL FROM",
    "rcpt": "RCPT TO",
    "data": "DATA",
    "data-end": "end of DATA",
}
_ADDRESS_LIKE = re.compile(r"""<?[^\s<>@()\[\],;:"']+@[^\s<>@()\[\],;:"']+>?""")
_LINE_ENDS = re.compile(rb"\r\n|\n|\r")
_LEADING_DOT = re.compile(rb"(?m)^\.")


def mask_addresses(text: str, *addresses: str | None) -> str:
    """`text` with the given addresses and anything address-like replaced by "<recipient>"."""
    for address in addresses:
        # A plain case-insensitive search first: most replies do not quote the address at all.
        if address and address.lower() in text.lower():
            text = re.sub(re.escape(address), "<recipient>", text, flags=re.IGNORECASE)
    return _ADDRESS_LIKE.sub("<recipient>", text)


def _reply_text(raw: bytes | str | None) -> str:
    if raw is None:
        return ""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    return " ".join(raw.split())


def _stage_of(exc: BaseException) -> str | None:
    if isinstance(
        exc, (smtplib.SMTPConnectError, smtplib.SMTPHeloError, smtplib.SMTPAuthenticationError, smtplib.SMTPNotSupportedError)
    ):
        return "connect"
    if isinstance(exc, smtplib.SMTPSenderRefused):
        return "mail"
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return "rcpt"
    if isinstance(exc, smtplib.SMTPDataError):
        return "data"
    return None


def classify_smtp_error(
    exc: BaseException, *, stage: str | None = None, recipient: str | None = None, outcome_unknown: bool = False
) -> SendError:
    """The TransientSendError or PermanentSendError for an smtplib/socket exception (addresses masked)."""
    stage = stage or _stage_of(exc)
    where = STAGE_LABELS.get(stage or "", "SMTP")
    code: int | None = None
    reply = ""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        refusals = list(exc.recipients.values())
        if refusals:
            code, raw = refusals[0]
            reply = _reply_text(raw)
    elif isinstance(exc, smtplib.SMTPResponseException):
        code, reply = exc.smtp_code, _reply_text(exc.smtp_error)
    if code is not None and not 100 <= code <= 599:
        code = None  # smtplib uses -1 for "could not read a reply"

    if code is not None:
        message = f"SMTP {code} at {where}: {reply}".rstrip(": ")
    elif isinstance(exc, smtplib.SMTPServerDisconnected):
        message = f"connection closed by the server at {where}"
        detail = _reply_text(str(exc))
        if "timed out" in detail:
            message = f"timed out waiting for the server at {where}"
    elif isinstance(exc, (TimeoutError, socket.timeout)):
        message = f"timed out at {where}"
    elif isinstance(exc, OSError):
        message = f"{type(exc).__name__} at {where}: {exc.strerror or exc}"
    else:
        message = f"{type(exc).__name__} at {where}: {exc}"
    message = mask_addresses(message, recipient)

    permanent = code is not None and 500 <= code <= 599 and stage in ("mail", "rcpt", "data", "data-end")
    error_type = PermanentSendError if permanent else TransientSendError
    return error_type(message, smtp_code=code, stage=stage, outcome_unknown=outcome_unknown)


@lru_cache(maxsize=1)
def _local_hostname() -> str:
    # getfqdn() may do a slow reverse DNS lookup; do it once per process, not per connection.
    return socket.getfqdn() or "localhost"


def _dot_stuffed(data: bytes) -> bytes:
    """DATA payload: CRLF line ends, leading dots doubled, terminated by CRLF.CRLF (RFC 5321 4.5.2)."""
    # Our builder already writes CRLF and rarely starts a line with a dot: counting (C speed) spares
    # two regex passes and two copies of every message when there is nothing to change.
    crlf = data.count(b"\r\n")
    if crlf != data.count(b"\n") or crlf != data.count(b"\r"):
        data = _LINE_ENDS.sub(b"\r\n", data)
    if data.startswith(b".") or b"\n." in data:
        data = _LEADING_DOT.sub(b"..", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


@dataclass(eq=False, repr=False)
class SmtpTransport:
    """One SMTP account: lazily connects, reuses the connection for many sends. Not thread-safe."""

    host: str
    port: int | None = None
    _: KW_ONLY
    security: str = "plain"
    username: str | None = None
    password: str | None = None
    timeout: float = 30
    ssl_context: ssl.SSLContext | None = None
    local_hostname: str | None = None
    connections_opened: int = field(default=0, init=False)
    # The open connection (smtplib's client here; the pipelining client's own).
    _session: object | None = field(default=None, init=False)
    _stage: str = field(default="mail", init=False)

    def __post_init__(self) -> None:
        if self.security not in DEFAULT_PORTS:
            raise ValueError(f"security must be one of {', '.join(DEFAULT_PORTS)}, got {self.security!r}")
        self.port = self.port or DEFAULT_PORTS[self.security]

    @classmethod
    def from_url(
        cls, url: str, timeout: float = 30, *, ssl_context: ssl.SSLContext | None = None, local_hostname: str | None = None
    ) -> SmtpTransport:
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
        )

    @property
    def provider(self) -> str:
        """The SMTP host name, for the "provider" log field."""
        return self.host

    @property
    def connected(self) -> bool:
        return self._session is not None

    def __repr__(self) -> str:  # never shows the password
        return f"<SmtpTransport {self.security} {self.host}:{self.port}>"

    def _tls_context(self) -> ssl.SSLContext:
        return self.ssl_context or ssl.create_default_context()

    def connect(self) -> None:
        """Open the session now (greeting, EHLO, STARTTLS, AUTH); raises TransientSendError."""
        if self._session is not None:
            return
        session = None
        error: SendError | None = None
        try:
            session = self._open_session()
            self._start_session(session)
        except (smtplib.SMTPException, OSError) as exc:
            error = classify_smtp_error(exc, stage="connect")
        if error is not None:
            # Raised outside the except block so no traceback chains to the server's text.
            if session is not None:
                session.close()
            raise error
        self._session = session
        self.connections_opened += 1

    def _open_session(self) -> smtplib.SMTP:
        """The connection, greeted (the pipelining client supplies its own)."""
        hostname = self.local_hostname or _local_hostname()
        if self.security == "tls":
            return smtplib.SMTP_SSL(
                self.host, self.port, local_hostname=hostname, timeout=self.timeout, context=self._tls_context()
            )
        return smtplib.SMTP(self.host, self.port, local_hostname=hostname, timeout=self.timeout)

    def _start_session(self, smtp: smtplib.SMTP) -> None:
        """EHLO (HELO if refused), STARTTLS and a second EHLO, AUTH."""
        smtp.ehlo_or_helo_if_needed()
        if self.security == "starttls":
            smtp.starttls(context=self._tls_context())
            smtp.ehlo()
        if self.username:
            smtp.login(self.username, self.password or "")

    def _discard(self) -> None:
        if self._session is not None:
            try:
                self._session.close()
            finally:
                self._session = None

    def _reset_after_refusal(self, code: int | None) -> None:
        """RSET after a refused transaction so the connection stays usable; drop it if that fails."""
        if self._session is None:
            return
        if code == 421:  # the server announced it is closing the channel
            self._discard()
            return
        try:
            rset_code, _ = self._session.rset()
        except (smtplib.SMTPException, OSError):
            rset_code = None
        if rset_code != 250:
            self._discard()

    def _transaction(self, smtp: smtplib.SMTP, from_addr: str, to_addr: str, data: bytes) -> tuple[int, str]:
        """MAIL, RCPT, DATA; returns the first non-positive reply or the final one.

        `self._stage` always names the step in progress, also when an exception escapes.
        """
        self._stage = "mail"
        options = [f"SIZE={len(data)}"] if smtp.does_esmtp and smtp.has_extn("size") else []
        code, reply = smtp.mail(from_addr, options)
        if code != 250:
            return code, _reply_text(reply)
        self._stage = "rcpt"
        code, reply = smtp.rcpt(to_addr)
        if code not in (250, 251):
            return code, _reply_text(reply)
        self._stage = "data"
        code, reply = smtp.docmd("DATA")
        if code != 354:
            return code, _reply_text(reply)
        self._stage = "data-end"
        smtp.send(_dot_stuffed(data))
        code, reply = smtp.getreply()
        return code, _reply_text(reply)

    def _connection(self):
        """The open connection `_transaction` talks over."""
        return self._session

    def _refusal(self, code: int, reply: str, stage: str) -> smtplib.SMTPResponseException:
        """The smtplib exception `classify_smtp_error` expects for a refusal at `stage`."""
        return smtplib.SMTPResponseException(code, reply)

    def send(self, from_addr: str, to_addr: str, data: bytes) -> SendOutcome:
        """Deliver one message to one recipient; raises TransientSendError or PermanentSendError."""
        if any(ch in address for address in (from_addr, to_addr) for ch in "\r\n"):
            raise ValueError("line break in an SMTP envelope address")
        started = time.perf_counter()
        reconnected = False
        while True:
            reused = self.connected
            self.connect()
            error: SendError | None = None
            try:
                code, reply = self._transaction(self._connection(), from_addr, to_addr, data)
            except (smtplib.SMTPException, OSError) as exc:
                stage = self._stage
                self._discard()
                dropped = isinstance(exc, (smtplib.SMTPServerDisconnected, ConnectionError))
                if dropped and reused and not reconnected and stage == "mail":
                    # The server closed an idle connection before answering MAIL: the body never
                    # went out, so trying once more on a fresh connection is safe.
                    reconnected = True
                    continue
                error = classify_smtp_error(
                    exc, stage=stage, recipient=to_addr, outcome_unknown=(stage == "data-end")
                )
            if error is not None:
                raise error
            if code == 250:
                return SendOutcome(
                    code, mask_addresses(reply, to_addr), (time.perf_counter() - started) * 1000, reconnected
                )
            stage = self._stage
            self._reset_after_refusal(code)
            raise classify_smtp_error(self._refusal(code, reply, stage), stage=stage, recipient=to_addr)

    def close(self) -> None:
        """QUIT and close the connection, if one is open; never raises."""
        smtp, self._session = self._session, None
        if smtp is None:
            return
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()

    def __enter__(self) -> SmtpTransport:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
