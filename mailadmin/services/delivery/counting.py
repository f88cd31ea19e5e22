"""What the send path counts for `/metrics`: each outcome as the slice collects it, each deferral
and breaker trip once committed. Added to the process's tally (`mailadmin.counters`), which the
next settle of a token batch writes to Redis in the call it makes anyway."""

from __future__ import annotations

from mailadmin.counters import BREAKER_TRIPS, DEFERRALS, FAILED, PAUSES, SENT, SMTP_SEND_DURATION, TALLY, count
from mailadmin.counters.tally import observation
from mailadmin.models.campaign import R_FAILED, R_PENDING, R_SENT, R_SKIPPED, R_UNKNOWN
from mailadmin.models.reasons import Reason
from mailadmin.services.delivery.values import Outcome

# A failed outcome's class, by (status, whether it went to the relay).
_FAILURE_CLASS = {
    (R_FAILED, True): "permanent",
    (R_FAILED, False): "message",
    (R_PENDING, True): "transient",
    (R_UNKNOWN, True): "unknown",
    (R_UNKNOWN, False): "unknown",
    (R_SKIPPED, False): "invalid_address",
}


def count_outcome(outcome: Outcome) -> None:
    """Count one message the slice collected: sent (with its SMTP latency) or failed by class.
    Per message: one acquisition of the tally's lock (whether metrics are on is checked per write)."""
    if outcome.status == R_SENT:
        if outcome.took_ms is None:
            TALLY.add(SENT.key, "")
        else:
            TALLY.add_many(((SENT.key, "", 1), *observation(SMTP_SEND_DURATION, outcome.took_ms / 1000)))
        return
    failure_class = _FAILURE_CLASS.get((outcome.status, outcome.attempted))
    if failure_class is not None:
        TALLY.add(FAILED.key, failure_class)


def count_deferral(reason: Reason) -> None:
    """A campaign was deferred for `reason` (after the commit)."""
    count(DEFERRALS, str(reason))


def count_breaker_trip() -> None:
    """The circuit breaker paused a campaign (after the commit)."""
    count(BREAKER_TRIPS)
    count_pause(Reason.CIRCUIT_BREAKER)


def count_pause(reason: Reason) -> None:
    """The product paused a campaign by itself for `reason` (after the commit)."""
    count(PAUSES, str(reason))
