"""How the SMTP client's failures are classified for the send loop (SPEC "Transient errors and the
circuit breaker"):

* transient - connection refused/reset, timeouts, socket and TLS errors, the server closing the
  connection or not speaking SMTP, any 4xx reply; also *any* failure while opening the session
  (greeting, EHLO, STARTTLS, AUTH), 5xx included: a wrong password or a blocked IP is not the
  recipient's fault, so it must trip the circuit breaker rather than fail every recipient;
* permanent - a 5xx reply to MAIL, RCPT or DATA (the command or the end of the message).

A relay whose replies are out of step with the commands (`RepliesOutOfStep`: a positive reply
meant for another command, one reply too many) fails the message transiently like a hang-up; the
client then marks what had wholly gone out `outcome_unknown` (pipelined.py).

The client (session.py, pipelined.py) raises an `SmtpProtocolError` for what the server did and
lets the network's `OSError`s through; `failure_error` turns either, with the `Stage` it happened
at, into the `TransientSendError` / `PermanentSendError` the send loop consumes, and
`refusal_error` does the same for the reply a transaction ended on. `error_class_for` is the rule.

Error texts never contain an address: SMTP servers love to quote the recipient, so every
address-like token is replaced by "<recipient>" (SPEC "Logging").
"""

from __future__ import annotations

import re
from enum import StrEnum

from mailadmin.mail.transports.base import ErrorClass, PermanentSendError, SendError, TransientSendError

_ADDRESS_LIKE = re.compile(r"""<?[^\s<>@()\[\],;:"']+@[^\s<>@()\[\],;:"']+>?""")


class Stage(StrEnum):
    """The step of an SMTP conversation a reply or a failure belongs to (`SendError.stage`)."""

    CONNECT = "connect"  # greeting, EHLO/HELO, STARTTLS, AUTH
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"  # the DATA command
    DATA_END = "data-end"  # the message went out; waiting for the final reply

    @property
    def label(self) -> str:
        """The stage as error texts name it."""
        return _LABELS[self]


_LABELS = {
    Stage.CONNECT: "session setup",
    Stage.MAIL: "MAIL FROM",
    Stage.RCPT: "RCPT TO",
    Stage.DATA: "DATA",
    Stage.DATA_END: "end of DATA",
}


def error_class_for(code: int | None, stage: Stage) -> ErrorClass:
    """Permanent only for a 5xx reply inside a transaction; everything else is worth another try."""
    if code is not None and 500 <= code <= 599 and stage is not Stage.CONNECT:
        return ErrorClass.PERMANENT
    return ErrorClass.TRANSIENT


class SmtpProtocolError(Exception):
    """What the server did that ends the step in progress (the network's own errors are OSErrors)."""


class ReplyRefused(SmtpProtocolError):
    """A reply the client cannot go on from while opening the session, or one it cannot read."""

    def __init__(self, code: int, reply: str) -> None:
        super().__init__(f"{code} {reply}")
        self.code = code
        self.reply = reply


class ServerHungUp(SmtpProtocolError):
    """The server closed the connection, or answered something that is not an SMTP reply."""


class RepliesOutOfStep(SmtpProtocolError):
    """A reply that cannot belong to the command it answers (a 354 to MAIL FROM, a 250 to DATA), or
    one more than was asked for: which reply answers which command is no longer known."""


class ExtensionMissing(SmtpProtocolError):
    """The session needs an extension the server does not offer (STARTTLS, a usable AUTH)."""


def mask_addresses(text: str, *addresses: str | None) -> str:
    """`text` with the given addresses and anything address-like replaced by "<recipient>"."""
    for address in addresses:
        # A plain case-insensitive search first: most replies do not quote the address at all.
        if address and address.lower() in text.lower():
            text = re.sub(re.escape(address), "<recipient>", text, flags=re.IGNORECASE)
    return _ADDRESS_LIKE.sub("<recipient>", text)


def reply_text(reply: str) -> str:
    """A (possibly multi-line) reply's text on one line, whitespace collapsed."""
    return " ".join(reply.split())


def refusal_error(
    code: int, reply: str, stage: Stage, *, recipient: str | None = None, outcome_unknown: bool = False
) -> SendError:
    """The error for a reply `code` at `stage` (addresses masked)."""
    if not 100 <= code <= 599:  # not a reply code at all: nothing to classify by
        return _error(f"no SMTP reply code at {stage.label}: {code} {reply_text(reply)}", None, stage, recipient,
                      outcome_unknown)
    text = f"SMTP {code} at {stage.label}: {reply_text(reply)}".rstrip(": ")
    return _error(text, code, stage, recipient, outcome_unknown)


def failure_error(
    exc: SmtpProtocolError | OSError, stage: Stage, *, recipient: str | None = None, outcome_unknown: bool = False
) -> SendError:
    """The error for a failure at `stage`: a refusal by its code, anything else transient."""
    if isinstance(exc, ReplyRefused):
        return refusal_error(exc.code, exc.reply, stage, recipient=recipient, outcome_unknown=outcome_unknown)
    where = stage.label
    if isinstance(exc, ServerHungUp):
        text = f"connection closed by the server at {where}"
    elif isinstance(exc, RepliesOutOfStep):
        text = f"replies out of step with the commands at {where}"
    elif isinstance(exc, TimeoutError):
        text = f"timed out at {where}"
    elif isinstance(exc, OSError):
        text = f"{type(exc).__name__} at {where}: {exc.strerror or exc}"
    else:
        text = f"{exc} at {where}"
    return _error(text, None, stage, recipient, outcome_unknown)


def _error(text: str, code: int | None, stage: Stage, recipient: str | None, outcome_unknown: bool) -> SendError:
    permanent = error_class_for(code, stage) is ErrorClass.PERMANENT
    error_type = PermanentSendError if permanent else TransientSendError
    return error_type(mask_addresses(text, recipient), smtp_code=code, stage=stage, outcome_unknown=outcome_unknown)
