"""The draft's "Audience" step: which lists and segments the campaign sends to or leaves out, and how
many recipients they resolve to now (the start resolves them again, once, into its recipients).
A campaign with an audience needs no CSV; a one-off campaign keeps its imported recipients."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext
from flask_login import current_user

from mailadmin.auth.decorators import login_required
from mailadmin.campaigns.views import bp, draft_required, refusal_status
from mailadmin.extensions import db
from mailadmin.models import Campaign
from mailadmin.services.audiences.segments import usable_lists, visible_segments
from mailadmin.services.audiences.targets import Targets, campaign_targets, resolved_count, set_campaign_targets
from mailadmin.services.errors import ServiceError

SEND, LEAVE_OUT = "send", "leave_out"


def _ids(prefix: str, choice: str) -> list[int]:
    """The ids whose select `<prefix>-<id>` says `choice`."""
    return [int(key[len(prefix) + 1:]) for key, value in request.form.items()
            if key.startswith(prefix + "-") and key[len(prefix) + 1:].isdigit() and value == choice]


def _targets_from_form() -> Targets:
    return Targets(lists=_ids("list", SEND), segments=_ids("segment", SEND),
                   exclude_lists=_ids("list", LEAVE_OUT), exclude_segments=_ids("segment", LEAVE_OUT))


@bp.route("/campaigns/<int:campaign_id>/audience", methods=["GET", "POST"])
@login_required
@draft_required
def audience(campaign: Campaign):
    """Choose the lists and segments (and the ones left out); the resolved count is shown."""
    status = 200
    if request.method == "POST":
        try:
            set_campaign_targets(campaign, current_user, _targets_from_form())
        except ServiceError as error:
            flash(gettext("The audience was not saved. %(problem)s", problem=error.message), "error")
            status = refusal_status(error)
        else:
            flash(gettext("Audience saved."), "success")
            return redirect(url_for("campaigns.audience", campaign_id=campaign.id), 303)
    try:
        count = resolved_count(campaign)
    except ServiceError as error:  # a segment that no longer validates: named, not a 500
        flash(error.message, "error")
        count = None
    return render_template(
        "campaigns/audience.html", campaign=campaign, targets=campaign_targets(campaign.id), resolved=count,
        lists=list(db.session.scalars(usable_lists(current_user))),
        segments=list(db.session.scalars(visible_segments(current_user))), SEND=SEND, LEAVE_OUT=LEAVE_OUT,
    ), status
