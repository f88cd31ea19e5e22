"""One message on its connection, and what came of it.

`MessageSender` is what each connection thread runs per message: build it, send it, and turn the
result into an `Outcome` — never an exception for trouble with the message or the relay. Which
status a recipient gets from which failure is a business rule, stated once here:

| what happened | recipient | quota token | slice |
| --- | --- | --- | --- |
| the relay accepted the message | `sent` | counted | goes on |
| its address cannot be written (`InvalidAddressError`) | `skipped` | unused | goes on |
| its template failed or went over its budget | `failed` | unused | goes on |
| a permanent refusal (5xx: `PermanentSendError`) | `failed` (a hard bounce when "no such user") | given back | goes on |
| a transient failure (4xx, connection, timeout) | `pending` (retried later) | given back | ends |
| the verdict was lost after the whole message went out | `unknown` | counted | ends |

An exception that is none of these is a bug: the connection hands it to the slice, which fails.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from loguru import logger

from mailadmin.logging.policy import LOGGER_NAME_FIELD
from mailadmin.mail.bounces import is_hard_bounce
from mailadmin.mail.connections import Delivery, SendSteps, SmtpConnections
from mailadmin.mail.message import BuiltMessage, InvalidAddressError, MessageBuilder
from mailadmin.mail.templates import TemplateBudgetExceeded, recipient_fields
from mailadmin.mail.transports import ErrorClass, PermanentSendError, SendError, SendOutcome, Transport
from mailadmin.models.campaign import R_FAILED, R_PENDING, R_SENT, R_SKIPPED, R_UNKNOWN
from mailadmin.pii import get_pii_log_fields
from mailadmin.services.delivery import Claim, Outcome

# The send loop's records keep the package's name as their `logger` (playbook/OBSERVABILITY.md).
logger = logger.bind(**{LOGGER_NAME_FIELD: __package__})


@dataclass(frozen=True, slots=True)
class Failure:
    """What a failed message means for its recipient, the quota and the slice (the table above)."""

    status: str  # the recipient's status: failed | skipped | pending | unknown
    error: str
    smtp_code: int | None = None
    error_class: ErrorClass = ErrorClass.PERMANENT
    attempted: bool = True  # the message went to the relay (its per-second slot is spent)
    refused: bool = False  # the relay refused it: the hourly quota gets its token back
    hard_bounce: bool = False

    @property
    def ends_slice(self) -> bool:
        """A transient failure: no connection starts another message; the campaign is retried later."""
        return self.status in (R_PENDING, R_UNKNOWN)

    def outcome(self, claim: Claim) -> Outcome:
        """The recipient's outcome, to be recorded with its batch."""
        return Outcome(claim, self.status, self.smtp_code, error=self.error[:500], attempted=self.attempted,
                       hard_bounce=self.hard_bounce)


def classify_build_error(exc: Exception) -> Failure:
    """A message that could not be built fails its recipient alone; nothing went to the relay."""
    if isinstance(exc, InvalidAddressError):
        return Failure(R_SKIPPED, f"invalid address: {exc}", attempted=False)
    if isinstance(exc, TemplateBudgetExceeded):  # within the budget's fraction of a second
        return Failure(R_FAILED, str(exc), attempted=False)
    return Failure(R_FAILED, f"could not build the message: {type(exc).__name__}: {exc}", attempted=False)


def classify_send_error(exc: SendError) -> Failure:
    """A refusal fails the recipient; a transient failure puts it back (`unknown` when the verdict was lost)."""
    if isinstance(exc, PermanentSendError):
        return Failure(R_FAILED, exc.message, exc.smtp_code, refused=True,
                       hard_bounce=is_hard_bounce(exc.smtp_code, exc.message))
    # The whole message went out and the verdict was lost: it may have been delivered (and counted).
    status = R_UNKNOWN if exc.outcome_unknown else R_PENDING
    return Failure(status, exc.message, exc.smtp_code, ErrorClass.TRANSIENT, refused=not exc.outcome_unknown)


class MessageSender:
    """The slice's connections' `SendSteps`: build one message, then turn its verdict into an outcome,
    each on the connection's thread."""

    def __init__(
        self, builder: MessageBuilder, campaign_id: int, queue_id: int, clock: Callable[[], datetime]
    ) -> None:
        self.builder = builder
        self.campaign_id = campaign_id
        self.queue_id = queue_id
        self.clock = clock
        self.connections: SmtpConnections | None = None  # set once they are open: a transient failure stops them

    def prepare(self, delivery: Delivery) -> BuiltMessage | Outcome:
        """Build one message and date its token; the outcome instead when there is nothing to send."""
        claim, tokens = delivery.payload
        try:
            built = self.builder.build(claim.id, claim.email, recipient_fields(claim.email, claim.name, claim.fields))
        except Exception as exc:  # a template error on this recipient's data fails only this recipient
            tokens.finish(delivery.token, None)
            return self._failed(claim, classify_build_error(exc))
        tokens.begin(delivery.token, self.clock().timestamp())
        return built

    def conclude(self, transport: Transport, delivery: Delivery, built: BuiltMessage,
                 verdict: SendOutcome | SendError) -> Outcome:
        """The outcome of a sent message's verdict, its token's books kept; never an exception for SMTP trouble."""
        claim, tokens = delivery.payload
        attempt_at = tokens.sent_at[delivery.token]
        if isinstance(verdict, SendError):
            failure = classify_send_error(verdict)
            tokens.finish(delivery.token, attempt_at, counted=not failure.refused)
            if failure.ends_slice:  # no connection, this one included, starts another message
                self.connections.stop()
            return self._failed(claim, failure)
        tokens.finish(delivery.token, attempt_at)
        outcome = Outcome(claim, R_SENT, verdict.smtp_code, built.message_id, sent_at=self.clock(), took_ms=verdict.took_ms)
        logger.bind(
            **self._about(claim, "INFO"),
            smtp_message_id=built.message_id,
            provider=transport.provider,
            took_ms=round(verdict.took_ms, 1),
            rate_limit_count=tokens.current_count,
        ).info("Email sent successfully")
        return outcome

    @property
    def steps(self) -> SendSteps:
        """The two steps the connections run, so that one can write the next message before this verdict."""
        return SendSteps(self.prepare, self.conclude)

    def _about(self, claim: Claim, level: str) -> dict:
        """The fields every per-recipient record carries: ids and the address as `level` may show it."""
        return {"campaign_id": self.campaign_id, "queue_id": self.queue_id, "recipient_id": claim.id,
                **get_pii_log_fields(claim.email, level)}

    def _failed(self, claim: Claim, failure: Failure) -> Outcome:
        logger.bind(
            **self._about(claim, "ERROR"),
            smtp_code=failure.smtp_code,
            error_class=str(failure.error_class),
            error=failure.error,
            recipient_status=failure.status,
        ).error("Failed to send email")
        return failure.outcome(claim)
