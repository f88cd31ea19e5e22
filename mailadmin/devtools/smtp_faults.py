"""Fault injection of the SMTP capture server (`CaptureSMTP` in smtp_capture.py): 4xx/5xx replies
at MAIL, RCPT or DATA (for every recipient or one address, a number of times or until cleared),
a delay before each DATA reply, and a connection dropped without a reply."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass

from aiosmtpd.smtp import SMTP

STAGES = ("mail", "rcpt", "data")
DEFAULT_TEXTS = {4: "4.3.0 Temporary failure, try again later", 5: "5.0.0 Rejected"}
DEFAULT_TEXTS_BY_CODE = {
    421: "4.3.2 Service shutting down, closing transmission channel",
    450: "4.2.0 Mailbox temporarily unavailable",
    451: "4.3.0 Local error in processing, try again later",
    452: "4.3.1 Insufficient system storage",
    550: "5.1.1 Mailbox unavailable",
    552: "5.3.4 Message too big",
    554: "5.7.1 Transaction failed",
}


@dataclass
class _Fault:
    code: int
    text: str
    stage: str
    times: int | None = None  # None: until cleared
    address: str | None = None  # lower-cased; None: every recipient

    @property
    def reply(self) -> str:
        return f"{self.code} {self.text}"


def _default_text(code: int) -> str:
    return DEFAULT_TEXTS_BY_CODE.get(code, DEFAULT_TEXTS.get(code // 100, "Injected reply"))


class FaultInjection:
    """The fault-injection half of `CaptureSMTP`: the calls tests make, and the two its SMTP hooks
    make from the server's event loop. The state is CaptureSMTP's, guarded by its lock."""

    _lock: threading.Lock
    _faults: list[_Fault]
    _drop_stage: str | None
    _delay_seconds: float

    def reply_with(self, code: int, text: str | None = None, stage: str = "rcpt", times: int | None = None) -> None:
        """Answer `code text` at `stage` ("mail", "rcpt" or "data"), `times` times or until cleared."""
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {', '.join(STAGES)}")
        with self._lock:
            self._faults.append(_Fault(code, text or _default_text(code), stage, times))

    def reply_for_address(self, address: str, code: int, text: str | None = None, stage: str = "rcpt") -> None:
        """Answer `code text` whenever `address` is a recipient (at RCPT by default), until cleared."""
        if stage not in ("rcpt", "data"):
            raise ValueError("a per-address reply is given at rcpt or data")
        with self._lock:
            self._faults.append(_Fault(code, text or _default_text(code), stage, None, address.lower()))

    def delay_per_message(self, seconds: float) -> None:
        """Wait `seconds` before answering each DATA (0 to stop)."""
        self._delay_seconds = max(0.0, float(seconds))

    def drop_connection_next(self, stage: str = "mail") -> None:
        """Close the connection, without a reply, at the next MAIL (or "rcpt"/"data") command."""
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {', '.join(STAGES)}")
        with self._lock:
            self._drop_stage = stage

    def clear_faults(self) -> None:
        """Back to answering 250 to everything, immediately."""
        with self._lock:
            self._faults.clear()
            self._drop_stage = None
        self._delay_seconds = 0.0

    # --- called from the server's event loop ---------------------------------------------

    def _take_fault(self, stage: str, address: str) -> _Fault | None:
        wanted = address.lower()
        with self._lock:
            for fault in self._faults:
                if fault.stage != stage or (fault.address is not None and fault.address != wanted):
                    continue
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                return fault
        return None

    async def _maybe_drop(self, server: SMTP, stage: str) -> None:
        with self._lock:
            if self._drop_stage != stage:
                return
            self._drop_stage = None
        assert server.transport is not None
        server.transport.close()
        # connection_lost() cancels this session's task, which ends this wait.
        await asyncio.Event().wait()
