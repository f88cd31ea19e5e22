"""Campaign pages: list, import, test email, start, the campaign page with its live progress and
chart. The blueprint `bp` lives here; the editor and preview (editor.py), results.csv (exports.py),
pause/resume/cancel (controls.py) and the draft actions (draft_actions.py) add their routes to it.

Every page and endpoint of one campaign loads it through `get_campaign_for()`: a
manager asking for another manager's campaign gets 404, whatever the URL.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from flask import (
    Blueprint,
    Response,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext
from flask_login import current_user
from markupsafe import Markup

from mailadmin.auth.decorators import login_required
from mailadmin.campaigns import display, live, queries
from mailadmin.campaigns.access import get_campaign_for
from mailadmin.campaigns.forms import ImportForm, StartForm, TestEmailForm
from mailadmin.extensions import get_settings
from mailadmin.i18n import count_of
from mailadmin.models import Campaign
from mailadmin.models.campaign import (
    CAMPAIGN_STATUSES,
    DRAFT,
    R_BOUNCED,
    R_COMPLAINED,
    R_PENDING,
    RECIPIENT_STATUSES,
)
from mailadmin.services import drafts
from mailadmin.services.audiences.targets import resolved_count
from mailadmin.services.campaigns import start_campaign
from mailadmin.services.errors import ErrorKind, ServiceError
from mailadmin.services.estimates import current_estimate
from mailadmin.services.recipients import RecipientImportError, last_import_batch
from mailadmin.services.recipients import import_recipients as run_import
from mailadmin.services.test_email import TestEmailError, send_test_email, test_email_allowance

bp = Blueprint("campaigns", __name__)

INVALID_ROWS_SHOWN = 200


# The one mapping from a service refusal's kind to the HTTP status of the page that shows it.
HTTP_STATUS_BY_KIND = {
    ErrorKind.INVALID: 400,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.CONFLICT: 409,
    ErrorKind.TOO_LARGE: 409,
    ErrorKind.THROTTLED: 429,
    ErrorKind.UNAVAILABLE: 503,
}


def refusal_status(error: ServiceError) -> int:
    """HTTP status of a refused action, chosen by the kind of its error."""
    return HTTP_STATUS_BY_KIND[error.kind]


def draft_only(campaign: Campaign):
    """None for a draft; otherwise a redirect to the campaign page with a flash saying why."""
    if campaign.status == DRAFT:
        return None
    flash(str(drafts.NOT_A_DRAFT_MESSAGE), "warning")
    return redirect(url_for("campaigns.show", campaign_id=campaign.id), 303)


def draft_required(view: Callable) -> Callable:
    """Call `view(campaign, ...)` with the viewer's campaign `campaign_id` when it is a draft;
    otherwise answer `draft_only`'s redirect."""

    @functools.wraps(view)
    def wrapper(campaign_id: int, **kwargs):
        campaign = get_campaign_for(current_user, campaign_id)
        if (refusal := draft_only(campaign)) is not None:
            return refusal
        return view(campaign, **kwargs)

    return wrapper


# --- list ------------------------------------------------------------------------------------


@bp.route("/")
@bp.route("/campaigns")
@login_required
def index():
    status = request.args.get("status") or None
    if status not in CAMPAIGN_STATUSES:
        status = None
    page = queries.list_campaigns(current_user, status, queries.page_number(request.args.get("page")))
    return render_template("campaigns/index.html", page=page, status=status, statuses=CAMPAIGN_STATUSES)


# --- recipients ---------------------------------------------------------------------------------


@bp.route("/campaigns/<int:campaign_id>/recipients/import", methods=["GET", "POST"])
@login_required
@draft_required
def import_recipients(campaign: Campaign):
    form = ImportForm()
    summary = None
    status = 200
    if form.validate_on_submit():
        upload = form.file.data
        pasted = (form.text.data or "").strip()
        if upload is None and not pasted:
            flash(gettext("Choose a CSV file or paste some addresses first."), "error")
            status = 400
        else:
            try:
                if upload is not None:
                    summary = run_import(campaign, upload.read())
                    if pasted:  # both given: one import (one undo), reported together
                        summary.add(run_import(campaign, pasted, batch=summary.batch), "pasted")
                else:
                    summary = run_import(campaign, pasted)
            except RecipientImportError as error:
                flash(error.message, "error")
                status = 400
            else:
                category = "success" if summary.added else "warning"
                flash(gettext("Import finished: %(summary)s.", summary=summary.text), category)
                form.text.data = ""
    elif form.errors:
        flash(gettext("The form was not accepted. Please try again."), "error")
        status = 400
    return render_template(
        "campaigns/import.html",
        campaign=campaign,
        form=form,
        summary=summary,
        invalid_shown=INVALID_ROWS_SHOWN,
        max_upload_mb=get_settings().max_upload_mb,
    ), status


# --- test email ---------------------------------------------------------------------------------


TEST_EMAIL_TO = "test_email_to"  # session key: the address the user last sent a test email to


