"""A delaying TCP proxy: a relay tens of milliseconds away, on one machine (these kernels have no netem).

    python -m bench.relay --upstream 127.0.0.1:2525 --delay-ms 10 [--port 0]

Every chunk read from either side is written to the other `delay` later, in order, without
limiting throughput: a pipelined write still costs one round trip, as on a real network. Prints
`listening <port>` once ready; runs until SIGTERM. Runs in its own process so that its CPU never
competes with the worker it measures (the bench reports that CPU separately).

Why asyncio protocols and timer callbacks rather than streams: a relay in front of two workers
forwards thousands of chunks a second, and a coroutine, a queue and a sleep per chunk cost more
CPU than the worker's own send path on a two-core machine. Here a chunk costs one timer.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import signal
import socket
import sys
import time


class _Direction:
    """One direction of a relayed connection: chunks wait `delay`, then go out in arrival order."""

    def __init__(self, loop: asyncio.AbstractEventLoop, delay: float) -> None:
        self.loop = loop
        self.delay = delay
        self.target: asyncio.Transport | None = None  # set once the other side is connected
        self.pending: collections.deque[bytes] = collections.deque()  # b"" = end of stream
        self.owed = 0  # chunks that came due before the other side was connected

    def push(self, data: bytes) -> None:
        self.pending.append(data)
        self.loop.call_later(self.delay, self.deliver)

    def deliver(self) -> None:
        """One timer per chunk, and each delivers the oldest chunk: the order holds even when two
        timers with the same deadline fire the other way round."""
        if self.target is None:
            self.owed += 1
            return
        data = self.pending.popleft()
        if self.target.is_closing():
            return
        if data:
            self.target.write(data)
        else:
            self.target.close()  # after what is buffered; SMTP never needs a half-closed connection

    def connected(self, transport: asyncio.Transport) -> None:
        self.target = transport
        for _ in range(self.owed):
            self.deliver()
        self.owed = 0


class _Side(asyncio.Protocol):
    """One socket of a relayed connection; what it reads goes out on the other socket, delayed."""

    def __init__(self, outgoing: _Direction, incoming: _Direction, on_connect=None) -> None:
        self.outgoing = outgoing  # what this side reads
        self.incoming = incoming  # what this side is written
        self.on_connect = on_connect
        self.transport: asyncio.Transport | None = None
        self.ended = False

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.incoming.connected(transport)
        if self.on_connect is not None:
            self.on_connect(self)

    def data_received(self, data: bytes) -> None:
        self.outgoing.push(data)

    def eof_received(self) -> None:
        self._end()  # returning None closes this socket

    def connection_lost(self, exc: Exception | None) -> None:
        self._end()

    def _end(self) -> None:
        if not self.ended:
            self.ended = True
            self.outgoing.push(b"")


async def serve(upstream: tuple[str, int], delay: float, port: int, ready) -> None:
    """Accept connections on 127.0.0.1:`port` and relay each to `upstream` with `delay` each way."""
    loop = asyncio.get_running_loop()

    def client_side() -> _Side:
        to_server, to_client = _Direction(loop, delay), _Direction(loop, delay)

        def connect_upstream(client: _Side) -> None:
            async def connect() -> None:
                try:
                    await loop.create_connection(lambda: _Side(to_client, to_server), *upstream)
                except OSError:
                    client.transport.close()

            loop.create_task(connect())

        return _Side(to_server, to_client, on_connect=connect_upstream)

    server = await loop.create_server(client_side, "127.0.0.1", port)
    ready(server.sockets[0].getsockname()[1])
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()


def measure_round_trip_ms(host: str, port: int, samples: int = 20) -> float:
    """Median time of an SMTP NOOP round trip to host:port, in milliseconds."""
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = sock.makefile("rb")
        reader.readline()  # greeting
        times = []
        for _ in range(samples):
            started = time.perf_counter()
            sock.sendall(b"NOOP\r\n")
            reader.readline()
            times.append((time.perf_counter() - started) * 1000)
        sock.sendall(b"QUIT\r\n")
        reader.readline()
    times.sort()
    return times[len(times) // 2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="host:port of the real server")
    parser.add_argument("--delay-ms", type=float, default=10.0, help="delay added in each direction")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    host, _, port = args.upstream.rpartition(":")
    asyncio.run(
        serve((host, int(port)), args.delay_ms / 1000, args.port, lambda p: print(f"listening {p}", flush=True))
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
