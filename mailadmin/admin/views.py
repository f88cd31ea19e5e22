"""Admin pages: campaign controls, the global sending switch, the audit log and users.

Every action is a POST form whose CSRF token the app-wide CSRFProtect checks before the
view runs; the view calls one service function and redirects (303) back to where the
button was, with a flash saying what happened — including "nothing changed" when a
second click or a second admin got there first.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta

from flask import Blueprint, flash, make_response, redirect, render_template, request, url_for
from flask_babel import gettext
from flask_login import current_user
from sqlalchemy import func, or_, select
from wtforms.fields.choices import SelectChoice

from mailadmin.admin.audit_words import action_label, detail_label, detail_value
from mailadmin.admin.forms import (
    AuditFilterForm,
    CreateUserForm,
    RequeueUnknownForm,
    RoleForm,
)
from mailadmin.admin.links import campaign_url
from mailadmin.auth.decorators import admin_required
from mailadmin.auth.forms import submit_user_form, user_form_page
from mailadmin.auth.views import safe_next_url
from mailadmin.campaigns import controls
from mailadmin.campaigns.display import to_utc, viewer_zone
from mailadmin.extensions import db
from mailadmin.i18n import count_of
from mailadmin.models import AppState, AuditEvent, Campaign, User
from mailadmin.models.app_state import APP_STATE_ID
from mailadmin.models.campaign import (
    ACTIVE_STATUSES,
    FINISHED,
    PAUSED,
)
from mailadmin.models.user import ROLE_ADMIN
from mailadmin.services import campaigns as campaign_service
from mailadmin.services import sending_switch
from mailadmin.services import users as user_service

bp = Blueprint("admin", __name__)

AUDIT_PAGE_SIZE = 50
IN_FLIGHT_STATUSES = (*ACTIVE_STATUSES, PAUSED)


# --- helpers ---------------------------------------------------------------------------------


def _campaign_or_404(campaign_id: int) -> Campaign:
    return db.get_or_404(Campaign, campaign_id)


def _back(campaign: Campaign | None = None):
    """303 to the form's `next` (a local path), else the campaign's page, else the sending page."""
    target = safe_next_url(request.form.get("next") or request.args.get("next"))
    if not target and campaign is not None:
        target = campaign_url(campaign.id)
    return redirect(target or url_for("admin.sending"), code=303)


def _label(campaign: Campaign) -> str:
    return f"“{campaign.name}” (#{campaign.id})"


# --- per-campaign controls -------------------------------------------------------------------


@bp.route("/campaigns/<int:campaign_id>/pause", methods=["POST"])
@admin_required
def pause_campaign(campaign_id: int):
    """Pause a campaign (`admin_pause`): the send loop stops before its next message."""
    return controls.pause(_campaign_or_404(campaign_id))


@bp.route("/campaigns/<int:campaign_id>/resume", methods=["POST"])
@admin_required
def resume_campaign(campaign_id: int):
    """Resume a paused campaign; after a breaker trip the flash says the error counter was reset."""
    return controls.resume(_campaign_or_404(campaign_id))


@bp.route("/campaigns/<int:campaign_id>/cancel", methods=["GET", "POST"])
@admin_required
def cancel_campaign(campaign_id: int):
    """GET (or a POST without `confirm`) shows the confirmation; the confirmed POST cancels for good."""
    return controls.cancel(
        _campaign_or_404(campaign_id), url_for("admin.cancel_campaign", campaign_id=campaign_id)
    )


@bp.route("/campaigns/<int:campaign_id>/requeue-unknown", methods=["GET", "POST"])
@admin_required
def requeue_unknown(campaign_id: int):
    """Recipients whose outcome is unknown go back to pending — only after the admin accepts possible duplicates."""
    campaign = _campaign_or_404(campaign_id)
    form = RequeueUnknownForm()
    if request.method == "POST":
        if form.validate_on_submit():
            try:
                count = campaign_service.requeue_unknown_recipients(campaign, current_user)
            except campaign_service.CampaignError as exc:
                flash(exc.message, "error")
                return _back(campaign)
            if count:
                flash(
                    count_of(count, "%(num)s recipient of %(campaign)s re-queued; it will be sent once more.",
                             "%(num)s recipients of %(campaign)s re-queued; they will be sent once more.",
                             campaign=_label(campaign)),
                    "success",
                )
            else:
                flash(gettext("Campaign %(campaign)s has no recipient in the unknown state; nothing changed.",
                              campaign=_label(campaign)), "info")
            return _back(campaign)
    elif not campaign.unknown_count:
        flash(gettext("Campaign %(campaign)s has no recipient in the unknown state; nothing to re-queue.",
                      campaign=_label(campaign)), "info")
        return _back(campaign)
    else:
        form.next.data = safe_next_url(request.args.get("next")) or ""
    return render_template("admin/requeue_unknown.html", campaign=campaign, form=form), 400 if form.errors else 200


# --- global sending switch -------------------------------------------------------------------


@bp.route("/sending")
@admin_required
def sending():
    """The global switch, and every campaign in flight (or finished with unknown recipients) with its controls."""
    state = db.session.get(AppState, APP_STATE_ID)
    campaigns = db.session.scalars(
        select(Campaign)
        .where(
            or_(Campaign.status.in_(IN_FLIGHT_STATUSES), (Campaign.status == FINISHED) & (Campaign.unknown_count > 0))
        )
        .order_by(Campaign.id.desc())
        .limit(200)
    ).all()
    return render_template(
        "admin/sending.html",
        paused=sending_switch.sending_paused(),
        state=state,
        changed_by=db.session.get(User, state.changed_by_id) if state and state.changed_by_id else None,
        campaigns=campaigns,
    )


def _switch(paused: bool):
    if not sending_switch.set_sending_paused(paused, current_user):
        flash(gettext("All sending was already switched off; nothing changed.") if paused
              else gettext("All sending was already switched on; nothing changed."), "info")
    elif paused:
        flash(gettext("All sending is switched off. Workers stop before their next message."), "success")
    else:
        flash(gettext("All sending is switched back on. Waiting campaigns are queued again."), "success")
    return _back()


@bp.route("/sending/pause", methods=["POST"])
@admin_required
def pause_all_sending():
    """The global switch: off."""
    return _switch(True)


@bp.route("/sending/resume", methods=["POST"])
@admin_required
def resume_all_sending():
    """The global switch: back on (campaigns waiting with `global_pause` are queued again)."""
    return _switch(False)


# --- audit log -------------------------------------------------------------------------------

SYSTEM_ACTOR = "system"
AUDIT_FILTERS = ("actor", "action", "campaign", "date_from", "date_to")


@bp.route("/audit")
@admin_required
def audit():
    """Audit events, newest first, filtered by actor, action, campaign (name or number) and days in the viewer's zone."""
    form = AuditFilterForm(request.args)
    actors = db.session.scalars(
        select(User).where(User.id.in_(select(AuditEvent.actor_id).distinct())).order_by(User.email)
    ).all()
    form.actor.choices = [SelectChoice("", gettext("Anyone")), SelectChoice(SYSTEM_ACTOR, gettext("System (no user)"))] + [
        SelectChoice(str(u.id), u.email) for u in actors
    ]
    actions = db.session.scalars(select(AuditEvent.action).distinct().order_by(AuditEvent.action)).all()
    form.action.choices = [SelectChoice("", gettext("Any action"))] + sorted(
        (SelectChoice(a, action_label(a)) for a in actions), key=lambda choice: choice.label
    )
    form.validate()
    query = _audit_query(form, request.args.get("actor", ""), viewer_zone())
    page = db.paginate(query, per_page=AUDIT_PAGE_SIZE, max_per_page=AUDIT_PAGE_SIZE, error_out=False)
    # User-management events name their target in details["user_id"]: show the address instead.
    user_ids = {(event.details or {}).get("user_id") for event in page.items} - {None}
    users_by_id = {u.id: u for u in db.session.scalars(select(User).where(User.id.in_(user_ids)))} if user_ids else {}
    campaign_ids = {event.campaign_id for event in page.items if event.campaign_id}
    campaign_names = (
        dict(db.session.execute(select(Campaign.id, Campaign.name).where(Campaign.id.in_(campaign_ids))).all())
        if campaign_ids
        else {}
    )
    # Only the form's own fields go back into the pager's links: anything else a visitor adds to the
    # query string (`?endpoint=x`, `?_method=POST`) would be handed to url_for.
    filters = {key: request.args[key] for key in AUDIT_FILTERS if request.args.get(key)}
    return render_template(
        "admin/audit.html", form=form, page=page, filters=filters, users_by_id=users_by_id,
        campaign_names=campaign_names, action_label=action_label, detail_label=detail_label,
        detail_value=detail_value,
    )


