"""A one-connection SMTP server run by a test's script in a thread, for the conversations the capture
server cannot hold: refusals while the session opens (greeting, EHLO, STARTTLS), replies that are
not SMTP, and checks on the exact bytes the client writes. `ScriptedRelay` (below) is the other kind:
a small relay (PIPELINING, CHUNKING/BDAT) for many messages over many connections that misbehaves
on demand, command by command: a refusal, a hang-up, silence, a reply too many, too few, or late.

    def script(conn, read_until):
        read_until(b"DATA\\r\\n")
        conn.sendall(b"250 Ok\\r\\n250 Ok\\r\\n354 Go ahead\\r\\n")
        ...

    with ScriptedServer(script, pipelining=True) as server:
        ...  # a client connects to server.url
        server.join()  # re-raises what failed in the script
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

ReadUntil = Callable[[bytes], bytes]
Script = Callable[[socket.socket, ReadUntil], None]


class ScriptedServer:
    """Greets with `greeting`, answers EHLO (advertising PIPELINING when asked) unless `hello` is
    False, then hands the connection to `script(conn, read_until)`."""

    def __init__(
        self,
        script: Script,
        *,
        pipelining: bool = True,
        chunking: bool = False,
        greeting: bytes = b"220 scripted ESMTP",
        hello: bool = True,
    ) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.script = script
        self.pipelining = pipelining
        self.chunking = chunking
        self.greeting = greeting
        self.hello = hello
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def _run(self) -> None:
        try:
            conn, _ = self.listener.accept()
            with conn:
                conn.settimeout(5)
                buffer = bytearray()

                def read_until(marker: bytes) -> bytes:
                    """Everything received until `marker` has arrived (no reply is sent meanwhile)."""
                    while marker not in buffer:
                        chunk = conn.recv(65536)
                        if not chunk:
                            raise ConnectionError("client closed")
                        buffer.extend(chunk)
                    end = buffer.index(marker) + len(marker)
                    taken = bytes(buffer[:end])
                    del buffer[:end]
                    return taken

                conn.sendall(self.greeting + b"\r\n")
                if self.hello:
                    read_until(b"\r\n")  # EHLO
                    extensions = b"250-PIPELINING\r\n" if self.pipelining else b""
                    extensions += b"250-CHUNKING\r\n" if self.chunking else b""
                    conn.sendall(b"250-scripted\r\n" + extensions + b"250 SIZE 1000000\r\n")
                self.script(conn, read_until)
        except BaseException as exc:  # reported by join()
            self.error = exc

    def __enter__(self) -> ScriptedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.thread.join(10)
        self.listener.close()

    def join(self) -> None:
        """Wait for the script to end; re-raise what failed in it."""
        self.thread.join(10)
        if self.error is not None:
            raise self.error


def answer_quit(conn: socket.socket, read_until: ReadUntil) -> None:
    """The end of a conversation: the client's QUIT, our goodbye."""
    read_until(b"QUIT\r\n")
    conn.sendall(b"221 Bye\r\n")


def accept_body_and_quit(conn: socket.socket, read_until: ReadUntil) -> bytes:
    """Take the message after a 354, accept it, answer QUIT; returns the body as it arrived."""
    body = read_until(b"\r\n.\r\n")
    conn.sendall(b"250 2.0.0 Ok: queued as ABC\r\n")
    answer_quit(conn, read_until)
    return body


def until_closed(conn: socket.socket) -> None:
    """Read (and ignore) what the client still sends until it closes the connection."""
    while conn.recv(65536):
        pass


# --- a relay that misbehaves on demand ------------------------------------------------------------


@dataclass
class Misbehaviour:
    """What the relay does instead of its normal reply to one command (see `ScriptedRelay.on`)."""

    kind: str  # "reply" | "hang_up" | "silence" | "extra" | "swap" | "omit"
    reply: bytes = b""  # for "reply": the reply line(s) to send instead
    delivered: bool = True  # at the end of a message: it counts as delivered although its reply goes wrong


class ScriptedRelay:
    """A small SMTP relay in a thread, for the pipelining client's fault tests: it answers EHLO, MAIL,
    RCPT, DATA (and BDAT when `chunking`), RSET, NOOP and QUIT on any number of connections, one
    reply per command as soon as the command is read, and records every message it delivered.

    `on(command, key, kind, ...)` makes it misbehave once: `command` is "MAIL", "RCPT", "DATA",
    "BDAT" or "." (the end of DATA); `key` is the transaction's recipient, or "#n" for the n-th
    MAIL FROM it reads (1-based: MAIL comes before the recipient is known). Kinds: "reply" (send
    `reply` instead), "hang_up" (close without replying), "silence" (never reply on this connection
    again), "extra" (the reply twice), "swap" (this reply after the next one), "omit" (no reply,
    then carry on). At the end of a message, `delivered` says whether it counts as delivered.
    """

    def __init__(self, *, pipelining: bool = True, chunking: bool = False) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.pipelining = pipelining
        self.chunking = chunking
        self.delivered: list[tuple[str, bytes]] = []  # (recipient, message) in delivery order
        self.connections = 0
        self.commands: list[bytes] = []  # every command line read, in order (BDAT without its data)
        self._faults: dict[tuple[str, str], Misbehaviour] = {}
        self._mail_count = 0
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._threads: list[threading.Thread] = []
        self._open: set[socket.socket] = set()

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def on(self, command: str, key: str, kind: str, reply: bytes = b"", *, delivered: bool = True) -> None:
        """Misbehave once at `command` for `key` (see the class docstring)."""
        with self._lock:
            self._faults[(command, key)] = Misbehaviour(kind, reply, delivered)

    def count_for(self, recipient: str) -> int:
        with self._lock:
            return sum(1 for address, _ in self.delivered if address == recipient)

    def hang_up_all(self) -> None:
        """Close every open connection (as a relay's idle timeout would), without a word."""
        with self._lock:
            sockets = list(self._open)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self) -> ScriptedRelay:
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._closing.set()
        self.hang_up_all()
        for thread in self._threads:
            thread.join(5)
        self.listener.close()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._open.add(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, conn: socket.socket) -> None:
        try:
            with conn:
                conn.settimeout(10)
                _RelayConversation(self, conn).run()
        except OSError:
            pass  # the client went away
        finally:
            with self._lock:
                self._open.discard(conn)

    def _fault(self, command: str, key: str) -> Misbehaviour | None:
        with self._lock:
            return self._faults.pop((command, key), None)

    def _next_mail_key(self) -> str:
        with self._lock:
            self._mail_count += 1
            return f"#{self._mail_count}"

    def _deliver(self, recipients: list[str], data: bytes) -> None:
        with self._lock:
            self.delivered.extend((recipient, data) for recipient in recipients)


