"""The public form's bot guards that need no session: a honeypot field and a signed fill-time stamp.

* **Honeypot**: a field people never see (`HONEYPOT_FIELD`, hidden by app.css and `aria-hidden`);
  a bot that fills every input fills it too. Such a sign-up is answered like any other and dropped.
* **Fill time**: the hosted form carries `STAMP_FIELD`, a signed timestamp of when the page was
  served, for this list. A POST sooner than `MIN_FILL_SECONDS` after it is refused (a person
  needs longer to type an address); a forged stamp or another list's is refused too. A stamp
  older than `STAMP_MAX_AGE` — or none, as from the embeddable snippet, which is static HTML on
  another site and cannot carry a fresh one — gets the hosted form back, filled in, with a fresh
  stamp: the person presses "Subscribe" once more, and the fill time starts there.
"""

from __future__ import annotations

import time
from enum import StrEnum

from itsdangerous import BadSignature, BadTimeSignature, SignatureExpired, TimestampSigner

from mailadmin.services.audiences.bounds import MIN_FILL_SECONDS, STAMP_MAX_AGE

HONEYPOT_FIELD = "website"
STAMP_FIELD = "form_stamp"


class StampVerdict(StrEnum):
    """What a form's fill-time stamp says."""

    OK = "ok"
    MISSING = "missing"  # none, or too old: show the form again (the snippet's first step)
    TOO_FAST = "too_fast"
    FORGED = "forged"


class _ClockedSigner(TimestampSigner):
    """itsdangerous's timestamp signer with an injectable clock (tests stamp a form served earlier)."""

    def __init__(self, secret_key: str, now: float | None) -> None:
        super().__init__(secret_key, salt="subscription-form-stamp")
        self._now = now

    def get_timestamp(self) -> int:
        return int(self._now if self._now is not None else time.time())


def make_form_stamp(secret_key: str, public_id: str, *, now: float | None = None) -> str:
    """The stamp of a form of the list `public_id` served at `now` (Unix s, default: now)."""
    return _ClockedSigner(secret_key, now).sign(public_id).decode("ascii")


def check_form_stamp(secret_key: str, public_id: str, stamp: str | None, *, now: float | None = None) -> StampVerdict:
    """Judge a submitted stamp for the list `public_id` (see the module docstring)."""
    if not stamp:
        return StampVerdict.MISSING
    signer = _ClockedSigner(secret_key, now)
    try:
        value, served_at = signer.unsign(stamp, max_age=STAMP_MAX_AGE, return_timestamp=True)
    except SignatureExpired:
        return StampVerdict.MISSING
    except (BadTimeSignature, BadSignature, UnicodeError, ValueError):
        return StampVerdict.FORGED
    if value.decode("utf-8", "replace") != public_id:
        return StampVerdict.FORGED
    elapsed = (now if now is not None else time.time()) - served_at.timestamp()
    return StampVerdict.TOO_FAST if elapsed < MIN_FILL_SECONDS else StampVerdict.OK
