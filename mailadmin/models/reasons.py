"""Why a campaign waits: each defer / pause reason as data, and when a deferral is due.

`campaign_queue.defer_reason` stores a `Reason`'s value. Everything the product says or decides
about a reason — its label, who or what resumes it, whether it has a deadline
(`deferred_until`), how loudly it is logged, and where the playbook explains it — is one row of
`REASONS`. Adding a reason means: one row here, the service function that sets it, and a
section in playbook/ONCALL.md (tests/test_reasons.py checks the anchor exists).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from flask_babel import gettext, lazy_gettext
from sqlalchemy import ColumnElement, and_, or_

from mailadmin.i18n import number


class Reason(StrEnum):
    """A defer / pause reason, as stored in `campaign_queue.defer_reason`."""

    SCHEDULED = "scheduled"
    RATE_LIMIT = "rate_limit"
    TRANSIENT_ERROR = "transient_error"
    CIRCUIT_BREAKER = "circuit_breaker"
    ADMIN_PAUSE = "admin_pause"
    GLOBAL_PAUSE = "global_pause"
    MISSED_SCHEDULE = "missed_schedule"
    BOUNCE_RATE = "bounce_rate"

    @property
    def info(self) -> ReasonInfo:
        """This reason's row of `REASONS`."""
        return REASONS[self]

    @property
    def label(self) -> str:
        return REASONS[self].label


class Resumes(StrEnum):
    """How a campaign waiting for a reason continues."""

    AT_DEFERRED_UNTIL = "automatically at deferred_until"
    BY_ADMIN = "by an admin"
    BY_OWNER_OR_ADMIN = "by its owner or an admin"
    WHEN_SWITCH_ON = "when sending is switched back on"


@dataclass(frozen=True, slots=True)
class ReasonInfo:
    """What the product knows about one reason."""

    label: str  # a lazy string of the catalogue: the viewer's language when shown, English in logs and the CLI
    resumes: Resumes
    has_deadline: bool  # True: `deferred_until` says when it continues (a continuation is scheduled)
    log_level: str  # level of the "Campaign deferred" / pause record
    playbook_anchor: str  # heading slug in playbook/ONCALL.md

    @property
    def automatic(self) -> bool:
        """Does the campaign continue by itself once `deferred_until` has come?"""
        return self.resumes is Resumes.AT_DEFERRED_UNTIL


# One row per reason: label, how it resumes, has a deadline?, log level, playbook anchor.
REASONS: dict[Reason, ReasonInfo] = {
    Reason.SCHEDULED: ReasonInfo(lazy_gettext("Scheduled start"), Resumes.AT_DEFERRED_UNTIL, True, "INFO", "scheduled-waiting-for-its-start-time"),
    Reason.RATE_LIMIT: ReasonInfo(lazy_gettext("Waiting for the hourly quota"), Resumes.AT_DEFERRED_UNTIL, True, "INFO", "rate_limit-hourly-quota-used-up"),
    Reason.TRANSIENT_ERROR: ReasonInfo(lazy_gettext("Retrying after a temporary SMTP error"), Resumes.AT_DEFERRED_UNTIL, True, "WARNING", "transient_error-retrying-after-a-temporary-smtp-error"),
    Reason.CIRCUIT_BREAKER: ReasonInfo(lazy_gettext("Paused by the circuit breaker after repeated SMTP errors"), Resumes.BY_ADMIN, False, "ERROR", "circuit_breaker-paused-after-repeated-smtp-errors"),
    Reason.ADMIN_PAUSE: ReasonInfo(lazy_gettext("Paused by a person"), Resumes.BY_OWNER_OR_ADMIN, False, "INFO", "admin_pause-paused-by-an-admin"),
    Reason.GLOBAL_PAUSE: ReasonInfo(lazy_gettext("All sending is switched off"), Resumes.WHEN_SWITCH_ON, False, "INFO", "global_pause-all-sending-switched-off"),
    # A scheduled start found more than MAILER_SCHEDULE_MAX_LATE_MINUTES late: a person decides.
    Reason.MISSED_SCHEDULE: ReasonInfo(lazy_gettext("Paused: its scheduled start was missed"), Resumes.BY_OWNER_OR_ADMIN, False, "WARNING", "missed_schedule-paused-because-its-scheduled-start-was-missed"),
    # Hard bounces + complaints above MAILER_BOUNCE_RATE_PAUSE_PERCENT of sent, or spam complaints alone
    # above MAILER_COMPLAINT_RATE_PAUSE_PERCENT: the list needs a look. `BounceRateTrip` says which.
    Reason.BOUNCE_RATE: ReasonInfo(lazy_gettext("Paused: too many hard bounces or spam complaints"), Resumes.BY_ADMIN, False, "ERROR", "bounce_rate-paused-because-its-list-bounces"),
}

