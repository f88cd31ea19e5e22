"""Counters every process adds to and the web process exposes at `/metrics`, kept in Redis.

Workers expose no port, and there may be many web processes, so what a process counts (a message
sent, a deferral, a webhook received) is not kept in its memory for a scrape: it is added to the
process's `Tally` and written to Redis as hash increments (one hash per metric family,
`mailadmin:metrics:<family>`; HINCRBY / HINCRBYFLOAT, atomic across processes). The send path
writes its increments inside the Redis call it already makes per batch (`limits/send_pace.py`'s
settle script carries them: no extra round trip per message); whatever is left is flushed once at
the end of each RQ job and of each web request that counted something. A Redis restart empties the
hashes: the counters start again from 0, which Prometheus' rate() and increase() treat as a reset.

- `families.py`: every metric family the workers count — name, help, labels, their known values;
- `tally.py`: the process's tally, the Lua fragment that applies it inside another script, `flush`
  and the `count_*` helpers. The scrape reads the hashes back (`mailadmin/metrics/gauges.py`).
"""

from mailadmin.counters.families import (
    BOUNCES,
    BREAKER_TRIPS,
    COMPLAINTS,
    DEFERRALS,
    EVENT_DELIVERIES,
    FAILED,
    FAMILIES,
    PAUSES,
    SENT,
    SMTP_SEND_DURATION,
    WEBHOOKS,
    Family,
)
from mailadmin.counters.tally import (
    TALLY,
    Tally,
    count,
    count_event_delivery,
    counting_enabled,
    flush,
    observe,
)

__all__ = [
    "BOUNCES", "BREAKER_TRIPS", "COMPLAINTS", "DEFERRALS", "EVENT_DELIVERIES", "FAILED", "FAMILIES", "PAUSES", "SENT",
    "SMTP_SEND_DURATION", "TALLY", "WEBHOOKS", "Family", "Tally", "count", "count_event_delivery",
    "counting_enabled", "flush", "observe",
]
