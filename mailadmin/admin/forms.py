"""Admin forms. Every state-changing button is a POST form carrying a CSRF token."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, DateField, EmailField, HiddenField, IntegerField, PasswordField, SelectField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional

from mailadmin.models.user import ROLE_ADMIN, ROLE_MANAGER
from mailadmin.services.passwords import MIN_PASSWORD_LENGTH

ROLE_CHOICES = [SelectChoice(ROLE_MANAGER, "Manager"), SelectChoice(ROLE_ADMIN, "Admin")]


class ActionForm(FlaskForm):
    """A button that changes state: only the CSRF token and where to go back to."""

    next = HiddenField()


class CancelCampaignForm(ActionForm):
    """Cancel is final: the confirmation page's form carries `confirm`, a bare button does not."""

    confirm = HiddenField(default="")


class RequeueUnknownForm(ActionForm):
    acknowledge = BooleanField(
        "I understand that these recipients may already have received this campaign and may get it twice.",
        validators=[InputRequired(message="Tick the box to confirm that you accept possible duplicates.")],
    )


class CreateUserForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=320)])
    password = PasswordField(
        "Password",
        validators=[InputRequired(), Length(max=200)],  # the service checks the policy, in its words
        description=f"At least {MIN_PASSWORD_LENGTH} characters, not a common password. Give it to the person over a safe channel.",
    )
    role = SelectField("Role", choices=ROLE_CHOICES, default=ROLE_MANAGER, validators=[DataRequired()])


class RoleForm(FlaskForm):
    role = SelectField("Role", choices=ROLE_CHOICES, validators=[DataRequired()])


class AuditFilterForm(FlaskForm):
    """GET filters of the audit log (no CSRF: it changes nothing)."""

    class Meta:
        csrf = False

    actor = SelectField("Actor", choices=[], default="", validate_choice=False)
    action = SelectField("Action", choices=[], default="", validate_choice=False)
    campaign = IntegerField("Campaign id", validators=[Optional(), NumberRange(min=1)])
    date_from = DateField("From (UTC)", validators=[Optional()])
    date_to = DateField("To (UTC, inclusive)", validators=[Optional()])
