"""Forms of the audience pages. The services do the real validation; these carry CSRF, labels and
sizes so that the browser can help early."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import BooleanField, EmailField, RadioField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Length

from mailadmin.services.audiences.bounds import DESCRIPTION_MAX, NAME_MAX

STATUS_CHOICES = [SelectChoice("subscribed", _l("Subscribed")), SelectChoice("unconfirmed", _l("Unconfirmed")),
                  SelectChoice("unsubscribed", _l("Unsubscribed"))]
# A member's status and a list's opt-in as the pages write them (the stored values are codes).
MEMBER_STATUS_WORDS = {"subscribed": _l("subscribed"), "unconfirmed": _l("unconfirmed"), "unsubscribed": _l("unsubscribed")}
OPT_IN_WORDS = {"single": _l("single"), "double": _l("double")}
# Where a contact or a membership change came from (models.audience.ChangeSource), as the contact page says it.
CHANGE_SOURCE_WORDS = {"page": _l("page"), "import": _l("import"), "api": _l("API"), "form": _l("form"),
                       "confirmation": _l("confirmation"), "unsubscribe_link": _l("unsubscribe link"),
                       "preferences": _l("preference page"), "bounce": _l("bounce"), "admin": _l("admin")}
IMPORT_STATE_WORDS = {"queued": _l("queued"), "reading": _l("reading the columns"), "loading": _l("loading"),
                      "done": _l("done"), "failed": _l("failed")}


def import_state_words() -> dict[str, str]:
    """An import's states in the viewer's language (also for static/audience_import.js, which updates the state)."""
    return {state: str(words) for state, words in IMPORT_STATE_WORDS.items()}


class ListForm(FlaskForm):
    """A list's name, description, opt-in and (admins only) the shared switch."""

    name = StringField(_l("Name"), validators=[Length(max=NAME_MAX)])
    description = TextAreaField(_l("Description"), validators=[Length(max=DESCRIPTION_MAX)])
    opt_in = RadioField(_l("Opt-in"), choices=[SelectChoice("single", _l("Single: the form subscribes at once")),
                                           SelectChoice("double", _l("Double: a confirmation link first"))], default="single")
    shared = BooleanField(_l("Shared with every manager (they may send to it, not change it)"))


class AddMemberForm(FlaskForm):
    """One address put on the list."""

    email = EmailField(_l("Email address"), validators=[Length(max=320)])
    name = StringField(_l("Name (optional)"), validators=[Length(max=NAME_MAX)])
    status = SelectField(_l("Status"), choices=STATUS_CHOICES[:2], default="subscribed")


class MemberStatusForm(FlaskForm):
    """A member moved to another status (the history keeps the change)."""

    status = SelectField(_l("Status"), choices=STATUS_CHOICES)


class ConfirmForm(FlaskForm):
    """A bare POST (remove a member, delete a list): CSRF only."""


class ListImportForm(FlaskForm):
    """A CSV file, what to do with existing contacts, and the status of new members."""

    file = FileField(_l("CSV file"))
    mode = RadioField(_l("Existing contacts"), default="update", choices=[
        SelectChoice("add", _l("Add new contacts only (existing contacts stay as they are)")),
        SelectChoice("update", _l("Update attributes (the file's values are merged into the stored ones)")),
        SelectChoice("replace", _l("Replace attributes (only the file's values are kept)")),
    ])
    status = RadioField(_l("New members are"), default="subscribed", choices=[
        SelectChoice("subscribed", _l("Subscribed")),
        SelectChoice("unconfirmed", _l("Unconfirmed (they get the list's confirmation mail first)")),
    ])
