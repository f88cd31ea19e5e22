"""Admin forms. Every state-changing button is a POST form carrying a CSRF token."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
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

ROLE_CHOICES = [SelectChoice(ROLE_MANAGER, _l("Manager")), SelectChoice(ROLE_ADMIN, _l("Admin"))]


class ActionForm(FlaskForm):
    """A button that changes state: only the CSRF token and where to go back to."""

    next = HiddenField()


class RequeueUnknownForm(ActionForm):
    acknowledge = BooleanField(
        _l("I understand that these recipients may already have received this campaign and may get it twice."),
        validators=[InputRequired(message=_l("Tick the box to confirm that you accept possible duplicates."))],
    )


class CreateUserForm(FlaskForm):
    email = EmailField(_l("Email"), validators=[DataRequired(), Length(max=320)])
    password = PasswordField(
        _l("Password"),
        validators=[InputRequired(), Length(max=200)],  # the service checks the policy, in its words
        description=_l("At least %(count)s characters, not a common password. Give it to the person over a safe channel.",
                        count=MIN_PASSWORD_LENGTH),
    )
    role = SelectField(_l("Role"), choices=ROLE_CHOICES, default=ROLE_MANAGER, validators=[DataRequired()])


class RoleForm(FlaskForm):
    role = SelectField(_l("Role"), choices=ROLE_CHOICES, validators=[DataRequired()])


class AuditFilterForm(FlaskForm):
    """GET filters of the audit log (no CSRF: it changes nothing)."""

    class Meta:
        csrf = False

    actor = SelectField(_l("Actor"), choices=[], default="", validate_choice=False)
    action = SelectField(_l("Action"), choices=[], default="", validate_choice=False)
    campaign = StringField(_l("Campaign"), validators=[Optional(), Length(max=200)], description=_l("Name or number"))
    date_from = DateField(_l("From"), validators=[Optional()])
    date_to = DateField(_l("To (inclusive)"), validators=[Optional()])
    tz = HiddenField()  # the browser's zone (static/localtime.js): the days are the viewer's days


REASON_CHOICES = [
    SelectChoice("manual", _l("Added by an admin")),
    SelectChoice("hard_bounce", _l("Hard bounce")),
    SelectChoice("complaint", _l("Spam complaint")),
    SelectChoice("soft_bounces", _l("Repeated soft bounces")),
    SelectChoice("unsubscribed", _l("Unsubscribed")),
]
# How the suppression list's table names each reason (its stored value, words for people).
REASON_WORDS = {
    "manual": _l("manual"),
    "hard_bounce": _l("hard bounce"),
    "complaint": _l("complaint"),
    "soft_bounces": _l("soft bounces"),
    "unsubscribed": _l("unsubscribed"),
}
SOURCE_CHOICES = [SelectChoice(value, value) for value in SUPPRESSION_SOURCES]


class SuppressionFilterForm(FlaskForm):
    """GET search of the suppression list (no CSRF: it changes nothing)."""

    class Meta:
        csrf = False

    q = StringField(_l("Address or @domain"), validators=[Optional(), Length(max=320)])
    reason = SelectField(_l("Reason"), choices=[SelectChoice("", _l("Any reason")), *REASON_CHOICES], default="",
                         validate_choice=False)
    source = SelectField(_l("Source"), choices=[SelectChoice("", _l("Any source")), *SOURCE_CHOICES], default="",
                         validate_choice=False)
    date_from = DateField(_l("Added from (UTC)"), validators=[Optional()])
    date_to = DateField(_l("Added to (UTC, inclusive)"), validators=[Optional()])


class AddSuppressionsForm(FlaskForm):
    addresses = TextAreaField(_l("Addresses (one per line)"), validators=[DataRequired(), Length(max=200_000)])
    reason = SelectField(_l("Reason"), choices=REASON_CHOICES, default="manual", validators=[DataRequired()])
    note = StringField(_l("Note (why)"), validators=[Optional(), Length(max=200)])


class ImportSuppressionsForm(FlaskForm):
    file = FileField(_l("CSV file (email[,reason])"), validators=[FileRequired(message=_l("Choose a CSV file."))])
    reason = SelectField(_l("Reason for rows without one"), choices=REASON_CHOICES, default="manual",
                         validators=[DataRequired()])
    note = StringField(_l("Note (why)"), validators=[Optional(), Length(max=200)])


class RemoveSuppressionForm(FlaskForm):
    why = StringField(_l("Why may it receive mail again?"), validators=[DataRequired(message=_l("Say why.")), Length(max=200)])


class ExportPersonForm(FlaskForm):
    email = EmailField(_l("Address of the person"), validators=[DataRequired(), Length(max=320)])


class ErasePersonForm(FlaskForm):
    email = EmailField(_l("Address of the person to erase"), validators=[DataRequired(), Length(max=320)])
    confirm = BooleanField(_l("I understand: every stored copy of this address is replaced by its hash, and its contact, "
                              "list memberships and their history are deleted; it cannot be undone."),
                           validators=[InputRequired(message=_l("Tick the box to confirm the erasure."))])
