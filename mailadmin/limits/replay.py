"""Replay protection for signed webhooks: each delivery id is accepted once (Redis SET NX with a TTL).

The TTL outlives the freshness window of the signature, so a captured request is refused either
as a replay (within the TTL) or as stale (after it). Redis down: refused (fail-closed) — the
provider retries later, nothing is lost.
"""

from __future__ import annotations

import hashlib

from redis import Redis

KEY_PREFIX = "mailadmin:webhook-delivery:"


def _key(provider: str, delivery_id: str) -> str:
    digest = hashlib.sha256(delivery_id.encode("utf-8")).hexdigest()
    return f"{KEY_PREFIX}{provider}:{digest}"


def first_delivery(redis: Redis, provider: str, delivery_id: str, ttl_seconds: int) -> bool:
    """True the first time this provider's delivery id is seen within `ttl_seconds`; raises RedisError."""
    return bool(redis.set(_key(provider, delivery_id), "1", nx=True, ex=max(1, ttl_seconds)))


def forget_delivery(redis: Redis, provider: str, delivery_id: str) -> None:
    """Let a delivery be accepted again (its processing failed, so the provider's retry must pass)."""
    redis.delete(_key(provider, delivery_id))