def _audit_query(form: AuditFilterForm, actor: str, zone):
    """SELECT of the audit events the filters keep (a filter with an error is left out)."""
    query = select(AuditEvent)
    if actor == SYSTEM_ACTOR:
        query = query.where(AuditEvent.actor_id.is_(None))
    elif actor.isdigit():
        query = query.where(AuditEvent.actor_id == int(actor))
    if form.action.data:
        query = query.where(AuditEvent.action == form.action.data)
    campaign = (form.campaign.data or "").strip().lstrip("#")
    if campaign and not form.campaign.errors:
        if campaign.isdigit():
            query = query.where(AuditEvent.campaign_id == int(campaign))
        else:
            named = select(Campaign.id).where(func.lower(Campaign.name).contains(campaign.lower(), autoescape=True))
            query = query.where(AuditEvent.campaign_id.in_(named))
    if form.date_from.data and not form.date_from.errors:
        query = query.where(AuditEvent.created_at >= to_utc(datetime.combine(form.date_from.data, time()), zone))
    if form.date_to.data and not form.date_to.errors:
        end = to_utc(datetime.combine(form.date_to.data + timedelta(days=1), time()), zone)
        query = query.where(AuditEvent.created_at < end)
    return query.order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc())


# --- users -----------------------------------------------------------------------------------


