"""Correcting a draft: remove one recipient or all of them, undo the last import, duplicate a
campaign (content only, or with its recipients), delete a draft.

Each is a POST with CSRF that calls one service function and answers 303 with a flash; the
destructive ones that touch more than one recipient (remove all, delete) go through a
confirmation page first (GET), as cancelling a campaign does.
"""

from __future__ import annotations

import functools

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext, lazy_gettext
from flask_login import current_user

from mailadmin.auth.decorators import login_required
from mailadmin.auth.views import safe_next_url
from mailadmin.campaigns.access import get_campaign_for
from mailadmin.campaigns.views import bp, draft_required
from mailadmin.i18n import count_of
from mailadmin.models import Campaign
from mailadmin.services import drafts
from mailadmin.services.recipients import (
    RecipientImportError,
    remove_all_recipients,
    remove_recipient,
    undo_last_import,
)


def _recipients_url(campaign_id: int) -> str:
    return url_for("campaigns.show", campaign_id=campaign_id, _anchor="recipients")


def _confirmation_first(title, text, button: str):
    """GET shows the confirmation page of a destructive draft action (its button posts to the same
    URL); POST runs the view. `title` and `text` are functions of the campaign."""

    def decorate(view):
        @functools.wraps(view)
        def wrapper(campaign: Campaign):
            if request.method == "POST":
                return view(campaign)
            return render_template(
                "campaigns/confirm.html", campaign=campaign, title=title(campaign), text=text(campaign),
                button=button, action_url=url_for(request.endpoint, **request.view_args),
            )

        return wrapper

    return decorate


def _removed(change, campaign: Campaign, *args) -> int | None:
    """How many recipients `change` removed, or None once the service's refusal is flashed."""
    try:
        return change(campaign, *args)
    except RecipientImportError as error:
        flash(error.message, "error")
        return None


@bp.route("/campaigns/<int:campaign_id>/recipients/<int:recipient_id>/remove", methods=["POST"])
@login_required
@draft_required
def remove_one_recipient(campaign: Campaign, recipient_id: int):
    """Remove one recipient from a draft."""
    removed = _removed(remove_recipient, campaign, recipient_id)
    if removed:
        flash(count_of(campaign.recipients_total, "Recipient removed. %(num)s recipient left.",
                       "Recipient removed. %(num)s recipients left."), "success")
    elif removed is not None:
        flash(gettext("That recipient was already removed; nothing changed."), "info")
    return redirect(safe_back() or _recipients_url(campaign.id), 303)


def safe_back() -> str | None:
    """The form's `next`, when it is a local path."""
    return safe_next_url(request.form.get("next"))


@bp.route("/campaigns/<int:campaign_id>/recipients/remove-all", methods=["GET", "POST"])
@login_required
@draft_required
@_confirmation_first(
    lambda campaign: count_of(campaign.recipients_total, "Remove all %(num)s recipient?", "Remove all %(num)s recipients?"),
    lambda _: gettext("The draft keeps its content; you can import recipients again afterwards."),
    lazy_gettext("Yes, remove all recipients"),
)
def remove_all(campaign: Campaign):
    """Remove every recipient of a draft (after a confirmation page)."""
    removed = _removed(remove_all_recipients, campaign)
    if removed is not None:
        flash(count_of(removed, "%(num)s recipient removed. The draft has no recipients now.",
                       "%(num)s recipients removed. The draft has no recipients now."), "success")
    return redirect(_recipients_url(campaign.id), 303)


@bp.route("/campaigns/<int:campaign_id>/recipients/undo-import", methods=["POST"])
@login_required
@draft_required
def undo_import(campaign: Campaign):
    """Remove the recipients the draft's last import added."""
    removed = _removed(undo_last_import, campaign)
    if removed:
        flash(count_of(removed, "Last import undone: %(num)s recipient removed.",
                       "Last import undone: %(num)s recipients removed."), "success")
    elif removed is not None:
        flash(gettext("There is no import to undo."), "info")
    return redirect(_recipients_url(campaign.id), 303)


@bp.route("/campaigns/<int:campaign_id>/duplicate", methods=["POST"])
@login_required
def duplicate(campaign_id: int):
    """A new draft with this campaign's content, and its recipients when `recipients=yes`."""
    campaign = get_campaign_for(current_user, campaign_id)
    with_recipients = request.form.get("recipients") == "yes"
    copy = drafts.duplicate_campaign(campaign, current_user, with_recipients=with_recipients)
    if with_recipients:
        flash(count_of(copy.recipients_total, "Draft “%(name)s” created with %(num)s recipient.",
                       "Draft “%(name)s” created with %(num)s recipients.", name=copy.name), "success")
    else:
        flash(gettext("Draft “%(name)s” created with the same content and no recipients.", name=copy.name), "success")
    return redirect(url_for("campaigns.show", campaign_id=copy.id), 303)


@bp.route("/campaigns/<int:campaign_id>/delete", methods=["GET", "POST"])
@login_required
@draft_required
@_confirmation_first(
    lambda campaign: gettext("Delete the draft “%(name)s”?", name=campaign.name),
    lambda campaign: count_of(campaign.recipients_total, "The draft and its %(num)s recipient are deleted for good.",
                              "The draft and its %(num)s recipients are deleted for good."),
    lazy_gettext("Yes, delete this draft"),
)
def delete(campaign: Campaign):
    """Delete a draft for good (after a confirmation page)."""
    name, campaign_id = campaign.name, campaign.id  # read before the delete expires them
    try:
        drafts.delete_draft(campaign, current_user)
    except drafts.DraftError as error:
        flash(error.message, "error")
        return redirect(url_for("campaigns.show", campaign_id=campaign_id), 303)
    flash(gettext("Draft “%(name)s” deleted.", name=name), "success")
    return redirect(url_for("campaigns.index"), 303)

