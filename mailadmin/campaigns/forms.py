"""Forms of the campaign pages. The services do the real validation; these carry CSRF,
labels and sizes so that the browser can help early."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import DateTimeLocalField, EmailField, HiddenField, StringField, TextAreaField
from wtforms.validators import InputRequired, Length, Optional

from mailadmin.campaigns.display import to_utc
from mailadmin.models.types import utcnow
from mailadmin.services.drafts import NAME_MAX, SUBJECT_MAX


class CampaignForm(FlaskForm):
    """Name, subject and bodies of a draft."""

    name = StringField(_l("Campaign name"), validators=[Length(max=NAME_MAX)])
    subject = StringField(_l("Subject"), validators=[Length(max=SUBJECT_MAX)])
    body_text = TextAreaField(_l("Text body"))
    body_html = TextAreaField(_l("HTML body (optional)"))


class CancelCampaignForm(FlaskForm):
    """Cancel is final: the confirmation page's form carries `confirm`, a bare button does not.
    `next` is where to go back to (the owner's page or the admin list)."""

    next = HiddenField()
    confirm = HiddenField(default="")


class ImportForm(FlaskForm):
    """A CSV file, pasted lines, or both."""

    file = FileField(_l("CSV file"))
    text = TextAreaField(_l("Or paste addresses, one per line"))


class TestEmailForm(FlaskForm):
    """Where the test email goes."""

    __test__ = False  # not a pytest test class

    to_address = EmailField(_l("Send the test email to"), validators=[Length(max=320)])


class StartForm(FlaskForm):
    """Confirmation of a start, with an optional start time typed in the viewer's time zone.

    `tz` is the browser's IANA zone, filled in by static/localtime.js; without it the time is UTC.
    """

    scheduled_at = DateTimeLocalField(
        _l("Start at (optional)"), format=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"], validators=[Optional()]
    )
    tz = HiddenField()

    def scheduled_at_utc(self, zone: ZoneInfo) -> datetime | None:
        """The chosen start time as an aware UTC datetime, or None to start now."""
        return to_utc(self.scheduled_at.data, zone) if self.scheduled_at.data else None

    def check_in_future(self, zone: ZoneInfo) -> bool:
        """False (with the field's error) when the chosen time has already passed."""
        moment = self.scheduled_at_utc(zone)
        if moment is not None and moment <= utcnow():
            self.scheduled_at.errors = [gettext("The start time must be in the future (times are in your time zone, %(zone)s).", zone=zone.key)]
            return False
        return True


class RescheduleForm(FlaskForm):
    """A new start time for a scheduled campaign, typed in the viewer's zone (`tz`, as on the start page).

    The service refuses a time that has passed; this form only reads the typed value.
    """

    start_at = DateTimeLocalField(
        _l("New start time"), format=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"],
        invalid_value_message=_l("That is not a time. Type the new start as a date and a time, e.g. 2027-03-01 09:30."),
        validators=[InputRequired(_l("Type the new start time (date and time)."))],
    )
    tz = HiddenField()

    def start_at_utc(self, zone: ZoneInfo) -> datetime:
        """The typed time as an aware UTC datetime."""
        return to_utc(self.start_at.data, zone)
