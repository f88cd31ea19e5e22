"""Unsubscribe links: `GET /u/<token>` shows a confirmation page, `POST /u/<token>` unsubscribes.

The POST is the RFC 8058 one-click endpoint that mail providers call (body
`List-Unsubscribe=One-Click`, no cookies, no CSRF token), so the blueprint is CSRF-exempt; the
confirmation page's button posts to the same URL. A GET never changes anything: link scanners
and previews fetch URLs in emails. The token is signed (`mailadmin.mail.unsubscribe`), names one
recipient of one campaign, and adds that address to the suppression list for every campaign.
"""

from __future__ import annotations

from flask import Blueprint, render_template
from loguru import logger
from sqlalchemy import select

from mailadmin.extensions import db, get_settings
from mailadmin.mail.unsubscribe import (
    UNSUBSCRIBE_TOKEN_MAX_AGE,
    BadUnsubscribeToken,
    ExpiredUnsubscribeToken,
    read_unsubscribe_token,
)
from mailadmin.models import Recipient
from mailadmin.models.suppression import REASON_UNSUBSCRIBED, SOURCE_UNSUBSCRIBE
from mailadmin.pii import get_pii_log_fields, mask_email
from mailadmin.services.suppressions import is_suppressed, suppress

bp = Blueprint("unsubscribe", __name__)


class _ExpiredLink(Exception):
    """The token is genuine but older than UNSUBSCRIBE_TOKEN_MAX_AGE."""


def _recipient_for(token: str) -> Recipient | None:
    """The recipient a token names, None for a forged token or a deleted campaign; _ExpiredLink when too old."""
    try:
        campaign_id, recipient_id = read_unsubscribe_token(get_settings().secret_key, token)
    except ExpiredUnsubscribeToken:
        raise _ExpiredLink from None
    except BadUnsubscribeToken:
        return None
    return db.session.scalar(
        select(Recipient).where(Recipient.id == recipient_id, Recipient.campaign_id == campaign_id)
    )


def _invalid():
    return render_template("unsubscribe/invalid.html"), 404


@bp.errorhandler(_ExpiredLink)
def _expired(exc: _ExpiredLink):
    return render_template("unsubscribe/expired.html", days=UNSUBSCRIBE_TOKEN_MAX_AGE.days), 410


@bp.get("/u/<token>")
def confirm(token: str):
    """The confirmation page: one button that posts to the same URL."""
    recipient = _recipient_for(token)
    if recipient is None:
        return _invalid()
    return render_template(
        "unsubscribe/confirm.html",
        token=token,
        masked_email=mask_email(recipient.email),
        already=is_suppressed(recipient.email),
    )


@bp.post("/u/<token>")
def unsubscribe(token: str):
    """Add the recipient's address to the suppression list (RFC 8058 one-click; idempotent)."""
    recipient = _recipient_for(token)
    if recipient is None:
        return _invalid()
    added = suppress(recipient.email, REASON_UNSUBSCRIBED, recipient.campaign_id, source=SOURCE_UNSUBSCRIBE)
    logger.bind(
        campaign_id=recipient.campaign_id,
        recipient_id=recipient.id,
        already_suppressed=not added,
        **get_pii_log_fields(recipient.email, "INFO"),
    ).info("Unsubscribed")
    return render_template("unsubscribe/done.html", masked_email=mask_email(recipient.email))
