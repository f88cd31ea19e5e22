"""Which status a failed message gives its recipient, and what it means for the quota and the slice
(the business rule of `mailadmin/jobs/send/outcomes.py`, one row per kind of failure)."""

from __future__ import annotations

import pytest

from mailadmin.jobs.send.outcomes import Failure, classify_build_error, classify_send_error
from mailadmin.mail.message import InvalidAddressError
from mailadmin.mail.templates import TemplateBudgetExceeded
from mailadmin.mail.transports import ErrorClass, PermanentSendError, SendError, TransientSendError
from mailadmin.services.delivery import Claim

SKIPPED, FAILED, PENDING, UNKNOWN = "skipped", "failed", "pending", "unknown"


@pytest.mark.parametrize(
    ("exc", "status", "error"),
    [
        (InvalidAddressError("a line break in the address"), SKIPPED, "invalid address: a line break in the address"),
        (TemplateBudgetExceeded("200000 steps"), FAILED, "template exceeded its budget: 200000 steps"),
        (ZeroDivisionError("division by zero"), FAILED, "could not build the message: ZeroDivisionError: division by zero"),
    ],
    ids=["invalid address", "template over budget", "template error"],
)
def test_a_message_that_cannot_be_built_fails_its_recipient_alone_and_uses_no_token(exc, status, error):
    failure = classify_build_error(exc)

    assert failure == Failure(status, error, attempted=False)
    assert (failure.refused, failure.ends_slice, failure.error_class) == (False, False, ErrorClass.PERMANENT)


@pytest.mark.parametrize(
    ("exc", "status", "refused", "hard_bounce", "ends_slice"),
    [
        (PermanentSendError("5.1.1 <jo@example.com>: no such user", smtp_code=550), FAILED, True, True, False),
        (PermanentSendError("5.3.4 message too big", smtp_code=552), FAILED, True, False, False),
        (PermanentSendError("5.7.1 relaying denied", smtp_code=550), FAILED, True, False, False),
        (TransientSendError("4.2.1 try again later", smtp_code=451), PENDING, True, False, True),
        (TransientSendError("connection refused"), PENDING, True, False, True),
        (SendError("timed out waiting for the reply to DATA", outcome_unknown=True), UNKNOWN, False, False, True),
    ],
    ids=["no such user", "too big", "relaying denied", "451", "no connection", "verdict lost"],
)
def test_a_send_error_sets_the_status_the_quota_token_and_whether_the_slice_goes_on(
    exc, status, refused, hard_bounce, ends_slice
):
    failure = classify_send_error(exc)

    assert (failure.status, failure.refused, failure.hard_bounce, failure.ends_slice) == (
        status, refused, hard_bounce, ends_slice
    )
    assert failure.attempted and failure.smtp_code == exc.smtp_code and failure.error == exc.message
    assert failure.error_class == (ErrorClass.PERMANENT if status == FAILED else ErrorClass.TRANSIENT)


def test_the_recorded_error_is_cut_to_500_characters_and_keeps_the_failure():
    claim = Claim(7, "jo@example.com", None, None)
    failure = classify_send_error(PermanentSendError("5.1.1 no such user " + "x" * 600, smtp_code=550))

    outcome = failure.outcome(claim)

    assert (outcome.claim, outcome.status, outcome.smtp_code, outcome.hard_bounce) == (claim, FAILED, 550, True)
    assert len(outcome.error) == 500 and outcome.attempted and outcome.sent_at is None
