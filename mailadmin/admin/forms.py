"""Admin forms. Every state-changing button is a POST form carrying a CSRF token."""

from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import (
    BooleanField,
    DateField,
    EmailField,
    HiddenField,
    PasswordField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, Optional

from mailadmin.models.suppression import SUPPRESSION_SOURCES
from mailadmin.models.user import ROLE_ADMIN, ROLE_MANAGER
from mailadmin.services.passwords import MIN_PASSWORD_LENGTH

ROLE_CHOICES = [SelectChoice(ROLE_MANAGER, "Manager"), SelectChoice(ROLE_ADMIN, "Admin")]


class ActionForm(FlaskForm):
    """A button that changes state: only the CSRF token and where to go back to."""

    next = HiddenField()


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
    campaign = StringField("Campaign", validators=[Optional(), Length(max=200)], description="Name or number")
    date_from = DateField("From", validators=[Optional()])
    date_to = DateField("To (inclusive)", validators=[Optional()])
    tz = HiddenField()  # the browser's zone (static/localtime.js): the days are the viewer's days


REASON_CHOICES = [
    SelectChoice("manual", "Added by an admin"),
    SelectChoice("hard_bounce", "Hard bounce"),
    SelectChoice("complaint", "Spam complaint"),
    SelectChoice("soft_bounces", "Repeated soft bounces"),
    SelectChoice("unsubscribed", "Unsubscribed"),
]
SOURCE_CHOICES = [SelectChoice(value, value) for value in SUPPRESSION_SOURCES]


class SuppressionFilterForm(FlaskForm):
    """GET search of the suppression list (no CSRF: it changes nothing)."""

    class Meta:
        csrf = False

    q = StringField("Address or @domain", validators=[Optional(), Length(max=320)])
    reason = SelectField("Reason", choices=[SelectChoice("", "Any reason"), *REASON_CHOICES], default="",
                         validate_choice=False)
    source = SelectField("Source", choices=[SelectChoice("", "Any source"), *SOURCE_CHOICES], default="",
                         validate_choice=False)
    date_from = DateField("Added from (UTC)", validators=[Optional()])
    date_to = DateField("Added to (UTC, inclusive)", validators=[Optional()])


class AddSuppressionsForm(FlaskForm):
    addresses = TextAreaField("Addresses (one per line)", validators=[DataRequired(), Length(max=200_000)])
    reason = SelectField("Reason", choices=REASON_CHOICES, default="manual", validators=[DataRequired()])
    note = StringField("Note (why)", validators=[Optional(), Length(max=200)])


class ImportSuppressionsForm(FlaskForm):
    file = FileField("CSV file (email[,reason])", validators=[FileRequired(message="Choose a CSV file.")])
    reason = SelectField("Reason for rows without one", choices=REASON_CHOICES, default="manual",
                         validators=[DataRequired()])
    note = StringField("Note (why)", validators=[Optional(), Length(max=200)])


class RemoveSuppressionForm(FlaskForm):
    why = StringField("Why may it receive mail again?", validators=[DataRequired(message="Say why."), Length(max=200)])


class ExportPersonForm(FlaskForm):
    email = EmailField("Address of the person", validators=[DataRequired(), Length(max=320)])


class ErasePersonForm(FlaskForm):
    email = EmailField("Address of the person to erase", validators=[DataRequired(), Length(max=320)])
    confirm = BooleanField("I understand: every stored copy of this address is replaced by its hash, and its contact, "
                           "list memberships and their history are deleted; it cannot be undone.",
                           validators=[InputRequired(message="Tick the box to confirm the erasure.")])
