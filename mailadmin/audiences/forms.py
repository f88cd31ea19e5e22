"""Forms of the audience pages. The services do the real validation; these carry CSRF, labels and
sizes so that the browser can help early."""

from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import BooleanField, EmailField, RadioField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Length

from mailadmin.services.audiences.bounds import DESCRIPTION_MAX, NAME_MAX

STATUS_CHOICES = [SelectChoice("subscribed", "Subscribed"), SelectChoice("unconfirmed", "Unconfirmed"),
                  SelectChoice("unsubscribed", "Unsubscribed")]


class ListForm(FlaskForm):
    """A list's name, description, opt-in and (admins only) the shared switch."""

    name = StringField("Name", validators=[Length(max=NAME_MAX)])
    description = TextAreaField("Description", validators=[Length(max=DESCRIPTION_MAX)])
    opt_in = RadioField("Opt-in", choices=[SelectChoice("single", "Single: the form subscribes at once"),
                                           SelectChoice("double", "Double: a confirmation link first")], default="single")
    shared = BooleanField("Shared with every manager (they may send to it, not change it)")


class AddMemberForm(FlaskForm):
    """One address put on the list."""

    email = EmailField("Email address", validators=[Length(max=320)])
    name = StringField("Name (optional)", validators=[Length(max=NAME_MAX)])
    status = SelectField("Status", choices=STATUS_CHOICES[:2], default="subscribed")


class MemberStatusForm(FlaskForm):
    """A member moved to another status (the history keeps the change)."""

    status = SelectField("Status", choices=STATUS_CHOICES)


class ConfirmForm(FlaskForm):
    """A bare POST (remove a member, delete a list): CSRF only."""


class ListImportForm(FlaskForm):
    """A CSV file, what to do with existing contacts, and the status of new members."""

    file = FileField("CSV file")
    mode = RadioField("Existing contacts", default="update", choices=[
        SelectChoice("add", "Add new contacts only (existing contacts stay as they are)"),
        SelectChoice("update", "Update attributes (the file's values are merged into the stored ones)"),
        SelectChoice("replace", "Replace attributes (only the file's values are kept)"),
    ])
    status = RadioField("New members are", default="subscribed", choices=[
        SelectChoice("subscribed", "Subscribed"),
        SelectChoice("unconfirmed", "Unconfirmed (they get the list's confirmation mail first)"),
    ])
