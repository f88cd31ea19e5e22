"""The hand-over record: which of a send job's claims it handed to its SMTP connections.

After a crash, only a message handed to a connection may have gone out; a claim the job held but
never handed over was never written to the relay and may go back to `pending`. The send loop hands
claims to its connections only after reserving their rate-limit tokens, so the reservation's Redis
call (`send_pace.reserve_send_tokens`, one per hand-out of a few messages per connection, never one
per message) also appends the ids granted a token to the job's record: `mailadmin:handover:<job_id>`,
a string `"id,id,...,"`, and `mailadmin:handover:<job_id>:at`, the Redis clock (s) at its last
write. The same call appends the messages the relay accepted since the slice's previous hand-out
(`mailadmin:handover:<job_id>:sent`, one line each: id, SMTP code, when, Message-ID), which
the database learns only when the slice records its batch. The recovery sweep (`jobs/recovery.py`)
reads it before turning a dead job's claims into `unknown`: accepted messages are recorded `sent`,
claims never handed over go back to `pending`, and only the rest — handed to a connection, its
verdict not reported — become `unknown`.

When the record cannot be trusted the sweep falls back to the old bound (every claim `unknown`):
- it is missing (Redis lost it, it expired, or the job died before its first hand-out);
- it was last written before the Redis server started (restored from disk: later hand-outs may be
  missing);
- a hand-out happened while Redis was unreachable (the reservation failed open): the slice then
  marks those claims as handed over in the database instead (`delivery.note_handed_over_without_record`),
  and the sweep treats them as handed over whatever the record says.

The slice deletes its record when it ends having recorded everything; a crashed job's record
expires after HANDOVER_RECORD_TTL_SECONDS (its claims then fall back to `unknown`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from redis import Redis

from mailadmin.limits.window import KEY_PREFIX

HANDOVER_KEY_PREFIX = KEY_PREFIX + "handover:"
# Long enough for the recovery sweep to run after a crash (at the next worker or scheduler start, or
# once the claims are MAILER_STALE_CLAIM_SECONDS old); a record older than this is not needed.
HANDOVER_RECORD_TTL_SECONDS = 6 * 3600


def handover_keys(job_id: str) -> list[str]:
    """The record's keys: the ids handed over, when they were last written, the messages accepted."""
    key = HANDOVER_KEY_PREFIX + job_id
    return [key, key + ":at", key + ":sent"]


@dataclass(frozen=True, slots=True)
class Accepted:
    """A message the relay accepted (250 after its data), as the hand-over record keeps it."""

    recipient_id: int
    smtp_code: int | None
    message_id: str | None
    sent_at: float  # Unix seconds

    def line(self) -> str:
        """`id code when message-id`: a Message-ID this app makes holds no space (`mail/message.py`)."""
        return f"{self.recipient_id} {self.smtp_code or 0} {self.sent_at:.6f} {self.message_id or ''}\n"

    @classmethod
    def parse(cls, line: str) -> Accepted:
        recipient_id, code, sent_at, message_id = line.split(" ", 3)
        return cls(int(recipient_id), int(code) or None, message_id or None, float(sent_at))


@dataclass(frozen=True, slots=True)
class HandOver:
    """The recipients a reservation is for, in hand-out order (the first `granted` are handed over)."""

    job_id: str
    recipient_ids: list[int]
    accepted: list[Accepted] = field(default_factory=list)  # since the last reservation
    ttl_ms: int = HANDOVER_RECORD_TTL_SECONDS * 1000

    @property
    def sent(self) -> str:
        return "".join(accepted.line() for accepted in self.accepted)

    @property
    def keys(self) -> list[str]:
        return handover_keys(self.job_id)


@dataclass(frozen=True, slots=True)
class HandOverRecord:
    """What a job's record says: the ids it handed over (None: not to be trusted) and the messages accepted."""

    handed_over: set[int] | None
    accepted: list[Accepted]


def read_handover_record(redis: Redis, job_id: str) -> HandOverRecord:
    """The job's record. `handed_over` is None when the record is missing or was written before the
    Redis server started (then it may lack later hand-outs); what it says was accepted is true either
    way. Raises RedisError when Redis is unreachable."""
    ids_key, at_key, sent_key = handover_keys(job_id)
    pipe = redis.pipeline(transaction=False)
    pipe.get(ids_key)
    pipe.get(at_key)
    pipe.get(sent_key)
    pipe.time()
    pipe.info("server")
    ids, written_at, sent, (now, _), server = pipe.execute()
    accepted = [Accepted.parse(line) for line in (sent or b"").decode().splitlines() if line.strip()]
    started_at = now - int(server.get("uptime_in_seconds", 0))
    if ids is None or written_at is None or int(written_at) <= started_at:
        return HandOverRecord(None, accepted)
    return HandOverRecord({int(part) for part in ids.split(b",") if part}, accepted)


def forget_handover_record(redis: Redis, job_id: str) -> None:
    """The slice recorded every outcome: its record is not needed any more (a RedisError propagates)."""
    redis.delete(*handover_keys(job_id))