@bp.route("/campaigns/<int:campaign_id>/test-email", methods=["GET", "POST"])
@login_required
def test_email(campaign_id: int):
    """Send one test message; the address typed stays in the box for the next one."""
    campaign = get_campaign_for(current_user, campaign_id)
    form = TestEmailForm()
    status = 200
    if request.method == "GET":
        form.to_address.data = session.get(TEST_EMAIL_TO) or current_user.email
    elif form.validate_on_submit():
        try:
            result = send_test_email(campaign, current_user, form.to_address.data or "")
        except TestEmailError as error:
            flash(error.message, "error")
            status = refusal_status(error)
        else:
            session[TEST_EMAIL_TO] = result.to_address
            flash(gettext("Test email sent to %(address)s.", address=result.to_address), "success")
            return redirect(url_for("campaigns.test_email", campaign_id=campaign.id), 303)
    else:
        flash(gettext("The form was not accepted. Please check the address."), "error")
        status = 400
    settings = get_settings()
    return render_template(
        "campaigns/test_email.html",
        campaign=campaign,
        form=form,
        limit=settings.throttle_test_email_per_hour,
        allowance=test_email_allowance(current_user),
    ), status


# --- start --------------------------------------------------------------------------------------


@bp.route("/campaigns/<int:campaign_id>/start", methods=["GET", "POST"])
@login_required
def start(campaign_id: int):
    campaign = get_campaign_for(current_user, campaign_id)
    if campaign.status != DRAFT:
        flash(gettext("This campaign has already been started."), "info")
        return redirect(url_for("campaigns.show", campaign_id=campaign.id), 303)
    form = StartForm()
    settings = get_settings()
    status = 200
    zone = display.viewer_zone()
    if form.validate_on_submit() and form.check_in_future(zone):
        scheduled_at = form.scheduled_at_utc(zone)
        try:
            start_campaign(campaign, current_user, scheduled_at=scheduled_at)
        except ServiceError as error:  # CampaignError, or an audience that cannot be resolved
            flash(error.message, "error")
            status = refusal_status(error)
        else:
            if scheduled_at:
                flash(Markup(gettext("Campaign scheduled: it starts at {}.")).format(display.local_time(scheduled_at)), "success")
            else:
                flash(count_of(to_send(campaign), "Campaign started: %(num)s recipient queued.", "Campaign started: %(num)s recipients queued."), "success")
            return redirect(url_for("campaigns.show", campaign_id=campaign.id), 303)
    elif form.errors:
        for messages in form.errors.values():
            for message in messages:
                flash(str(message), "error")
        status = 400
    count = to_send(campaign) + _audience_count(campaign)
    return render_template(
        "campaigns/start.html",
        campaign=campaign,
        form=form,
        count=count,
        estimate=current_estimate(count),
        format_duration=display.format_duration,
        max_recipients=settings.max_campaign_recipients,
        start_limit=settings.throttle_campaign_start_per_hour,
    ), status


def _audience_count(campaign: Campaign) -> int:
    """Recipients the campaign's lists and segments resolve to now (0 without targets; a segment that no
    longer validates is named in a message instead)."""
    try:
        return resolved_count(campaign) or 0
    except ServiceError as error:
        flash(error.message, "error")
        return 0


def to_send(campaign: Campaign) -> int:
    """Recipients a start would send to (suppressed ones are already skipped)."""
    return max(0, campaign.recipients_total - campaign.skipped_count)


# --- campaign page and live progress -------------------------------------------------------------


@bp.route("/campaigns/<int:campaign_id>")
@login_required
def show(campaign_id: int):
    """One campaign: its state, buttons, progress and recipients (a draft: the steps to finish it)."""
    campaign = get_campaign_for(current_user, campaign_id)
    state = live.page_state(campaign, request.args)
    return render_template(
        "campaigns/show.html",
        progress=live.progress_payload(state, with_html=False),
        chart=chart_svg(campaign) if campaign.status != DRAFT else None,
        recipient_statuses=RECIPIENT_STATUSES,
        pending=R_PENDING,
        undo_import=draft_actions_offer(campaign),
        schedule=display.schedule_offer(campaign),
        **state.context(),
    )


def draft_actions_offer(campaign: Campaign) -> int | None:
    """How many recipients "Undo the last import" would remove on a draft (None: nothing to offer)."""
    if campaign.status != DRAFT:
        return None
    last = last_import_batch(campaign)
    return last[1] if last and last[1] else None


@bp.route("/campaigns/<int:campaign_id>/progress.json")
@login_required
def progress(campaign_id: int):
    """The page's live update: counts, status, reason, buttons, dates, last errors and the rows shown."""
    campaign = get_campaign_for(current_user, campaign_id)
    response = jsonify(live.progress_payload(live.page_state(campaign, request.args)))
    response.headers["Cache-Control"] = "no-store"
    return response


def chart_svg(campaign: Campaign) -> Markup:
    """The sends-per-hour chart of one campaign as SVG markup (every text in it is escaped by the builder),
    its hours labelled in the viewer's zone (the cookie static/localtime.js sets)."""
    bounced = queries.sends_per_hour(campaign, (R_BOUNCED, R_COMPLAINED)) if campaign.bounced_count or (
        campaign.complained_count) else {}
    hours = display.fill_hours(queries.sends_per_hour(campaign))
    return Markup(display.sends_per_hour_svg(hours, bounced, display.viewer_zone()))


@bp.route("/campaigns/<int:campaign_id>/sends-per-hour.svg")
@login_required
def chart(campaign_id: int):
    campaign = get_campaign_for(current_user, campaign_id)
    response = Response(str(chart_svg(campaign)), mimetype="image/svg+xml")
    response.headers["Cache-Control"] = "private, max-age=30"
    return response
