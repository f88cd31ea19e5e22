"""A real SMTP server that captures mail instead of delivering it, with fault injection.

Tests run it in-process (`with CaptureSMTP() as smtp: ... smtp.url`); `make run`
runs it as the development mail sink, offering PIPELINING and CHUNKING (RFC 3030 `BDAT`, so the
client's whole-transaction path runs in development too; in-process servers offer it with
`chunking=True`):

    python -m mailadmin.devtools.smtp_capture --port 8025 --outbox instance/outbox

which writes every accepted message to the outbox as a `.eml` file. Faults
(4xx/5xx replies at MAIL, RCPT or DATA, per-address rules, slow replies, a
connection dropped mid-transaction) let tests drive the transport and the send
loop through every failure path over a genuine SMTP conversation.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import signal
import ssl
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesHeaderParser, BytesParser
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, LoginPassword, Session

from mailadmin.devtools.redis_server import free_port
from mailadmin.devtools.smtp_faults import FaultInjection

SERVER_NAME = "mailadmin-capture"


@dataclass(frozen=True)
class CapturedMessage:
    """One accepted message: envelope, raw bytes, and its Message-ID and decoded Subject."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    message_id: str | None
    subject: str | None
    queue_id: str = ""
    received_at: float = field(default_factory=time.time)

    def parsed(self) -> EmailMessage:
        """The full message parsed with the modern email policy."""
        return BytesParser(policy=policy.default).parsebytes(self.data)  # type: ignore[return-value]


class _CaptureProtocol(SMTP):
    """aiosmtpd's SMTP session, reporting each TCP connection to its CaptureSMTP."""

    def __init__(self, capture: CaptureSMTP, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._capture = capture
        self._chunks: list[bytes] = []  # BDAT chunks of the message in progress
        self._chunks_of: Envelope | None = None  # ... which belong to this envelope (reset by RSET / a new MAIL)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        new_connection = self.transport is None  # a second call means STARTTLS, same connection
        super().connection_made(transport)
        if new_connection:
            self._capture._connection_opened(self)

    def connection_lost(self, error: Exception | None) -> None:
        self._capture._connection_closed(self)
        super().connection_lost(error)

    async def smtp_BDAT(self, arg: str) -> None:
        """RFC 3030 CHUNKING (when offered): `BDAT <size> [LAST]`. The chunk is read whatever the reply;
        a message's chunks are joined and, at LAST, accepted like a DATA body (the same `handle_DATA`:
        its delay, drop and faults); RSET or a new MAIL drops chunks received so far."""
        size, last = _bdat_arguments(arg) if self._capture.chunking else (None, False)
        if size is None:
            await self.push("501 5.5.4 Syntax: BDAT <size> [LAST]" if self._capture.chunking else
                            "500 Error: command \"BDAT\" not recognized")
            return
        try:
            chunk = await self._reader.readexactly(size)
        except asyncio.IncompleteReadError:
            self._writer.close()  # hung up inside the chunk: the message is discarded
            return
        envelope = self.envelope
        if await self.check_helo_needed() or await self.check_auth_needed("BDAT"):
            return
        if not envelope.rcpt_tos:
            await self.push("503 5.5.1 Error: need RCPT command")
            return
        chunks = self._chunks if self._chunks_of is envelope else []
        self._chunks, self._chunks_of = chunks, envelope
        chunks.append(chunk)
        if not last:
            await self.push(f"250 2.0.0 {size} octets received")
            return
        envelope.content = envelope.original_content = b"".join(chunks)
        self._chunks, self._chunks_of = [], None
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push("250 OK" if status is MISSING else status)


def _bdat_arguments(arg: str | None) -> tuple[int | None, bool]:
    """(size, last) of `BDAT <size> [LAST]`; size None when malformed."""
    parts = (arg or "").split()
    if not 1 <= len(parts) <= 2 or not parts[0].isdigit() or (len(parts) == 2 and parts[1].upper() != "LAST"):
        return None, False
    return int(parts[0]), len(parts) == 2


class _CaptureController(Controller):
    def __init__(self, capture: CaptureSMTP, *args: Any, **kwargs: Any) -> None:
        self._capture = capture
        super().__init__(*args, **kwargs)

    def factory(self) -> SMTP:
        return _CaptureProtocol(self._capture, self.handler, **self.SMTP_kwargs)


class _Handler:
    """aiosmtpd hooks: each checks the injected faults, else falls through to the default reply."""

    def __init__(self, capture: CaptureSMTP) -> None:
        self.capture = capture

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list) -> list:
        session.host_name = hostname  # what aiosmtpd does itself when no EHLO hook is set
        if self.capture.pipelining:
            responses.insert(1, "250-PIPELINING")
        if self.capture.chunking:
            responses.insert(1, "250-CHUNKING")
        return responses

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list) -> Any:
        capture = self.capture
        capture._note_mail()
        await capture._maybe_drop(server, "mail")
        if capture.credentials and not session.authenticated:
            return "530 5.7.0 Authentication required"
        fault = capture._take_fault("mail", address)
        return fault.reply if fault else MISSING

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list) -> Any:
        await self.capture._maybe_drop(server, "rcpt")
        fault = self.capture._take_fault("rcpt", address)
        return fault.reply if fault else MISSING

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        capture = self.capture
        delay = capture._delay_seconds
        if delay > 0:
            await asyncio.sleep(delay)
        await capture._maybe_drop(server, "data")
        for address in envelope.rcpt_tos:
            fault = capture._take_fault("data", address)
            if fault:
                return fault.reply
        queue_id = secrets.token_hex(5).upper()
        capture._record(envelope, queue_id)
        return f"250 2.0.0 Ok: queued as {queue_id}"


