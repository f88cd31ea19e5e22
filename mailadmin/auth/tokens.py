"""The account page's API tokens: make one (shown once), see them with their last use, revoke one."""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import IntegerField, SelectChoice, SelectMultipleField, StringField
from wtforms.validators import DataRequired, Length, NumberRange, Optional
from wtforms.widgets import CheckboxInput, ListWidget

from mailadmin.auth.decorators import login_required
from mailadmin.auth.views import bp
from mailadmin.models.api_token import SCOPES
from mailadmin.services import api_tokens
from mailadmin.services.errors import ServiceError

SCOPE_LABELS = {"read": _l("read — see campaigns, contacts and results"),
                "write": _l("write — create and change drafts, contacts, lists and segments"),
                "send": _l("send — test emails, start, pause, resume and cancel campaigns")}
# A token's state on the tokens page (services.api_tokens.token_state, "active" when it works).
TOKEN_STATE_WORDS = {"active": _l("active"), "expired": _l("expired"), "revoked": _l("revoked"),
                     "ended": _l("ended (user disabled)"), "unknown": _l("unknown")}


class ScopesField(SelectMultipleField):
    """One checkbox per scope."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class TokenForm(FlaskForm):
    name = StringField(_l("Name"), validators=[DataRequired(), Length(max=api_tokens.MAX_NAME_LENGTH)],
                       description=_l("What the token is for, e.g. “CRM sync”: the audit log shows it."))
    scopes = ScopesField(_l("Scopes"), choices=[SelectChoice(scope, SCOPE_LABELS[scope]) for scope in SCOPES],
                                   default=["read"])
    expires_days = IntegerField(_l("Expires after (days)"),
                                validators=[Optional(), NumberRange(1, api_tokens.MAX_EXPIRY_DAYS)],
                                description=_l("Leave empty for a token that does not expire."))


class RevokeForm(FlaskForm):
    """CSRF only."""


def _page(form: TokenForm, created: api_tokens.CreatedToken | None = None, status: int = 200):
    user = current_user._get_current_object()
    return render_template("auth/tokens.html", form=form, revoke_form=RevokeForm(), created=created,
                           tokens=api_tokens.tokens_of(user), state_of=api_tokens.token_state,
                           token_state_words=TOKEN_STATE_WORDS), status


@bp.route("/account/tokens", methods=["GET", "POST"])
@login_required
def tokens():
    """Your API tokens; a new one is shown on this answer only."""
    form = TokenForm()
    if not form.validate_on_submit():
        return _page(form, status=400 if form.errors else 200)
    try:
        created = api_tokens.create_token(current_user._get_current_object(), form.name.data, form.scopes.data or [],
                                          expires_in_days=form.expires_days.data)
    except ServiceError as error:
        flash(error.message, "error")
        return _page(form, status=400)
    return _page(TokenForm(formdata=None), created=created, status=201)


@bp.route("/account/tokens/<int:token_id>/revoke", methods=["POST"])
@login_required
def revoke_token(token_id: int):
    """Revoke one of your tokens: it stops working at once."""
    if not RevokeForm().validate_on_submit():
        flash(gettext("The form has expired. Please try again."), "error")
        return redirect(url_for("auth.tokens"), 303)
    try:
        token = api_tokens.find_token(token_id, owner=current_user._get_current_object())
    except ServiceError:
        return render_template("error.html", code=404, title=gettext("Not Found"), message=gettext("No such API token.")), 404
    api_tokens.revoke_token(token, actor=current_user._get_current_object())
    flash(gettext("Token “%(name)s” revoked: it no longer works.", name=token.name), "success")
    return redirect(url_for("auth.tokens"), 303)
