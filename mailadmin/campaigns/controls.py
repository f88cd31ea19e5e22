"""Pause, resume and cancel one campaign: its owner or an admin (SPEC "Roles").

Resuming after a circuit-breaker trip, or while all sending is switched off, stays with admins;
everyone else is told why. Each action calls the one service function that changes the state
(it records the audit event with its actor) and answers with a flash that describes the state
the campaign is really in afterwards — including "waiting for the hourly quota" — and a 303
back to where the button was. The admin blueprint's routes for the same actions call these too.
"""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext
from flask_login import current_user
from markupsafe import Markup

from mailadmin.auth.decorators import login_required
from mailadmin.auth.views import safe_next_url
from mailadmin.campaigns.access import get_campaign_for, resume_refusal
from mailadmin.campaigns.display import campaign_reason, local_time
from mailadmin.campaigns.forms import CancelCampaignForm
from mailadmin.campaigns.views import bp
from mailadmin.extensions import get_redis, get_settings
from mailadmin.limits.rate_limiter import rate_limit_usage
from mailadmin.models import Campaign
from mailadmin.models.campaign import DRAFT, FINAL_STATUSES, PAUSED, QUEUED
from mailadmin.models.reasons import Reason
from mailadmin.services import campaigns as campaign_service
from mailadmin.services import sending_switch
from mailadmin.services.transitions import Transition


def back_to(campaign: Campaign):
    """303 to the form's `next` (a local path), else the campaign's page."""
    target = safe_next_url(request.form.get("next") or request.args.get("next"))
    return redirect(target or url_for("campaigns.show", campaign_id=campaign.id), code=303)


def label(campaign: Campaign) -> str:
    """“Spring news” (#12): how flashes name a campaign."""
    return f"“{campaign.name}” (#{campaign.id})"


def state_after_resume(campaign: Campaign) -> Markup:
    """What really happens next, in one sentence: sending continues, or what it still waits for."""
    sending_off = sending_switch.sending_paused()
    if sending_off:
        return Markup(" ") + gettext("All sending is switched off, so it waits until an admin switches sending back on.")
    reason = campaign_reason(campaign, sending_off)
    if reason is not None:
        return Markup(" ") + Markup(gettext("It does not send yet: {}.")).format(reason.html())
    if campaign.status == QUEUED:
        settings = get_settings()
        usage = rate_limit_usage(get_redis(), settings.smtp_max_per_hour)
        if usage.backend_available and usage.next_free_at and usage.current_count >= settings.smtp_max_per_hour:
            return Markup(" ") + Markup(gettext("It is queued, but the hourly quota is used up: sending continues at {}.")).format(
                local_time(usage.next_free_at, "auto")
            )
    return Markup(" ") + gettext("It is queued and sending continues.")


def _attempt(action, campaign: Campaign, already: str) -> Transition | None:
    """Run a person's pause, resume or cancel; None after flashing why it was refused or that the
    campaign `already` was so (nothing changed), else what it did."""
    try:
        done = action(campaign, current_user)
    except campaign_service.CampaignError as exc:
        flash(exc.message, "error")
        return None
    if not done.changed:
        flash(gettext("Campaign %(campaign)s %(already)s; nothing changed.", campaign=label(campaign), already=already.format(status=done.to_status)), "info")
        return None
    return done


def pause(campaign: Campaign):
    """Pause (`admin_pause`, whoever the person is); flash, 303 back."""
    if _attempt(campaign_service.pause_campaign, campaign, gettext("was already paused")):
        flash(gettext("Campaign %(campaign)s paused. Sending stops before its next message.", campaign=label(campaign)), "success")
    return back_to(campaign)


def resume(campaign: Campaign):
    """Resume a paused campaign if this person may; the flash says what it waits for now, if anything."""
    refusal = resume_refusal(current_user, campaign, sending_switch.sending_paused())
    if refusal:
        flash(refusal, "error")
        return back_to(campaign)
    resumed = _attempt(campaign_service.resume_campaign, campaign, gettext("is not paused (it is {status})"))
    if resumed is None:
        return back_to(campaign)
    message = Markup(gettext("Campaign {} resumed")).format(label(campaign))
    if resumed.from_reason == Reason.CIRCUIT_BREAKER:
        message += gettext(
            " after the circuit breaker tripped. The counter of consecutive transient errors was reset "
            "from %(count)s to 0.", count=resumed.errors_reset
        )
    else:
        message += "."
    flash(message + state_after_resume(campaign), "success")
    return back_to(campaign)


def cancel(campaign: Campaign, action_url: str):
    """GET (or a POST without `confirm`) shows the confirmation; the confirmed POST cancels for good."""
    form = CancelCampaignForm()
    if request.method == "GET" or form.confirm.data != "yes":
        if campaign.status in FINAL_STATUSES or campaign.status == DRAFT:
            flash(gettext("Campaign %(campaign)s is %(status)s: there is nothing to cancel.", campaign=label(campaign), status=campaign.status), "info")
            return back_to(campaign)
        form.next.data = safe_next_url(request.values.get("next")) or ""
        return render_template("campaigns/cancel.html", campaign=campaign, form=form, action_url=action_url)
    if _attempt(campaign_service.cancel_campaign, campaign, gettext("was already cancelled")):
        flash(gettext("Campaign %(campaign)s cancelled. No further message will be sent for it.", campaign=label(campaign)), "success")
    return back_to(campaign)


@bp.route("/campaigns/<int:campaign_id>/pause", methods=["POST"])
@login_required
def pause_own(campaign_id: int):
    """The owner (or an admin) pauses the campaign."""
    return pause(get_campaign_for(current_user, campaign_id))


@bp.route("/campaigns/<int:campaign_id>/resume", methods=["POST"])
@login_required
def resume_own(campaign_id: int):
    """The owner resumes it — unless the breaker or the global switch holds it (admins only)."""
    return resume(get_campaign_for(current_user, campaign_id))


@bp.route("/campaigns/<int:campaign_id>/cancel", methods=["GET", "POST"])
@login_required
def cancel_own(campaign_id: int):
    """The owner (or an admin) cancels the campaign, after a confirmation page."""
    campaign = get_campaign_for(current_user, campaign_id)
    return cancel(campaign, url_for("campaigns.cancel_own", campaign_id=campaign.id))


@bp.route("/campaigns/<int:campaign_id>/resume-missed-schedule", methods=["POST"])
@login_required
def resume_missed_schedule(campaign_id: int):
    """The owner (or an admin) sends a campaign whose scheduled start was missed, now: the campaign's
    ordinary Resume, kept under this address for the forms that name it."""
    campaign = get_campaign_for(current_user, campaign_id)
    if not (campaign.status == PAUSED and campaign.queue and campaign.queue.defer_reason == Reason.MISSED_SCHEDULE):
        flash(gettext("Only a campaign paused because its scheduled start was missed can be resumed here."), "error")
        return redirect(url_for("campaigns.show", campaign_id=campaign.id), 303)
    return resume(campaign)
