"""The suite's one live server: a Flask app served over real HTTP from a thread of the test process."""

from __future__ import annotations

import threading

from flask import Flask


class LiveServer:
    """`app` behind werkzeug's threaded WSGI server on a free loopback port; use as a context manager."""

    def __init__(self, app: Flask) -> None:
        from werkzeug.serving import make_server

        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="live-server", daemon=True)

    def start(self) -> LiveServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=10)
        self._server.server_close()

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
