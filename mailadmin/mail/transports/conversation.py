"""The pipelined client's side of its open SMTP connection (`SmtpConversation`): the session, the
message whose body waits to go out with the next one (`held`), whether the connection can take
another command, and the round trips spent. Every exchange of one transaction happens here —
pipelined (one write, then every reply owed) or in lock-step — with the bookkeeping that keeps the
replies in step (pipelined.py's docstring says why and how); `PipelinedSmtpTransport` opens the
sessions and hands the messages over."""

from __future__ import annotations

from mailadmin.mail.transports.base import Finished
from mailadmin.mail.transports.classify import RepliesOutOfStep, ServerHungUp, SmtpProtocolError, Stage
from mailadmin.mail.transports.session import Session, dot_stuffed
from mailadmin.mail.transports.transaction import (
    BDAT_STAGES,
    DATA_STAGES,
    PendingMessage,
    Reply,
    Stages,
    first_refusal,
    in_step,
)


def _reply_in_step(session: Session, wanted: tuple[int, ...]) -> Reply:
    """The next reply, which must be able to answer a command expecting `wanted`."""
    code, reply = session.reply()
    if not in_step(code, wanted):
        raise RepliesOutOfStep()
    return code, reply


class SmtpConversation:
    """The open connection's state and the exchanges over it. Not thread-safe."""

    def __init__(self) -> None:
        self.session: Session | None = None
        self.held: PendingMessage | None = None  # its body waits to go out
        self.broken = False  # the open connection cannot take another command
        self.round_trips = 0  # writes, each waiting for its replies

    def discard(self) -> None:
        """Close the connection without a word (it cannot take another command)."""
        self.broken = False
        session, self.session = self.session, None
        if session is not None:
            session.close()

    def close(self) -> None:
        """QUIT and close the connection, if one is open; never raises. A message still held is
        abandoned: the connection is closed in the middle of its DATA, so the server discards it."""
        self.broken = False
        held, self.held = self.held, None
        session, self.session = self.session, None
        if session is None:
            return
        if held is not None:  # "QUIT" would be read as a line of its body
            session.close()
            return
        try:
            session.command("QUIT")
        except (SmtpProtocolError, OSError):
            pass
        finally:
            session.close()

    def write(self, data: bytes) -> None:
        """A write that waits for replies: one round trip."""
        self.round_trips += 1
        self.session.write(data)  # type: ignore[union-attr]

    def drop_if_out_of_step(self, finished: list[Finished]) -> bool:
        """Before a write, every reply owed has been read: anything waiting is a reply out of step, or
        the server hanging up. Then drop the connection (True); a waiting body never went out, so its
        message failed transiently."""
        session = self.session
        if session is None or not session.has_unread():
            return False
        held, self.held = self.held, None
        failure = ServerHungUp("Connection unexpectedly closed") if session.hung_up else RepliesOutOfStep()
        self.discard()
        if held is not None:
            finished.append(held.failed(failure, Stage.DATA, all_out=False))
        return True

    def send_held(self) -> Finished:
        """Send the waiting body alone and read its final reply: the held message's verdict."""
        held, self.held = self.held, None
        assert held is not None and self.session is not None
        session = self.session
        try:
            self.write(held.body)
            code, reply = _reply_in_step(session, (250,))
            if code != 421 and session.has_unread():
                raise RepliesOutOfStep()
        except (SmtpProtocolError, OSError) as exc:
            self.discard()
            return held.failed(exc, Stage.DATA_END, all_out=True)
        if code == 421:
            self.discard()
        return held.verdict(code, reply)

    def pipelined(self, message: PendingMessage, finished: list[Finished], *, chunking: bool, may_retry: bool) -> bool:
        """One write: the waiting body (if any) and `message`'s commands; then every reply owed.
        True when `message` should be tried again on a fresh connection (nothing of it went out)."""
        session = self.session
        assert session is not None
        held, self.held = self.held, None
        stages = BDAT_STAGES if chunking else DATA_STAGES
        replies: list[Reply] = []
        stage = Stage.MAIL  # the stage of `message` whose reply is awaited
        verdict_at = len(finished)  # where the held message's verdict goes
        try:
            commands = message.commands(session, chunking)
            self.write(b"".join([held.body, *commands] if held else commands))  # one copy, one write
            if held is not None:
                finished.append(held.verdict(*_reply_in_step(session, (250,))))
            for step, wanted in stages:
                stage = step  # the stage a failure below belongs to
                try:
                    code, reply = session.reply()
                except (SmtpProtocolError, OSError):
                    if first_refusal(stages, replies) is None:
                        raise
                    # An earlier command was refused and the server hung up (e.g. after a 421):
                    # the refusal is the answer; the connection is gone.
                    self.broken = True
                    break
                if not in_step(code, wanted):
                    raise RepliesOutOfStep()
                replies.append((code, reply))
            closing = self.broken or any(code == 421 for code, _ in replies)
            if not closing and session.has_unread():  # more replies than commands
                raise RepliesOutOfStep()
        except (SmtpProtocolError, OSError) as exc:
            self.discard()
            if held is not None:
                # Its verdict never came, or cannot be trusted when the replies are out of step.
                finished[verdict_at:] = [held.failed(exc, Stage.DATA_END, all_out=True)]
            dropped = isinstance(exc, (ServerHungUp, ConnectionError))
            if dropped and may_retry and held is None and not chunking and stage is Stage.MAIL:
                # The server closed a reused connection before answering MAIL: the body never
                # went out, so trying once more on a fresh connection is safe.
                return True
            finished.append(message.failed(exc, stage, all_out=chunking))
            return False
        if held is not None and finished[verdict_at].error is not None and finished[verdict_at].error.smtp_code == 421:
            self.broken = True  # the server announced it is closing the channel
        self._conclude(message, stages, replies, finished)
        return False

    def _conclude(self, message: PendingMessage, stages: Stages, replies: list[Reply], finished: list[Finished]) -> None:
        """`message`'s envelope replies read: it waits for its body to go out, is sent (BDAT), or refused."""
        refusal = first_refusal(stages, replies)
        if refusal is None:
            if stages is BDAT_STAGES:
                finished.append(message.sent(replies[-1][1]))
            elif self.broken:  # the previous message's 421: the server is closing
                self.discard()
                finished.append(message.failed(ServerHungUp("Connection closing"), Stage.DATA, all_out=False))
            else:
                message.body = dot_stuffed(message.data)
                self.held = message
            return
        stage, code, reply = refusal
        if stages is DATA_STAGES and len(replies) == 3 and replies[-1][0] == 354:
            # A pipelined DATA was accepted although the envelope was not: end an empty message.
            try:
                self.write(b".\r\n")
                self.session.reply()  # type: ignore[union-attr]
            except (SmtpProtocolError, OSError):
                self.broken = True
        finished.append(message.refused(code, reply, stage))
        self._reset_after_refusal(code, stage)

    def lock_step(self, message: PendingMessage, finished: list[Finished], *, chunking: bool, may_retry: bool) -> bool:
        """Each command waits for its reply (no PIPELINING); BDAT and the message are one command.
        True when `message` should be tried again on a fresh connection (nothing of it went out)."""
        session = self.session
        assert session is not None
        stages = BDAT_STAGES if chunking else DATA_STAGES
        replies: list[Reply] = []
        stage = Stage.MAIL
        try:
            for (step, wanted), command in zip(stages, message.commands(session, chunking), strict=True):
                stage = step  # the stage a failure below belongs to
                self.write(command)
                replies.append(_reply_in_step(session, wanted))
                if replies[-1][0] not in wanted:
                    break
            if not chunking and first_refusal(stages, replies) is None:
                stage = Stage.DATA_END
                self.write(dot_stuffed(message.data))
                replies.append(_reply_in_step(session, (250,)))
        except (SmtpProtocolError, OSError) as exc:
            self.discard()
            if isinstance(exc, (ServerHungUp, ConnectionError)) and may_retry and stage is Stage.MAIL:
                return True  # a reused connection closed before MAIL was answered: nothing went out
            finished.append(message.failed(exc, stage, all_out=stage is Stage.DATA_END))
            return False
        stages = (*DATA_STAGES, (Stage.DATA_END, (250,))) if not chunking else stages
        refusal = first_refusal(stages, replies)
        if refusal is None:
            finished.append(message.sent(replies[-1][1]))
            return False
        stage, code, reply = refusal
        finished.append(message.refused(code, reply, stage))
        self._reset_after_refusal(code, stage)
        return False

    def _reset_after_refusal(self, code: int, stage: Stage) -> None:
        """RSET after a refused envelope so the connection stays usable; drop it after a 421 or when
        that fails. (A refused end of data needs none: the transaction is over.)"""
        if self.session is None:
            return
        if code == 421 or self.broken:  # the server announced it is closing the channel
            self.discard()
            return
        if stage is Stage.DATA_END:
            return
        try:
            self.write(b"RSET\r\n")
            rset_code, _ = self.session.reply()
        except (SmtpProtocolError, OSError):
            rset_code = None
        if rset_code != 250:
            self.discard()
