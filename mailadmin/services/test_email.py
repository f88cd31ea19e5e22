"""Sending one test email of a campaign to an address the user types.

The message is built exactly like a campaign message (same templates, same builder,
the real SMTP transport), personalised for the preview's sample recipient, with
"[Test] " in front of the subject. Per-user throttle `MAILER_THROTTLE_TEST_EMAIL_PER_HOUR`,
FAIL-CLOSED: when Redis cannot be asked the email is not sent (SPEC "Throttles").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from email_validator import EmailNotValidError, validate_email
from flask_babel import gettext, lazy_gettext
from loguru import logger

from mailadmin.extensions import get_redis, get_settings
from mailadmin.limits.throttle import ACTION_TEST_EMAIL, is_user_throttled, throttle_message, throttle_moments
from mailadmin.mail.message import MessageBuilder, MessageBuildError
from mailadmin.mail.templates import CampaignTemplates, TemplateBudgetExceeded, TemplateProblem
from mailadmin.mail.transports import SendError, transport_from_url
from mailadmin.mail.unsubscribe import unsubscribe_url_for
from mailadmin.models import Campaign, User
from mailadmin.pii import get_pii_log_fields
from mailadmin.services.drafts import preview_fields
from mailadmin.services.errors import ServiceError, throttle_refusal

# The mark in front of a test message's subject, in the language of the person who sends it.
TEST_SUBJECT_PREFIX = lazy_gettext("[Test] ")
# Test messages carry a real, signed unsubscribe link that names no recipient (id 0),
# so clicking it in a test email suppresses nobody.
TEST_RECIPIENT_ID = 0


class TestEmailError(ServiceError):
    """The test email was not sent; `message` is the sentence for the page, `kind` the refusal's kind."""

    __test__ = False  # not a pytest test class


@dataclass(frozen=True)
class TestEmailResult:
    """A test email the SMTP server accepted."""

    __test__ = False

    to_address: str
    message_id: str


def normalise_test_address(address: str) -> str:
    """A syntax-checked single address, or TestEmailError."""
    address = (address or "").strip()
    if not address:
        raise TestEmailError(gettext("Enter the address the test email should go to."))
    try:
        return validate_email(address, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise TestEmailError(gettext("That is not a valid email address: %(problem)s", problem=exc)) from None


def send_test_email(campaign: Campaign, user: User, to_address: str) -> TestEmailResult:
    """Throttle (fail-closed), build and send one test message of `campaign` to `to_address`."""
    settings = get_settings()
    to_address = normalise_test_address(to_address)
    try:
        templates = CampaignTemplates(str(TEST_SUBJECT_PREFIX) + campaign.subject, campaign.body_text, campaign.body_html)
    except TemplateProblem as problem:
        raise TestEmailError(gettext("Fix the campaign's templates first: %(problem)s", problem=problem)) from None

    limit = settings.throttle_test_email_per_hour
    verdict = is_user_throttled(get_redis(), ACTION_TEST_EMAIL, user.id, limit)
    if verdict.is_throttled:
        raise TestEmailError(throttle_message(ACTION_TEST_EMAIL, limit, verdict.reason), throttle_refusal(verdict.reason))

    try:
        builder = MessageBuilder(campaign.id, settings.mail_from, templates, unsubscribe_url_for(settings, campaign.id),
                                 list_name=campaign.name)
        built = builder.build(TEST_RECIPIENT_ID, to_address, preview_fields(campaign))
    except MessageBuildError as exc:
        raise TestEmailError(gettext("The test email could not be built: %(problem)s", problem=exc)) from None
    except TemplateProblem as problem:
        raise TestEmailError(gettext("Fix the campaign's templates first: %(problem)s", problem=problem)) from None
    except TemplateBudgetExceeded as exc:
        raise TestEmailError(gettext("The campaign's templates failed to render: %(problem)s", problem=exc)) from None
    except Exception as exc:  # a template error at render time is the manager's to fix, not a 500
        raise TestEmailError(gettext("The campaign's templates failed to render: %(problem)s", problem=type(exc).__name__)) from None

    transport = transport_from_url(settings.smtp_url, timeout=settings.smtp_timeout_seconds)
    try:
        outcome = transport.send(builder.envelope_from, built.envelope_to, built.data)
    except SendError as exc:
        logger.bind(
            campaign_id=campaign.id,
            user_id=user.id,
            smtp_code=exc.smtp_code,
            error_class=exc.error_class,
            **get_pii_log_fields(to_address, "WARNING"),
        ).warning("Test email failed")
        raise TestEmailError(gettext("The SMTP server did not accept the test email: %(problem)s", problem=exc.message)) from None
    finally:
        transport.close()
    logger.bind(
        campaign_id=campaign.id,
        user_id=user.id,
        smtp_message_id=built.message_id,
        provider=transport.provider,
        took_ms=round(outcome.took_ms, 1),
        **get_pii_log_fields(to_address, "INFO"),
    ).info("Test email sent successfully")
    return TestEmailResult(to_address, built.message_id)



@dataclass(frozen=True)
class TestEmailAllowance:
    """How many test emails `user` may still send in the rolling hour, and when the next used one frees."""

    __test__ = False

    remaining: int
    limit: int
    next_free_at: datetime | None  # None when none is used


def test_email_allowance(user: User) -> TestEmailAllowance | None:
    """The user's test emails left this hour (None when the throttle backend cannot tell)."""
    limit = get_settings().throttle_test_email_per_hour
    used = throttle_moments(get_redis(), ACTION_TEST_EMAIL, user.id)
    if used is None:
        return None
    # With more used than the limit (it was lowered), a slot frees only when the surplus has left too.
    frees = used[max(0, len(used) - limit)] + timedelta(hours=1) if used else None
    return TestEmailAllowance(max(0, limit - len(used)), limit, frees)
