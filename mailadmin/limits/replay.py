"""Webhook deliveries in Redis: each applied once; its identical redelivery recognised; a reuse of
its id with other content refused.

A provider that did not get our 2xx (a timeout, a lost connection) delivers the same request again,
for hours (SNS, SendGrid, Mailgun). A redelivery has the same delivery id *and* the same content.
The caller says what "the same content" is with a fingerprint: over what the provider signed when
the signature covers the body (SNS: the string-to-sign; SendGrid: timestamp + body), over the whole
payload when it does not (Mailgun signs only timestamp + token; Postmark signs nothing). A key per
delivery id holds `pending <fingerprint> <since>` while it is applied, then `applied <fingerprint>`:

- never seen: FIRST — claimed, to be applied, then `mark_delivery_applied`;
- the same fingerprint, applied: ALREADY_APPLIED — answer 2xx, change nothing;
- the same fingerprint, still pending: IN_PROGRESS — another request is applying it right now;
  answer 503 so the provider retries (a claim pending longer than PENDING_TAKEOVER_SECONDS was left
  by a process that died: it is taken over, FIRST again — the bounce events' unique keys keep
  every report applied once);
- another fingerprint: CONFLICT — a captured id reused with another body, refused.

A key lives longer than the signature freshness window, so a captured request is refused either
by its fingerprint or as stale. Redis down: RedisError (the caller refuses; the provider retries).
"""

from __future__ import annotations

import enum
import hashlib
import time

from redis import Redis

from mailadmin.limits.window import registered_script

KEY_PREFIX = "mailadmin:webhook-delivery:"
# Longer than applying any one delivery takes (a few reports, one transaction each).
PENDING_TAKEOVER_SECONDS = 60


class DeliveryClaim(enum.Enum):
    """What a webhook delivery is, next to the ones received before with the same id."""

    FIRST = "first"
    ALREADY_APPLIED = "applied"
    IN_PROGRESS = "in_progress"
    CONFLICT = "conflict"


# KEYS[1] the delivery's key; ARGV[1] fingerprint (hex), ARGV[2] now (s), ARGV[3] TTL (s),
# ARGV[4] takeover (s). An unreadable value (e.g. the "1" older versions stored) is a conflict.
CLAIM_LUA = """
local value = redis.call('GET', KEYS[1])
if value then
  local state, fingerprint, since = string.match(value, '^(%a+) (%x+) ?(%d*)$')
  if fingerprint ~= ARGV[1] then return 'conflict' end
  if state == 'applied' then return 'applied' end
  if tonumber(since) and tonumber(ARGV[2]) - tonumber(since) < tonumber(ARGV[4]) then return 'in_progress' end
end
redis.call('SET', KEYS[1], 'pending ' .. ARGV[1] .. ' ' .. ARGV[2], 'EX', ARGV[3])
return 'first'
"""


def _key(provider: str, delivery_id: str) -> str:
    digest = hashlib.sha256(delivery_id.encode("utf-8")).hexdigest()
    return f"{KEY_PREFIX}{provider}:{digest}"


def delivery_fingerprint(*parts: bytes) -> str:
    """A delivery's content as one hex digest (each part length-prefixed, so parts cannot shift)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def claim_delivery(redis: Redis, provider: str, delivery_id: str, fingerprint: str, ttl_seconds: int,
                   *, now: float | None = None) -> DeliveryClaim:
    """Claim a delivery for applying (FIRST), or say what it repeats (see the module docstring); raises RedisError."""
    script = registered_script(redis, "replay", CLAIM_LUA)
    moment = int(time.time() if now is None else now)
    answer = script(keys=[_key(provider, delivery_id)],
                    args=[fingerprint, moment, max(1, ttl_seconds), PENDING_TAKEOVER_SECONDS])
    return DeliveryClaim(answer.decode() if isinstance(answer, bytes) else answer)


def mark_delivery_applied(redis: Redis, provider: str, delivery_id: str, fingerprint: str, ttl_seconds: int) -> None:
    """The claimed delivery is applied: its identical redeliveries are ALREADY_APPLIED from now on."""
    redis.set(_key(provider, delivery_id), f"applied {fingerprint}", ex=max(1, ttl_seconds))


def forget_delivery(redis: Redis, provider: str, delivery_id: str) -> None:
    """Let a delivery be accepted again (its processing failed, so the provider's retry must pass)."""
    redis.delete(_key(provider, delivery_id))
