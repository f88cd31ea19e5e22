"""Unsubscribe links and the preference page, no login.

* `GET /u/<token>` shows what the link unsubscribes from, `POST /u/<token>` does it: the RFC 8058
  one-click endpoint mail providers call (body `List-Unsubscribe=One-Click`, no cookies, no CSRF
  token). A list campaign's link unsubscribes from that campaign's lists; any other campaign's
  link adds the address to the suppression list (`services.audiences.preferences`).
* `POST /u/<token>/everything`: "unsubscribe from everything", the suppression list.
* `GET|POST /p/<token>`: the preference page, a switch for each list the person is or was on.

The blueprint is CSRF-exempt: the signed token in the URL is what a forged cross-site POST
cannot know. A GET never changes anything: link scanners and previews fetch URLs in emails.
Tokens are signed and expire (`mailadmin.mail.unsubscribe`); the pages show the address masked.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from flask import Blueprint, render_template, request, url_for
from loguru import logger
from sqlalchemy import select

from mailadmin.extensions import db, get_settings
from mailadmin.mail.unsubscribe import (
    UNSUBSCRIBE_TOKEN_MAX_AGE,
    BadUnsubscribeToken,
    ExpiredUnsubscribeToken,
    make_preferences_token,
    read_preferences_token,
    read_unsubscribe_token,
)
from mailadmin.models import Recipient
from mailadmin.pii import get_pii_log_fields, mask_email
from mailadmin.services.audiences import preferences as preference_service
from mailadmin.services.suppressions import is_suppressed

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


def _preferences_url(scope: preference_service.UnsubscribeScope) -> str | None:
    """A fresh link to the person's preference page, when the address is a contact."""
    if scope.contact is None:
        return None
    return url_for("unsubscribe.preferences", token=make_preferences_token(get_settings().secret_key, scope.contact.id))


def _page(template: str, token: str, recipient: Recipient, scope: preference_service.UnsubscribeScope, **extra):
    return render_template(template, token=token, masked_email=mask_email(recipient.email), lists=scope.lists,
                           preferences_url=_preferences_url(scope), suppressed=is_suppressed(recipient.email),
                           **extra)


def _with_recipient(view: Callable[[str, Recipient], Any]) -> Callable[[str], Any]:
    """The view gets the recipient its token names; a forged token or a deleted campaign gets the
    invalid-link page (an expired one the expired page, through `_ExpiredLink`)."""
    @functools.wraps(view)
    def with_recipient(token: str):
        recipient = _recipient_for(token)
        if recipient is None:
            return _invalid()
        return view(token, recipient)
    return with_recipient


def _unsubscribed(token: str, recipient: Recipient, scope: preference_service.UnsubscribeScope, **fields: Any):
    """Log the unsubscription (the address masked as the log level wants) and show the done page."""
    logger.bind(campaign_id=recipient.campaign_id, recipient_id=recipient.id, **fields,
                **get_pii_log_fields(recipient.email, "INFO")).info("Unsubscribed")
    return _page("unsubscribe/done.html", token, recipient, scope)


@bp.get("/u/<token>")
@_with_recipient
def confirm(token: str, recipient: Recipient):
    """The confirmation page: what the one-click button unsubscribes from, "everything", the preference page."""
    scope = preference_service.unsubscribe_scope(recipient)
    return _page("unsubscribe/confirm.html", token, recipient, scope)


@bp.post("/u/<token>")
@_with_recipient
def unsubscribe(token: str, recipient: Recipient):
    """RFC 8058 one-click: off the campaign's lists, or onto the suppression list (idempotent)."""
    scope = preference_service.unsubscribe_recipient(recipient)
    return _unsubscribed(token, recipient, scope, everything=scope.everything)


@bp.post("/u/<token>/everything")
@_with_recipient
def unsubscribe_everything(token: str, recipient: Recipient):
    """"Unsubscribe from everything": the address goes on the suppression list (idempotent)."""
    added = preference_service.unsubscribe_from_everything(recipient)
    scope = preference_service.UnsubscribeScope(preference_service.contact_of(recipient), [])
    return _unsubscribed(token, recipient, scope, already_suppressed=not added, everything=True)


def _contact_for(token: str) -> int | None:
    try:
        return read_preferences_token(get_settings().secret_key, token)
    except ExpiredUnsubscribeToken:
        raise _ExpiredLink from None
    except BadUnsubscribeToken:
        return None


@bp.route("/p/<token>", methods=["GET", "POST"])
def preferences(token: str):
    """The person's lists with a switch each; POST saves the switches (each change a history row)."""
    contact_id = _contact_for(token)
    person = preference_service.preferences_of(contact_id) if contact_id is not None else None
    if person is None:
        return _invalid()
    saved = None
    if request.method == "POST":
        wanted = {int(value) for value in request.form.getlist("list") if value.isdigit() and len(value) < 12}
        saved = preference_service.save_preferences(person.contact_id, wanted)
        person = preference_service.preferences_of(person.contact_id)
    return render_template("unsubscribe/preferences.html", token=token, person=person,
                           masked_email=mask_email(person.email), saved=saved)