@bp.route("/users")
@admin_required
def users():
    """Every user, active first, with role and access controls; `?q=` searches by email."""
    search = request.args.get("q", "").strip()
    query = select(User).order_by(User.active.desc(), User.email)
    if search:
        query = query.where(User.email.ilike(f"%{search}%"))
    return render_template(
        "admin/users.html", users=db.session.scalars(query).all(), search=search, role_form=RoleForm()
    )


@bp.route("/users/new", methods=["GET", "POST"])
@admin_required
def create_user():
    """Create a user; the users service validates the address, the password and the role."""
    form = CreateUserForm()
    done, user, problem = submit_user_form(
        form, lambda: user_service.create_user(form.email.data, form.password.data, form.role.data, actor=current_user)
    )
    if done:
        flash(gettext("User %(email)s created as %(role)s.", email=user.email, role=role_word(user.role)), "success")
        return redirect(url_for("admin.users"), code=303)
    return user_form_page("admin/user_new.html", form, problem)


def role_word(role: str) -> str:
    """"manager" / "admin" as the page's language says it."""
    return gettext("admin") if role == ROLE_ADMIN else gettext("manager")


def _user_or_404(user_id: int) -> User:
    return db.get_or_404(User, user_id)


@bp.route("/users/<int:user_id>/role", methods=["POST"])
@admin_required
def change_role(user_id: int):
    """Make a user manager or admin (the service keeps the last active admin an admin)."""
    user = _user_or_404(user_id)
    form = RoleForm()
    if not form.validate_on_submit():
        flash(gettext("Choose a role: manager or admin."), "error")
        return redirect(url_for("admin.users"), code=303)
    if user.role == form.role.data:
        flash(gettext("%(email)s is already %(role)s; nothing changed.", email=user.email, role=role_word(user.role)), "info")
        return redirect(url_for("admin.users"), code=303)
    try:
        user_service.set_role(user, form.role.data, actor=current_user)
    except user_service.UserError as exc:
        flash(str(exc), "error")
    else:
        flash(gettext("%(email)s is now %(role)s.", email=user.email, role=role_word(user.role)), "success")
    return redirect(url_for("admin.users"), code=303)


def _set_active(user_id: int, active: bool):
    user = _user_or_404(user_id)
    if user.active == active:
        flash(gettext("%(email)s is already active; nothing changed.", email=user.email) if active
              else gettext("%(email)s is already disabled; nothing changed.", email=user.email), "info")
        return redirect(url_for("admin.users"), code=303)
    try:
        user_service.set_active(user, active, actor=current_user)
    except user_service.UserError as exc:
        flash(str(exc), "error")
    else:
        flash(gettext("%(email)s is enabled.", email=user.email) if active
              else gettext("%(email)s is disabled: they can no longer log in.", email=user.email), "success")
    return redirect(url_for("admin.users"), code=303)


@bp.route("/users/<int:user_id>/disable", methods=["POST"])
@admin_required
def disable_user(user_id: int):
    """Disable a user: their sessions end and they can no longer log in."""
    return _set_active(user_id, False)


@bp.route("/users/<int:user_id>/enable", methods=["POST"])
@admin_required
def enable_user(user_id: int):
    """Let a disabled user log in again."""
    return _set_active(user_id, True)


@bp.route("/users/<int:user_id>/end-sessions", methods=["POST"])
@admin_required
def end_user_sessions(user_id: int):
    """Log a user out everywhere: every session and remember cookie ends at once."""
    user = _user_or_404(user_id)
    user_service.end_sessions(user, actor=current_user)
    flash(gettext("Every session of %(email)s has ended; they must log in again.", email=user.email), "success")
    return redirect(url_for("admin.users"), code=303)


@bp.route("/users/<int:user_id>/reset-password", methods=["POST"])
@admin_required
def reset_user_password(user_id: int):
    """Give a user a temporary password, shown once here; they must change it at their next login."""
    user = _user_or_404(user_id)
    if user.id == current_user.id:
        flash(gettext("Change your own password on your password page."), "info")
        return redirect(url_for("auth.change_password"), code=303)
    password = user_service.reset_password(user, actor=current_user)
    response = make_response(render_template("admin/user_password_reset.html", user=user, password=password))
    response.headers["Cache-Control"] = "no-store"  # the temporary password must not linger in a cache
    return response