class CaptureSMTP(FaultInjection):
    """An aiosmtpd server on 127.0.0.1 (free port by default) that keeps what it receives; its faults
    are set through `FaultInjection` (smtp_faults.py)."""

    def __init__(
        self,
        port: int | None = None,
        outbox_dir: str | Path | None = None,
        *,
        host: str = "127.0.0.1",
        keep_messages: bool = True,
        tls_context: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
        require_starttls: bool = False,
        credentials: tuple[str, str] | None = None,
        pipelining: bool = True,
        chunking: bool = False,
    ) -> None:
        if implicit_tls and tls_context is None:
            raise ValueError("implicit_tls needs a tls_context")
        self.host = host
        self.port = port or free_port()
        self.outbox_dir = Path(outbox_dir) if outbox_dir else None
        self.keep_messages = keep_messages
        self.tls_context = tls_context
        self.implicit_tls = implicit_tls
        self.require_starttls = require_starttls
        self.credentials = credentials
        # Advertise PIPELINING in the EHLO reply (aiosmtpd reads pipelined commands in order
        # either way); a test sets it False to play a relay that does not offer it.
        self.pipelining = pipelining
        # Advertise CHUNKING and take `BDAT` (RFC 3030); the development sink (`make run`) does.
        self.chunking = chunking
        self._mail_times: list[float] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._messages: list[CapturedMessage] = []
        self._faults = []
        self._drop_stage: str | None = None
        self._delay_seconds = 0.0
        self._connection_count = 0
        self._open: set[_CaptureProtocol] = set()
        self._controller: _CaptureController | None = None

    # --- lifecycle -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """SMTP_URL for this server, e.g. "smtp://127.0.0.1:8025"."""
        scheme = "smtps" if self.implicit_tls else "smtp+starttls" if self.tls_context else "smtp"
        userinfo = ""
        if self.credentials:
            userinfo = f"{quote(self.credentials[0], safe='')}:{quote(self.credentials[1], safe='')}@"
        return f"{scheme}://{userinfo}{self.host}:{self.port}"

    def start(self) -> CaptureSMTP:
        """Start listening (returns when the server answers)."""
        if self._controller is not None:
            return self
        if self.outbox_dir:
            self.outbox_dir.mkdir(parents=True, exist_ok=True)
        smtp_options: dict[str, Any] = {"server_hostname": SERVER_NAME, "ready_timeout": 10.0}
        if self.implicit_tls:
            smtp_options["ssl_context"] = self.tls_context
        elif self.tls_context is not None:
            smtp_options["tls_context"] = self.tls_context
            smtp_options["require_starttls"] = self.require_starttls
        if self.credentials:
            smtp_options["authenticator"] = self._authenticate
            # AUTH over plain text only because this is a local test server; MAIL enforces login.
            smtp_options["auth_require_tls"] = self.tls_context is not None
        controller = _CaptureController(self, _Handler(self), hostname=self.host, port=self.port, **smtp_options)
        controller.start()
        self._controller = controller
        with self._lock:
            self._connection_count = 0  # forget the controller's own readiness probe
        return self

    def stop(self) -> None:
        """Close client connections and stop the server."""
        controller, self._controller = self._controller, None
        if controller is None:
            return
        self._run_in_loop(controller, self._close_open_connections)
        controller.stop()

    def __enter__(self) -> CaptureSMTP:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run_in_loop(self, controller: _CaptureController, function: Callable[[], None]) -> None:
        async def call() -> None:
            function()
            await asyncio.sleep(0)

        future = asyncio.run_coroutine_threadsafe(call(), controller.loop)
        future.result(timeout=10)

    def _close_open_connections(self) -> None:
        with self._lock:
            sessions = list(self._open)
        for session in sessions:
            if session.transport is not None:
                session.transport.close()

    def drop_open_connections(self) -> None:
        """Close every client connection now, as a server does on idle timeout."""
        if self._controller is not None:
            self._run_in_loop(self._controller, self._close_open_connections)

    # --- what was received ---------------------------------------------------------------

    def _snapshot(self, items: list) -> list:
        with self._lock:
            return list(items)

    @property
    def messages(self) -> list[CapturedMessage]:
        """A snapshot of the messages accepted so far."""
        return self._snapshot(self._messages)

    @property
    def connection_count(self) -> int:
        """TCP connections accepted since start (STARTTLS does not count twice)."""
        return self._connection_count  # one attribute read is atomic: no lock needed

    @property
    def open_connections(self) -> int:
        """TCP connections open now."""
        return len(self._open)  # as atomic as the read above

    @property
    def mail_times(self) -> list[float]:
        """`time.time()` at the server of every MAIL FROM received so far (each message's start)."""
        return self._snapshot(self._mail_times)

    @property
    def unanswered(self) -> int:
        """Messages begun (MAIL FROM) and not accepted: those in flight, plus any refused (one lock, one moment)."""
        with self._lock:
            return len(self._mail_times) - len(self._messages)

    def count_for(self, address: str) -> int:
        """How many accepted messages had `address` among their recipients (case-insensitive)."""
        wanted = address.lower()
        return sum(1 for message in self.messages if wanted in (rcpt.lower() for rcpt in message.rcpt_tos))

    def recipients(self) -> Counter:
        """Counter of lower-cased recipient addresses over all accepted messages."""
        return Counter(rcpt.lower() for message in self.messages for rcpt in message.rcpt_tos)

    def clear_messages(self) -> None:
        """Forget the messages received so far."""
        with self._lock:
            self._messages.clear()

    def reset(self) -> None:
        """Forget messages and the connection count, clear every fault: as good as a fresh server."""
        self.clear_faults()
        with self._lock:
            self._messages.clear()
            self._mail_times.clear()
            self._connection_count = 0

    def wait_for(
        self, condition: int | Callable[[list[CapturedMessage]], bool], timeout: float = 10.0
    ) -> bool:
        """Wait until `condition` (a message count, or a predicate on the messages) holds; False at the deadline."""
        predicate = (lambda messages: len(messages) >= condition) if isinstance(condition, int) else condition
        deadline = time.monotonic() + timeout
        while not predicate(self.messages):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            # Short waits so a predicate that also looks elsewhere (e.g. the DB) is re-checked.
            with self._changed:
                self._changed.wait(min(remaining, 0.05))
        return True

    # --- called from the server's event loop ---------------------------------------------

    def _note_mail(self) -> None:
        with self._lock:
            self._mail_times.append(time.time())

    def _connection_opened(self, session: _CaptureProtocol) -> None:
        with self._lock:
            self._connection_count += 1
            self._open.add(session)

    def _connection_closed(self, session: _CaptureProtocol) -> None:
        with self._lock:
            self._open.discard(session)

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and self.credentials is not None
            and (data.login.decode("utf-8", "replace"), data.password.decode("utf-8", "replace")) == self.credentials
        )
        return AuthResult(success=ok, handled=False)

    def _record(self, envelope: Envelope, queue_id: str) -> CapturedMessage:
        data = envelope.original_content or b""
        try:
            headers = BytesHeaderParser(policy=policy.default).parsebytes(data)
            message_id = headers.get("Message-ID")
            subject = headers.get("Subject")
        except Exception:  # a capture server must accept whatever a test throws at it
            message_id = subject = None
        message = CapturedMessage(
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            data=data,
            message_id=str(message_id) if message_id is not None else None,
            subject=str(subject) if subject is not None else None,
            queue_id=queue_id,
        )
        if self.outbox_dir:
            self._write_eml(message)
        with self._changed:
            if self.keep_messages:
                self._messages.append(message)
            self._changed.notify_all()
        return message

    def _write_eml(self, message: CapturedMessage) -> Path:
        assert self.outbox_dir is not None
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%f")
        path = self.outbox_dir / f"{stamp}-{message.queue_id}.eml"
        envelope = (
            f"X-Capture-Envelope-From: <{message.mail_from}>\r\n"
            f"X-Capture-Envelope-To: {', '.join(f'<{rcpt}>' for rcpt in message.rcpt_tos)}\r\n"
        ).encode("utf-8", "replace")
        partial = path.with_suffix(".part")
        partial.write_bytes(envelope + message.data)
        partial.replace(path)  # readers never see half a file
        return path


def main(argv: list[str] | None = None) -> int:
    """Run the capture server until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m mailadmin.devtools.smtp_capture", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument("--outbox", default="instance/outbox", help="directory for the .eml files")
    args = parser.parse_args(argv)

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    capture = CaptureSMTP(args.port, args.outbox, host=args.host, keep_messages=False, chunking=True)
    capture.start()
    print(f"smtp_capture: listening on {capture.url}, writing to {Path(args.outbox).resolve()}", flush=True)
    try:
        stop.wait()
    finally:
        capture.stop()
    print("smtp_capture: stopped", flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
