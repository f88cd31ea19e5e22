"""The cheap stop signal between the services and running send slices (Redis pub/sub).

A slice no longer asks the database before every message whether its campaign was paused,
cancelled or deferred, or sending was switched off. Instead every service that stops a campaign
(or all of them) announces it on one channel after its commit, and each running slice listens in
a thread: on a signal for its campaign (or for all) it holds its connections before their next
message and checks the database once. The database check the slice makes with each claim batch
stays as the safety net for a signal lost while Redis was away.

Channel: `mailadmin:send-stop:<redis db index>`; the message is the campaign id, or `*` for every
campaign. (Pub/sub ignores the database index: without it in the name, two installs sharing one
redis-server on different indexes would wake each other's slices.)
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from loguru import logger
from redis import Redis, RedisError

from mailadmin.limits.window import KEY_PREFIX

STOP_CHANNEL = KEY_PREFIX + "send-stop"
ALL_CAMPAIGNS = "*"


def stop_channel(redis: Redis) -> str:
    """The stop channel of the Redis database `redis` uses."""
    return f"{STOP_CHANNEL}:{redis.connection_pool.connection_kwargs.get('db', 0)}"


def announce_send_stop(redis: Redis, campaign_id: int | None) -> None:
    """Tell running slices that a campaign (None: every campaign) may have to stop. Never raises."""
    try:
        redis.publish(stop_channel(redis), ALL_CAMPAIGNS if campaign_id is None else str(campaign_id))
    except RedisError as exc:
        # The slices' per-batch database check still stops them, one batch later.
        logger.bind(campaign_id=campaign_id, error_type=type(exc).__name__).warning(
            "Could not announce a send stop (Redis unavailable)"
        )


def _text(data: bytes | str) -> str:
    return data.decode() if isinstance(data, bytes) else str(data)


class StopListener:
    """A thread that calls `on_signal()` whenever a stop for `campaign_id` (or for all) is announced.

    `start()` returns once subscribed, so nothing announced after it is missed. When the
    subscription breaks, `on_signal()` is called too (a signal may have been lost meanwhile).
    """

    def __init__(self, redis: Redis, campaign_id: int, on_signal: Callable[[], None]) -> None:
        self.redis = redis
        self.wanted = {str(campaign_id), ALL_CAMPAIGNS}
        self.on_signal = on_signal
        self._closing = threading.Event()
        self._pubsub = None
        self._thread = threading.Thread(target=self._run, name=f"send-stop-{campaign_id}", daemon=True)

    def start(self) -> StopListener:
        """Subscribe (a RedisError is logged and the listener keeps trying in its thread) and start listening."""
        self._subscribe()
        self._thread.start()
        return self

    def _subscribe(self) -> bool:
        try:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            pubsub.subscribe(stop_channel(self.redis))
            # Wait for the server's confirmation: from then on no announcement is missed.
            pubsub.get_message(timeout=1.0, ignore_subscribe_messages=False)
        except RedisError as exc:
            logger.bind(error_type=type(exc).__name__).warning("Send stop signal unavailable (Redis unavailable)")
            return False
        self._pubsub = pubsub
        return True

    def _run(self) -> None:
        while not self._closing.is_set():
            if self._pubsub is None:
                if self._closing.wait(1.0) or not self._subscribe():
                    continue
                self.on_signal()  # something may have been announced while we were not listening
            try:
                message = self._pubsub.get_message(timeout=0.5)
            except (RedisError, OSError, ValueError):
                self._drop()
                continue
            if message and message.get("type") == "message" and _text(message["data"]) in self.wanted:
                self.on_signal()

    def _drop(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            try:
                pubsub.close()
            except (RedisError, OSError):
                pass

    def close(self) -> None:
        self._closing.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self._drop()