# Reasons whose campaigns continue by themselves at `deferred_until`.
AUTOMATIC_REASONS = tuple(reason for reason, info in REASONS.items() if info.automatic)
# Reasons whose campaigns wait for the global switch (re-enqueued when it is switched back on).
SWITCH_REASONS = tuple(reason for reason, info in REASONS.items() if info.resumes is Resumes.WHEN_SWITCH_ON)


def reason_of(value: str | None) -> Reason | None:
    """The Reason stored as `value`; None for NULL or a value this version does not know."""
    try:
        return Reason(value) if value is not None else None
    except ValueError:
        return None


def resumes_automatically(reason: str | None) -> bool:
    """Does a deferral with this stored reason continue by itself at `deferred_until`?

    A NULL reason with a `deferred_until` (rows written before reasons were always set) counts
    as automatic: the time alone says when it continues.
    """
    if reason is None:
        return True
    known = reason_of(reason)
    return known is not None and known.info.automatic


def is_due(reason: str | None, deferred_until: datetime | None, moment: datetime) -> bool:
    """Has a deferred campaign's time come at `moment`? (Only automatic reasons ever are.)"""
    return deferred_until is not None and deferred_until <= moment and resumes_automatically(reason)


def is_due_sql(reason_column, until_column, moment: datetime | timedelta) -> ColumnElement[bool]:
    """SQL twin of `is_due` on `campaign_queue` columns (NULL reasons handled explicitly)."""
    return and_(
        until_column.is_not(None),
        until_column <= moment,
        or_(reason_column.is_(None), reason_column.in_([str(reason) for reason in AUTOMATIC_REASONS])),
    )


class PauseLine(StrEnum):
    """Which line a `bounce_rate` pause crossed."""

    BOUNCE_RATE = "bounce_rate"  # hard bounces + complaints, MAILER_BOUNCE_RATE_PAUSE_PERCENT
    COMPLAINT_RATE = "complaint_rate"  # spam complaints alone, MAILER_COMPLAINT_RATE_PAUSE_PERCENT


def format_percent(value: float) -> str:
    """"0.3", "5", "0.45": a percentage with at most two decimals and no trailing zeros."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


@dataclass(frozen=True, slots=True)
class BounceRateTrip:
    """A campaign's figures when it crossed a `bounce_rate` line: the line, and the counts it was judged on."""

    line: PauseLine
    sent: int
    bounced: int
    complained: int
    threshold_percent: float

    @property
    def counted(self) -> int:
        """What the line counts: complaints alone, or hard bounces + complaints."""
        return self.complained if self.line is PauseLine.COMPLAINT_RATE else self.bounced + self.complained

    @property
    def rate_percent(self) -> float:
        """The counted share of sent, in percent (two decimals)."""
        return round(100 * self.counted / self.sent, 2) if self.sent else 0.0

    def describe(self) -> str:
        """"spam complaints at 0.4 % of 1,000 sent (4), over the 0.3 % line"."""
        words = {"rate": format_percent(self.rate_percent), "sent": number(self.sent), "counted": number(self.counted),
                 "line": format_percent(self.threshold_percent)}
        if self.line is PauseLine.COMPLAINT_RATE:
            return gettext("spam complaints at %(rate)s %% of %(sent)s sent (%(counted)s), over the %(line)s %% line", **words)
        return gettext("hard bounces and complaints at %(rate)s %% of %(sent)s sent (%(counted)s), "
                       "over the %(line)s %% line", **words)

    def label(self) -> str:
        """The pause reason as pages say it: "Paused: spam complaints at 0.4 % ..."."""
        return gettext("Paused: %(what)s", what=self.describe())

    def details(self) -> dict[str, Any]:
        """The audit row's details and the log record's fields."""
        return {"tripped_by": self.line.value, "sent": self.sent, "bounced": self.bounced,
                "complained": self.complained, "rate_percent": self.rate_percent,
                "threshold_percent": self.threshold_percent}

    @classmethod
    def from_details(cls, details: dict[str, Any] | None) -> BounceRateTrip | None:
        """The trip an audit row recorded; None for a row without one (written before the complaint line)."""
        try:
            line = PauseLine(details.get("tripped_by", PauseLine.BOUNCE_RATE))  # older rows: the only line there was
            return cls(line, int(details["sent"]), int(details["bounced"]),
                       int(details["complained"]), float(details["threshold_percent"]))
        except (TypeError, KeyError, ValueError):
            return None
