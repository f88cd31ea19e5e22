"""One message's SMTP transaction as the pipelined client keeps it: the message handed over
(`PendingMessage`, which turns a reply or a failure into its `Finished`), the commands it is sent
with, and the replies each stage may get (`DATA_STAGES`, `BDAT_STAGES`): a reply that lets the
transaction go on, a refusal, or one out of step (`in_step`)."""

from __future__ import annotations

import time
from collections.abc import Hashable
from dataclasses import dataclass

from mailadmin.mail.transports.base import Finished, SendOutcome
from mailadmin.mail.transports.classify import (
    SmtpProtocolError,
    Stage,
    failure_error,
    mask_addresses,
    refusal_error,
    reply_text,
)
from mailadmin.mail.transports.session import Session, with_crlf

# A transaction's stages and the replies that let it go on: with DATA, and with BDAT ... LAST,
# whose reply is the message's final one.
DATA_STAGES = ((Stage.MAIL, (250,)), (Stage.RCPT, (250, 251)), (Stage.DATA, (354,)))
BDAT_STAGES = ((Stage.MAIL, (250,)), (Stage.RCPT, (250, 251)), (Stage.DATA_END, (250,)))
Stages = tuple[tuple[Stage, tuple[int, ...]], ...]
Reply = tuple[int, str]


def in_step(code: int, wanted: tuple[int, ...]) -> bool:
    """A reply that can answer the command: the one that lets it go on, or a refusal (4xx, 5xx, and
    codes outside SMTP's range, classified as such). A positive reply meant for another command
    (a 354 to MAIL, a 250 to DATA) is out of step."""
    return code in wanted or not 100 <= code <= 399


def first_refusal(stages: Stages, replies: list[Reply]) -> tuple[Stage, int, str] | None:
    """The first stage whose reply does not let the transaction go on: (stage, code, reply)."""
    for (stage, wanted), (code, reply) in zip(stages, replies, strict=False):
        if code not in wanted:
            return stage, code, reply
    return None


@dataclass(slots=True, eq=False)
class PendingMessage:
    """A message handed over: what to send, and what its verdict needs."""

    ticket: Hashable
    envelope_from: str
    envelope_to: str
    data: bytes
    started: float
    reconnected: bool = False
    body: bytes = b""  # with DATA accepted (354): the body and its end, waiting to go out

    def commands(self, session: Session, chunking: bool) -> list[bytes]:
        """MAIL FROM, RCPT TO, and DATA or `BDAT <size> LAST` with the message: one item per reply."""
        size = f" SIZE={len(self.data)}" if session.takes_size else ""
        mail = f"MAIL FROM:<{self.envelope_from}>{size}\r\n".encode()
        rcpt = f"RCPT TO:<{self.envelope_to}>\r\n".encode()
        if not chunking:
            return [mail, rcpt, b"DATA\r\n"]
        payload = with_crlf(self.data)
        return [mail, rcpt, b"BDAT %d LAST\r\n" % len(payload) + payload]

    def sent(self, reply: str) -> Finished:
        took_ms = (time.perf_counter() - self.started) * 1000
        return Finished(self.ticket, SendOutcome(250, mask_addresses(reply_text(reply), self.envelope_to), took_ms,
                                                 self.reconnected))

    def refused(self, code: int, reply: str, stage: Stage) -> Finished:
        return Finished(self.ticket, error=refusal_error(code, reply, stage, recipient=self.envelope_to))

    def failed(self, exc: SmtpProtocolError | OSError, stage: Stage, *, all_out: bool) -> Finished:
        """Failed at `stage`; `all_out`: the whole message had gone out, so it may have been delivered."""
        return Finished(self.ticket, error=failure_error(exc, stage, recipient=self.envelope_to,
                                                         outcome_unknown=all_out))

    def verdict(self, code: int, reply: str) -> Finished:
        """Its final reply (to the end of data) read: sent on 250, else refused."""
        return self.sent(reply) if code == 250 else self.refused(code, reply, Stage.DATA_END)
