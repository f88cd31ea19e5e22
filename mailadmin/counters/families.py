"""The metric families the processes count (the gauges are read at scrape time: `metrics/gauges.py`).

Names follow Prometheus' conventions: the `mailadmin_` prefix, the unit in the name, `_total` on
counters (added by the exposition: `name` here is the family's name without it). Labels are few
and bounded — a reason, a class, a provider, a source, an outcome — never a campaign id or an
address; each family lists the values it knows, exposed at 0 before the first count.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailadmin.models.reasons import Reason

# Sources of bounce and complaint reports (`BounceReport.source`).
REPORT_SOURCES = ("ses", "sendgrid", "postmark", "mailgun", "mailbox")
BOUNCE_TYPES = ("hard", "soft")
WEBHOOK_PROVIDERS = ("ses", "sendgrid", "postmark", "mailgun")
# What became of a webhook request: applied, a redelivery of one applied before, still being applied
# by another request, refused (unproven or a replay with another content), unreadable, Redis down,
# an SNS subscription message, or the provider's route is not configured.
WEBHOOK_OUTCOMES = ("applied", "already_applied", "in_progress", "refused", "unreadable", "unavailable",
                    "subscription", "not_configured")
# Why a message failed: the relay refused it (5xx), failed transiently (4xx, connection, timeout:
# the recipient is pending again), its verdict was lost (`unknown`), it could not be built (its
# template), or its address cannot be written.
FAILURE_CLASSES = ("permanent", "transient", "unknown", "message", "invalid_address")
# An outgoing webhook delivery attempt: delivered (2xx), failed (retried later), or given up.
EVENT_DELIVERY_OUTCOMES = ("delivered", "failed", "given_up")
# SMTP send latency buckets (seconds): from a fast local relay to a slow provider's timeout.
SMTP_SEND_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
KEY_PREFIX = "mailadmin:metrics:"


@dataclass(frozen=True)
class Family:
    """One metric family the processes count: a counter, or a histogram (`buckets`)."""

    name: str  # without `_total`
    help: str
    labels: tuple[str, ...] = ()
    known: tuple[tuple[str, ...], ...] = ()  # label value combinations exposed at 0 before their first count
    buckets: tuple[float, ...] = ()

    @property
    def key(self) -> str:
        """The Redis hash that holds this family's values (fields: label values joined by `|`)."""
        return KEY_PREFIX + self.name

    @property
    def is_histogram(self) -> bool:
        return bool(self.buckets)


def _single(values: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    return tuple((value,) for value in values)


SENT = Family("mailadmin_messages_sent", "Messages the SMTP relay accepted.")
FAILED = Family("mailadmin_messages_failed", "Messages that were not sent, by class of failure.",
                ("class",), _single(FAILURE_CLASSES))
DEFERRALS = Family("mailadmin_campaign_deferrals", "Campaigns deferred, by reason.",
                   ("reason",), _single((Reason.RATE_LIMIT, Reason.TRANSIENT_ERROR, Reason.GLOBAL_PAUSE)))
PAUSES = Family("mailadmin_campaign_pauses", "Campaigns paused by the product itself, by reason.",
                ("reason",), _single((Reason.CIRCUIT_BREAKER, Reason.BOUNCE_RATE, Reason.MISSED_SCHEDULE)))
BREAKER_TRIPS = Family("mailadmin_circuit_breaker_trips", "Campaigns paused by the circuit breaker.")
BOUNCES = Family("mailadmin_bounces", "Bounces recorded, by source and type (hard, soft).", ("source", "type"),
                 tuple((source, kind) for source in REPORT_SOURCES for kind in BOUNCE_TYPES))
COMPLAINTS = Family("mailadmin_complaints", "Spam complaints recorded, by source.", ("source",),
                    _single(REPORT_SOURCES))
WEBHOOKS = Family("mailadmin_webhooks_received", "Provider webhook requests, by provider and outcome.",
                  ("provider", "outcome"),
                  tuple((provider, outcome) for provider in WEBHOOK_PROVIDERS for outcome in WEBHOOK_OUTCOMES))
EVENT_DELIVERIES = Family("mailadmin_event_deliveries", "Outgoing webhook (events-out) delivery attempts, by outcome.",
                          ("outcome",), _single(EVENT_DELIVERY_OUTCOMES))
SMTP_SEND_DURATION = Family("mailadmin_smtp_send_duration_seconds",
                            "Time from writing a message to the relay's verdict, for accepted messages.",
                            buckets=SMTP_SEND_BUCKETS)

FAMILIES = (SENT, FAILED, DEFERRALS, PAUSES, BREAKER_TRIPS, BOUNCES, COMPLAINTS, WEBHOOKS, EVENT_DELIVERIES,
            SMTP_SEND_DURATION)
