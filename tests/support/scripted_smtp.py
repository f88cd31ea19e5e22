"""A one-connection SMTP server run by a test's script in a thread, for the conversations the capture
server cannot hold: refusals while the session opens (greeting, EHLO, STARTTLS), replies that are
not SMTP, and checks on the exact bytes the client writes.

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

ReadUntil = Callable[[bytes], bytes]
Script = Callable[[socket.socket, ReadUntil], None]


class ScriptedServer:
    """Greets with `greeting`, answers EHLO (advertising PIPELINING when asked) unless `hello` is
    False, then hands the connection to `script(conn, read_until)`."""

    def __init__(
        self, script: Script, *, pipelining: bool = True, greeting: bytes = b"220 scripted ESMTP", hello: bool = True
    ) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.script = script
        self.pipelining = pipelining
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
