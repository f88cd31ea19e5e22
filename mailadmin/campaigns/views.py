"""Campaign pages: list, create/edit, preview, import, test email, start, progress, results.

Every page and endpoint of one campaign loads it through `get_campaign_for()`: a
manager asking for another manager's campaign gets 404, whatever the URL.
"""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Callable, Iterator

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    session,
    stream_with_context,
    url_for,
)
from flask_login import current_user
from markupsafe import Markup

from mailadmin.auth.decorators import login_required
from mailadmin.campaigns import display, live, queries
from mailadmin.campaigns.access import get_campaign_for
from mailadmin.campaigns.forms import CampaignForm, ImportForm, StartForm, TestEmailForm
from mailadmin.extensions import get_settings
from mailadmin.mail.templates import CampaignTemplates, TemplateBudgetExceeded, TemplateProblem, sample_fields
from mailadmin.models import Campaign, Recipient
from mailadmin.models.campaign import (
    CAMPAIGN_STATUSES,
    DRAFT,
    R_BOUNCED,
    R_COMPLAINED,
    R_PENDING,
    RECIPIENT_STATUSES,
)
from mailadmin.services import drafts
from mailadmin.services.campaigns import CampaignError, start_campaign
from mailadmin.services.drafts import DraftError, preview_fields, preview_recipient
from mailadmin.services.errors import ErrorKind, ServiceError
from mailadmin.services.estimates import current_estimate
from mailadmin.services.recipients import RecipientImportError, last_import_batch
from mailadmin.services.recipients import import_recipients as run_import
from mailadmin.services.test_email import TestEmailError, send_test_email, test_email_allowance

bp = Blueprint("campaigns", __name__)

# Cells a spreadsheet would read as a formula (OWASP "CSV injection"); tab and CR too. Every cell of an
# export is also quoted (csv.QUOTE_ALL): a spreadsheet that splits on ";" (many locales) or tab never
# cuts "x;=1+1" into a second cell that starts with "=".
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
INVALID_ROWS_SHOWN = 200


def csv_safe(value: object) -> object:
    """A CSV cell that a spreadsheet shows as text: formula-like strings get a leading apostrophe."""
    if isinstance(value, str) and (value.startswith(FORMULA_PREFIXES) or value.lstrip().startswith(FORMULA_PREFIXES)):
        return "'" + value
    return value


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
    flash(drafts.NOT_A_DRAFT_MESSAGE, "warning")
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


# --- create / edit / preview --------------------------------------------------------------------


@bp.route("/campaigns/new", methods=["GET", "POST"])
@login_required
def new():
    form = CampaignForm()
    campaign, errors = _save_campaign_form(
        form, lambda *fields: drafts.create_campaign(current_user, *fields), "The campaign was not saved."
    )
    if campaign is not None:
        flash(f"Draft “{campaign.name}” saved. Next: import its recipients.", "success")
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
        flash(f"{not_saved} Please fix the problems marked below.", "error")
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
        form, lambda *fields: drafts.update_campaign(campaign, *fields), "The changes were not saved."
    )
    if saved is not None:
        flash("Changes saved.", "success")
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
        problem = f"The templates failed to render: {exc}" if isinstance(exc, TemplateBudgetExceeded) else (
            f"The templates failed to render: {type(exc).__name__}: {exc}")
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
        flash(f"No recipient of this campaign matches “{search}”; showing the first one instead.", "warning")
    chosen = next((m for m in matches if m.id == recipient_id), None) if matches else None
    if chosen is None and recipient_id is not None and not search:
        chosen = preview_recipient(campaign, recipient_id)
        if chosen is None:
            flash("That recipient is not in this campaign; showing the first one instead.", "warning")
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
            flash("Choose a CSV file or paste some addresses first.", "error")
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
                flash(f"Import finished: {summary.text}.", category)
                form.text.data = ""
    elif form.errors:
        flash("The form was not accepted. Please try again.", "error")
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
            flash(f"Test email sent to {result.to_address}.", "success")
            return redirect(url_for("campaigns.test_email", campaign_id=campaign.id), 303)
    else:
        flash("The form was not accepted. Please check the address.", "error")
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
        flash("This campaign has already been started.", "info")
        return redirect(url_for("campaigns.show", campaign_id=campaign.id), 303)
    form = StartForm()
    settings = get_settings()
    status = 200
    zone = display.viewer_zone()
    if form.validate_on_submit() and form.check_in_future(zone):
        scheduled_at = form.scheduled_at_utc(zone)
        try:
            start_campaign(campaign, current_user, scheduled_at=scheduled_at)
        except CampaignError as error:
            flash(error.message, "error")
            status = refusal_status(error)
        else:
            if scheduled_at:
                flash(Markup("Campaign scheduled: it starts at {}.").format(display.local_time(scheduled_at)), "success")
            else:
                flash(f"Campaign started: {to_send(campaign):,} recipients queued.", "success")
            return redirect(url_for("campaigns.show", campaign_id=campaign.id), 303)
    elif form.errors:
        for messages in form.errors.values():
            for message in messages:
                flash(message, "error")
        status = 400
    count = to_send(campaign)
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


@bp.route("/campaigns/<int:campaign_id>/results.csv")
@login_required
def export(campaign_id: int):
    campaign = get_campaign_for(current_user, campaign_id)

    def generate() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer, quoting=csv.QUOTE_ALL)
        writer.writerow(queries.EXPORT_COLUMNS)
        for number, row in enumerate(queries.export_rows(campaign), start=1):
            sent_at = row[-1].isoformat() if row[-1] else ""
            writer.writerow([csv_safe("" if value is None else value) for value in row[:-1]] + [sent_at])
            if number % 500 == 0:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    filename = f"campaign-{campaign.id}-results.csv"
    return Response(
        stream_with_context(generate()),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )
