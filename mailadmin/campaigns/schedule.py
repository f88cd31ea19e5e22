"""A scheduled campaign, started now or moved to another start time: its owner or an admin (SPEC
"Campaign lifecycle"), from the campaign page.

Each action calls the one service function the CLI calls too (`start_scheduled_now`,
`reschedule_campaign`: audit row with the actor, the scheduled continuation cancelled or moved)
and answers with a flash and a 303 back to the campaign page. Another manager's campaign is a 404.
"""

from __future__ import annotations

from flask import flash, redirect, url_for
from flask_babel import gettext
from flask_login import current_user
from markupsafe import Markup

from mailadmin.auth.decorators import login_required
from mailadmin.campaigns import display
from mailadmin.campaigns.access import get_campaign_for
from mailadmin.campaigns.controls import label, state_after_resume
from mailadmin.campaigns.forms import RescheduleForm
from mailadmin.campaigns.views import bp
from mailadmin.models import Campaign
from mailadmin.services import campaigns as campaign_service
from mailadmin.services.errors import ErrorKind


def _back(campaign: Campaign):
    return redirect(url_for("campaigns.show", campaign_id=campaign.id), code=303)


@bp.route("/campaigns/<int:campaign_id>/start-now", methods=["POST"])
@login_required
def start_now(campaign_id: int):
    """The owner (or an admin) sends a campaign waiting for its scheduled start now."""
    campaign = get_campaign_for(current_user, campaign_id)
    try:
        campaign_service.start_scheduled_now(campaign, current_user)
    except campaign_service.CampaignError as exc:
        flash(exc.message, "error")
        return _back(campaign)
    flash(Markup(gettext("Campaign {} started now instead of at its scheduled time.")).format(label(campaign))
          + state_after_resume(campaign), "success")
    return _back(campaign)


@bp.route("/campaigns/<int:campaign_id>/reschedule", methods=["POST"])
@login_required
def reschedule(campaign_id: int):
    """The owner (or an admin) gives a scheduled campaign another start time, typed in their zone."""
    campaign = get_campaign_for(current_user, campaign_id)
    form = RescheduleForm()
    if not form.validate_on_submit():
        for messages in form.errors.values():
            flash(str(messages[0]), "error")
        return _back(campaign)
    zone = display.viewer_zone()
    start_at = form.start_at_utc(zone)
    try:
        campaign_service.reschedule_campaign(campaign, current_user, start_at)
    except campaign_service.CampaignError as exc:
        # A time that has passed is most often one read in the wrong zone: say which zone it was read in.
        where = gettext(" (times are in your time zone, %(zone)s)", zone=zone.key) if exc.kind is ErrorKind.INVALID else ""
        flash(exc.message.rstrip(".") + where + ".", "error")
        return _back(campaign)
    flash(Markup(gettext("Campaign {} now starts at {}.")).format(label(campaign), display.local_time(start_at)), "success")
    return _back(campaign)
