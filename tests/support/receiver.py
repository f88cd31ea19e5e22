"""A real HTTP receiver of events out, as another system would run it: it verifies every signature with
the `standardwebhooks` library, deduplicates by `webhook-id`, and can answer 500 or be down for a while."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook, WebhookVerificationError


@dataclass
class EventReceiver:
    """Serves on 127.0.0.1:`port` (0: any); `secret` verifies; `answer` is the status it replies."""

    secret: str = ""
    port: int = 0
    answer: int = 204
    delay: float = 0.0  # seconds before each answer: a slow receiver
    received: list[dict] = field(default_factory=list)  # every request, verified or not
    events: dict[str, dict] = field(default_factory=dict)  # verified, by webhook-id (deduplicated)
    bad_signatures: int = 0
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/mailadmin"

    def start(self) -> EventReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if receiver.delay:
                    time.sleep(receiver.delay)  # the receiver's own slowness, not a wait for a condition
                receiver.take(body, {k.lower(): v for k, v in self.headers.items()})
                self.send_response(receiver.answer)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 128  # the listen backlog: up to 20 attempts arrive at once

        self._server = Server(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Down: the port refuses connections until `start()` again (the same port)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def take(self, body: bytes, headers: dict[str, str]) -> None:
        with self._lock:
            self.received.append({"headers": headers, "body": body})
            try:
                payload = Webhook(self.secret).verify(body, headers)
            except (WebhookVerificationError, EmptyWebhookSecretError):
                self.bad_signatures += 1
                return
            assert payload["id"] == headers["webhook-id"]
            if self.answer < 300:
                self.events.setdefault(headers["webhook-id"], payload)

    def of_type(self, event_type: str) -> list[dict]:
        """Accepted (2xx) events of one type, in the order first received."""
        return [event for event in self.events.values() if event["type"] == event_type]

    def types(self) -> list[str]:
        return [event["type"] for event in self.events.values()]


def body_of(request: dict) -> dict:
    return json.loads(request["body"])
