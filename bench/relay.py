"""A delaying TCP proxy: a relay tens of milliseconds away, on one machine (these kernels have no netem).

    python -m bench.relay --upstream 127.0.0.1:2525 --delay-ms 10 [--port 0]

Every chunk read from either side is written to the other `delay` later, in order, without
limiting throughput: a pipelined write still costs one round trip, as on a real network. Prints
`listening <port>` once ready; runs until SIGTERM. Runs in its own process so that its CPU never
competes with the worker it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import sys
import time


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Forward everything `reader` yields to `writer`, each chunk `delay` seconds after it arrived."""
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        loop = asyncio.get_running_loop()
        while True:
            due, data = await queue.get()
            if not data:
                break
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        with contextlib.suppress(OSError):
            writer.write_eof()

    delivery = asyncio.create_task(deliver())
    loop = asyncio.get_running_loop()
    try:
        while data := await reader.read(65536):
            queue.put_nowait((loop.time() + delay, data))
    except OSError:
        pass
    finally:
        queue.put_nowait((loop.time() + delay, b""))
        with contextlib.suppress(OSError):
            await delivery


def _no_delay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def serve(upstream: tuple[str, int], delay: float, port: int, ready) -> None:
    """Accept connections on 127.0.0.1:`port` and relay each to `upstream` with `delay` each way."""

    async def relay(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(*upstream)
        except OSError:
            client_writer.close()
            return
        _no_delay(client_writer)
        _no_delay(server_writer)
        await asyncio.gather(
            _pump(client_reader, server_writer, delay), _pump(server_reader, client_writer, delay)
        )
        for writer in (client_writer, server_writer):
            writer.close()

    server = await asyncio.start_server(relay, "127.0.0.1", port)
    ready(server.sockets[0].getsockname()[1])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
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
