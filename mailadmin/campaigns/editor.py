"""The draft editor: create and edit a campaign's name, subject and bodies, and preview the
message as one recipient gets it (the HTML part in a sandboxed frame of its own)."""

from __future__ import annotations

from collections.abc import Callable

from flask import abort, flash, make_response, redirect, render_template, request, url_for
from flask_babel import gettext
from flask_login import current_user

from mailadmin.auth.decorators import login_required
from mailadmin.campaigns.access import get_campaign_for
from mailadmin.campaigns.forms import CampaignForm
from mailadmin.campaigns.views import bp, draft_required
from mailadmin.mail.templates import CampaignTemplates, TemplateBudgetExceeded, TemplateProblem, sample_fields
from mailadmin.models import Campaign, Recipient
from mailadmin.services import drafts
from mailadmin.services.drafts import DraftError, preview_fields, preview_recipient


@bp.route("/campaigns/new", methods=["GET", "POST"])
@login_required
def new():
    form = CampaignForm()
    campaign, errors = _save_campaign_form(
        form, lambda *fields: drafts.create_campaign(current_user, *fields), gettext("The campaign was not saved.")
    )
    if campaign is not None:
        flash(gettext("Draft “%(name)s” saved. Next: import its recipients.", name=campaign.name), "success")
        return redirect(url_for("campaigns.import_recipients", campaign_id=campaign.id), 303)
    return _campaign_form_page(form, errors, None)


def _save_campaign_form(form: CampaignForm, save: Callable[..., Campaign], not_saved: str):
    """The editor's POST for create and edit: (the saved campaign, {}) or (None, errors to mark);
    a refused save flashes `not_saved` and why."""
    errors: dict[str, list[str]] = {}
    if form.validate_on_submit():
        try:
            return save(form.name.data or "", form.subject.data or "", form.body_text.data or "", form.body_html.data), {}
        except DraftError as error:
            errors = error.errors
    elif form.errors:
        errors = form.errors
    if errors:
        flash(gettext("%(not_saved)s Please fix the problems marked below.", not_saved=not_saved), "error")
    return None, errors


def _campaign_form_page(form: CampaignForm, errors: dict, campaign: Campaign | None):
    """The editor page; 400 when it shows problems."""
    return render_template(
        "campaigns/form.html", form=form, errors=errors, campaign=campaign, fields=preview_fields_for(campaign)
    ), 400 if errors else 200


def preview_fields_for(campaign: Campaign | None) -> dict:
    """Merge fields with example values for the form's help box."""
    if campaign is None:
        return sample_fields()
    return preview_fields(campaign)


@bp.route("/campaigns/<int:campaign_id>/edit", methods=["GET", "POST"])
@login_required
@draft_required
def edit(campaign: Campaign):
    form = CampaignForm(obj=campaign)
    saved, errors = _save_campaign_form(
        form, lambda *fields: drafts.update_campaign(campaign, *fields), gettext("The changes were not saved.")
    )
    if saved is not None:
        flash(gettext("Changes saved."), "success")
        return redirect(url_for("campaigns.show", campaign_id=campaign.id), 303)
    return _campaign_form_page(form, errors, campaign)


def _render_preview(campaign: Campaign, recipient: Recipient | None):
    """(fields, rendered parts or None, problem or None) of a preview, within the template budget."""
    fields = recipient.merge_fields() if recipient else preview_fields(campaign)
    rendered, problem = None, None
    try:
        rendered = CampaignTemplates(campaign.subject, campaign.body_text, campaign.body_html).render(fields)
    except TemplateProblem as exc:
        problem = str(exc)
    except Exception as exc:  # a manager's template failing at render time is shown, not a 500
        detail = str(exc) if isinstance(exc, TemplateBudgetExceeded) else f"{type(exc).__name__}: {exc}"
        problem = gettext("The templates failed to render: %(problem)s", problem=detail)
    return fields, rendered, problem


@bp.route("/campaigns/<int:campaign_id>/preview")
@login_required
def preview(campaign_id: int):
    """The message as one recipient gets it; `?q=` finds the recipient by address or name."""
    campaign = get_campaign_for(current_user, campaign_id)
    search = (request.args.get("q") or "").strip()[:200]
    recipient, matches = _preview_choice(campaign, search, request.args.get("recipient", type=int))
    fields, rendered, problem = _render_preview(campaign, recipient)
    return render_template(
        "campaigns/preview.html", campaign=campaign, recipient=recipient, fields=fields, rendered=rendered,
        problem=problem, search=search, matches=matches,
    )


def _preview_choice(campaign: Campaign, search: str, recipient_id: int | None):
    """(the recipient to render, the search's matches): a chosen match, else the first match, else the first recipient."""
    matches = drafts.find_preview_recipients(campaign, search) if search else []
    if search and not matches:
        flash(gettext("No recipient of this campaign matches “%(search)s”; showing the first one instead.", search=search), "warning")
    chosen = next((m for m in matches if m.id == recipient_id), None) if matches else None
    if chosen is None and recipient_id is not None and not search:
        chosen = preview_recipient(campaign, recipient_id)
        if chosen is None:
            flash(gettext("That recipient is not in this campaign; showing the first one instead."), "warning")
    return chosen or (matches[0] if matches else preview_recipient(campaign)), matches


# The HTML part is the manager's own markup (inline styles, remote images): it gets a document of its
# own, framed only by our preview page, sandboxed (no scripts, forms or navigation, a unique origin).
PREVIEW_HTML_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src http: https: data:; font-src http: https: data:; "
    "frame-ancestors 'self'; sandbox"
)


@bp.route("/campaigns/<int:campaign_id>/preview/html")
@login_required
def preview_html(campaign_id: int):
    """The HTML part alone, for the preview page's sandboxed frame."""
    campaign = get_campaign_for(current_user, campaign_id)
    recipient_id = request.args.get("recipient", type=int)
    recipient = preview_recipient(campaign, recipient_id)
    if recipient_id is not None and recipient is None:
        abort(404)
    _, rendered, _ = _render_preview(campaign, recipient)
    if rendered is None or rendered.html is None:
        abort(404)
    response = make_response(rendered.html)
    response.headers["Content-Security-Policy"] = PREVIEW_HTML_CSP
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    return response
