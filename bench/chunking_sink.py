"""An SMTP sink that offers PIPELINING and CHUNKING (RFC 3030): postfix's `smtp-sink` offers no BDAT.

    python -m bench.chunking_sink [--port 0]

Accepts every message (DATA or `BDAT <n> [LAST]`) and forgets it; prints `listening <port>` once
ready; runs until SIGTERM. Its own process, like `bench/relay.py`, so its CPU never competes with
the worker it measures.

Why asyncio protocols: one callback per chunk read, and the replies to everything that chunk held
written at once (as postfix does), so a pipelined group costs the sink one read and one write.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

_GREETING = b"220 bench-sink ESMTP\r\n"
_EHLO = b"250-bench-sink\r\n250-PIPELINING\r\n250-CHUNKING\r\n250-8BITMIME\r\n250 SIZE 100000000\r\n"
_END_OF_DATA = b"\r\n.\r\n"


class _SinkSession(asyncio.Protocol):
    """One connection: commands, DATA bodies and BDAT chunks, answered in order."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.in_data = False  # after a 354: reading a body up to its end of data
        self.chunk_left = 0  # BDAT octets still to skip
        self.chunk_last = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = transport
        transport.write(_GREETING)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        replies: list[bytes] = []
        while self._step(replies):
            pass
        if replies:
            self.transport.write(b"".join(replies))  # type: ignore[union-attr]

    def _step(self, replies: list[bytes]) -> bool:
        """Consume one unit of the buffer (a command, a body, a chunk); False when more input is needed."""
        buffer = self.buffer
        if self.chunk_left:
            taken = min(self.chunk_left, len(buffer))
            del buffer[:taken]
            self.chunk_left -= taken
            if self.chunk_left:
                return False
            replies.append(b"250 2.0.0 Ok: queued\r\n" if self.chunk_last else b"250 2.0.0 Ok: chunk\r\n")
            return True
        if self.in_data:
            end = buffer.find(_END_OF_DATA)
            if end < 0:
                # Keep what could be the start of the end-of-data marker.
                del buffer[: max(0, len(buffer) - len(_END_OF_DATA))]
                return False
            del buffer[: end + len(_END_OF_DATA)]
            self.in_data = False
            replies.append(b"250 2.0.0 Ok: queued\r\n")
            return True
        end = buffer.find(b"\n")
        if end < 0:
            return False
        line = bytes(buffer[: end + 1])
        del buffer[: end + 1]
        replies.append(self._command(line))
        return True

    def _command(self, line: bytes) -> bytes:
        verb = line[:4].upper()
        if verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
            return b"250 2.0.0 Ok\r\n"
        if verb == b"DATA":
            self.in_data = True
            # A body (CRLF-terminated last line) may start right away; its marker includes that CRLF.
            self.buffer[:0] = b"\r\n"
            return b"354 End data with <CR><LF>.<CR><LF>\r\n"
        if verb == b"BDAT":
            parts = line.split()
            self.chunk_left = int(parts[1])
            self.chunk_last = len(parts) > 2 and parts[2].upper() == b"LAST"
            if self.chunk_left == 0:
                return b"250 2.0.0 Ok: queued\r\n"
            return b""  # answered once the chunk is read
        if verb in (b"EHLO", b"HELO"):
            return _EHLO
        if verb == b"QUIT":
            self.transport.write(b"221 2.0.0 Bye\r\n")  # type: ignore[union-attr]
            self.transport.close()  # type: ignore[union-attr]
            return b""
        return b"502 5.5.2 Command not recognized\r\n"


async def serve(port: int, ready) -> None:
    """Accept SMTP connections on 127.0.0.1:`port` until SIGTERM."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_SinkSession, "127.0.0.1", port)
    ready(server.sockets[0].getsockname()[1])
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.port, lambda p: print(f"listening {p}", flush=True)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
