"""A small TCP proxy the fault tests put in front of PostgreSQL: `cut()` closes the listening
socket and every open connection (the database "vanishes" for the app), `restore()` listens again
on the same port. In front of an SMTP server it counts what the client wrote on the wire (`watch`):
the moment a command left the client, which the server may read much later."""

from __future__ import annotations

import socket
import threading

from mailadmin.devtools.redis_server import free_port

_CHUNK = 65536


class TcpProxy:
    """Forwards 127.0.0.1:`port` to `upstream_host`:`upstream_port`, one thread per direction."""

    def __init__(self, upstream_host: str, upstream_port: int, port: int | None = None, *, watch: bytes = b"") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = port or free_port()
        self.watch = watch
        self.seen = 0  # occurrences of `watch` in what clients sent (counted as it passes)
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self) -> TcpProxy:
        """Listen and forward (again, after a cut)."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    restore = start

    def cut(self) -> None:
        """Refuse new connections and break every open one."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            sockets, self._open = list(self._open), set()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    stop = cut

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by cut()
            try:
                server = socket.create_connection(self.upstream, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    server.close()
                    return
                self._open.update((client, server))
            for source, target in ((client, server), (server, client)):
                watched = self.watch if source is client else b""
                threading.Thread(target=self._pump, args=(source, target, watched), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, watched: bytes = b"") -> None:
        tail = b""  # the end of the previous chunk: a watched marker may be split between two
        try:
            while data := source.recv(_CHUNK):
                if watched:
                    window = tail + data
                    with self._lock:
                        self.seen += window.count(watched)
                    tail = window[-(len(watched) - 1):] if len(watched) > 1 else b""
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            with self._lock:
                self._open.discard(source)
                self._open.discard(target)
