"""The limits each running process works with, published in Redis with its heartbeat.

A process reads its settings once, when it starts; the engineer on call runs `flask doctor` from a
shell that may hold none of them, and a restart may not have reached every process. So each web,
worker and scheduler process publishes the limits it runs with (`settings.published_values`: the
`Settings` fields marked `published(...)`) as one JSON string:

    mailadmin:settings-in-effect:<kind>:<name>      kind: web | worker | scheduler

* worker — `<name>` is its RQ worker name; written when it registers and with every RQ heartbeat,
  expiring with its RQ registration (worker TTL + 60 s); the diagnosis counts only live workers;
* scheduler — rq-scheduler's instance name; written with its heartbeat (at most every few seconds);
* web — `<host>:<pid>`; written with the requests it serves, at most every 15 s, expiring 5 minutes
  after the last (a load balancer's `/healthz` keeps it fresh).

A process withdraws its key when it stops cleanly. Publishing never stops a process: with Redis down
the web process skips it and the workers and the scheduler publish again with their next heartbeat.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis import Redis

from mailadmin.settings import Settings, published_values

SETTINGS_IN_EFFECT_KEY_PREFIX = "mailadmin:settings-in-effect:"
WEB = "web"
WORKER = "worker"
SCHEDULER = "scheduler"
PROCESS_KINDS = (WEB, WORKER, SCHEDULER)
# How long a web process's publication outlives the last request it served.
WEB_PUBLICATION_TTL_SECONDS = 300
# A web process publishes again with a request at most this often.
WEB_PUBLICATION_INTERVAL_SECONDS = 15


@dataclass(frozen=True)
class Publication:
    """What one running process said it runs with."""

    kind: str
    name: str
    hostname: str
    pid: int
    published_at: datetime
    values: dict[str, Any]


def settings_key(kind: str, name: str) -> str:
    """The Redis key of one process's publication."""
    return f"{SETTINGS_IN_EFFECT_KEY_PREFIX}{kind}:{name}"


def this_process_name() -> str:
    """`<host>:<pid>`: how a web process is named (workers and the scheduler have names of their own)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def publication_payload(settings: Settings) -> str:
    """The JSON this process publishes: its host, PID, the time, and its published limits."""
    return json.dumps({
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "published_at": datetime.now(UTC).isoformat(),
        "values": published_values(settings),
    })


def publish_settings(connection: Any, kind: str, name: str, settings: Settings, ttl_seconds: int) -> None:
    """Write (or refresh) this process's publication; `connection` may be a pipeline (executed by the caller)."""
    connection.set(settings_key(kind, name), publication_payload(settings), ex=max(1, int(ttl_seconds)))


def withdraw_settings(connection: Any, kind: str, name: str) -> None:
    """Remove this process's publication (it stops cleanly)."""
    connection.delete(settings_key(kind, name))


def read_publications(connection: Redis) -> list[Publication]:
    """Every publication present in Redis (not yet expired), by kind then name; unreadable ones are skipped."""
    found = []
    for raw_key in connection.scan_iter(match=SETTINGS_IN_EFFECT_KEY_PREFIX + "*", count=100):
        key = raw_key.decode() if isinstance(raw_key, bytes) else str(raw_key)
        kind, _, name = key.removeprefix(SETTINGS_IN_EFFECT_KEY_PREFIX).partition(":")
        raw = connection.get(key)
        if raw is None or kind not in PROCESS_KINDS:
            continue
        try:
            data = json.loads(raw)
            found.append(Publication(kind=kind, name=name, hostname=str(data["hostname"]), pid=int(data["pid"]),
                                     published_at=datetime.fromisoformat(data["published_at"]),
                                     values=dict(data["values"])))
        except (ValueError, KeyError, TypeError):
            continue  # written by another version: nothing we can compare
    return sorted(found, key=lambda p: (PROCESS_KINDS.index(p.kind), p.name))