class _Hangup(Exception):
    """The relay ends this connection."""


class _RelayConversation:
    """One connection of a `ScriptedRelay`."""

    def __init__(self, relay: ScriptedRelay, conn: socket.socket) -> None:
        self.relay = relay
        self.conn = conn
        self.buffer = bytearray()
        self.recipients: list[str] = []
        self.swapped: bytes | None = None  # a reply held back until after the next one

    def run(self) -> None:
        self.conn.sendall(b"220 relay ESMTP\r\n")
        try:
            while line := self.read_until(b"\r\n"):
                if not self.command(line):
                    return
        except _Hangup:
            return

    def read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            chunk = self.conn.recv(65536)
            if not chunk:
                return b""
            self.buffer.extend(chunk)
        end = self.buffer.index(marker) + len(marker)
        taken = bytes(self.buffer[:end])
        del self.buffer[:end]
        return taken

    def read_exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            chunk = self.conn.recv(65536)
            if not chunk:
                raise _Hangup()
            self.buffer.extend(chunk)
        taken = bytes(self.buffer[:size])
        del self.buffer[:size]
        return taken

    def command(self, line: bytes) -> bool:
        """Answer one command line; False after QUIT."""
        self.relay.commands.append(line.rstrip(b"\r\n"))
        verb = line[:4].upper()
        if verb in (b"EHLO", b"HELO"):
            extensions = b"".join(
                b"250-" + name + b"\r\n"
                for name, offered in ((b"PIPELINING", self.relay.pipelining), (b"CHUNKING", self.relay.chunking))
                if offered
            )
            self.conn.sendall(b"250-relay\r\n" + extensions + b"250 SIZE 10000000\r\n")
        elif verb == b"MAIL":
            self.recipients = []
            self.answer("MAIL", self.relay._next_mail_key(), b"250 2.1.0 Ok")
        elif verb == b"RCPT":
            recipient = line.split(b"<", 1)[1].split(b">", 1)[0].decode()
            if self.answer("RCPT", recipient, b"250 2.1.5 Ok"):
                self.recipients.append(recipient)
        elif verb == b"DATA":
            self.data()
        elif verb == b"BDAT":
            self.bdat(int(line.split()[1]))
        elif verb == b"QUIT":
            self.conn.sendall(b"221 2.0.0 Bye\r\n")
            return False
        else:  # RSET, NOOP
            self.recipients = []
            self.conn.sendall(b"250 2.0.0 Ok\r\n")
        return True

    def data(self) -> None:
        key = self.recipients[0] if self.recipients else ""
        normal = b"354 End data with <CR><LF>.<CR><LF>" if self.recipients else b"554 5.5.1 No valid recipients"
        if not self.answer("DATA", key, normal) or not self.recipients:
            return
        body = self.read_until(b"\r\n.\r\n")
        if not body:  # the client went away in the middle of the message: nothing is delivered
            raise _Hangup()
        body = body[:-3].replace(b"\r\n..", b"\r\n.")  # the end of data off, dots unstuffed
        self.finish(".", key, body[1:] if body.startswith(b"..") else body)

    def bdat(self, size: int) -> None:
        data = self.read_exactly(size)
        if not self.recipients:
            self.answer("BDAT", "", b"554 5.5.1 No valid recipients")
            return
        self.finish("BDAT", self.recipients[0], data)

    def finish(self, command: str, key: str, body: bytes) -> None:
        """The end of a message: deliver it (unless refused on demand) and give the final reply."""
        fault = self.relay._fault(command, key)
        delivered = fault is None or (fault.delivered if fault.kind != "reply" else fault.reply.startswith(b"2"))
        if delivered:
            self.relay._deliver(self.recipients, body)
        self.recipients = []
        self.perform(fault, b"250 2.0.0 Ok: queued")

    def answer(self, command: str, key: str, normal: bytes) -> bool:
        """Reply to a command, or misbehave as asked; True when the command was accepted."""
        fault = self.relay._fault(command, key)
        self.perform(fault, normal)
        sent = fault.reply if fault is not None and fault.kind == "reply" else normal
        return sent[:1] in (b"2", b"3")

    def perform(self, fault: Misbehaviour | None, normal: bytes) -> None:
        kind = fault.kind if fault is not None else "normal"
        if kind == "hang_up":
            raise _Hangup()
        if kind == "silence":
            while self.conn.recv(65536):
                pass
            raise _Hangup()
        if kind == "swap":
            self.swapped = normal + b"\r\n"
            return
        if kind == "omit":
            return
        reply = (fault.reply if kind == "reply" else normal) + b"\r\n"  # type: ignore[union-attr]
        if kind == "extra":
            reply += reply
        if self.swapped is not None:
            reply, self.swapped = reply + self.swapped, None
        self.conn.sendall(reply)
