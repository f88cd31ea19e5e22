"""Forms of the campaign pages. The services do the real validation; these carry CSRF,
labels and sizes so that the browser can help early."""

from __future__ import annotations

from datetime import UTC, datetime

from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import DateTimeLocalField, EmailField, StringField, TextAreaField
from wtforms.validators import Length, Optional, ValidationError

from mailadmin.models.types import utcnow
from mailadmin.services.drafts import NAME_MAX, SUBJECT_MAX


class CampaignForm(FlaskForm):
    """Name, subject and bodies of a draft."""

    name = StringField("Campaign name", validators=[Length(max=NAME_MAX)])
    subject = StringField("Subject", validators=[Length(max=SUBJECT_MAX)])
    body_text = TextAreaField("Text body")
    body_html = TextAreaField("HTML body (optional)")


class ImportForm(FlaskForm):
    """A CSV file, pasted lines, or both."""

    file = FileField("CSV file")
    text = TextAreaField("Or paste addresses, one per line")


class TestEmailForm(FlaskForm):
    """Where the test email goes."""

    __test__ = False  # not a pytest test class

    to_address = EmailField("Send the test email to", validators=[Length(max=320)])


class StartForm(FlaskForm):
    """Confirmation of a start, with an optional start time in UTC."""

    scheduled_at = DateTimeLocalField(
        "Start at (UTC, optional)", format=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"], validators=[Optional()]
    )

    def validate_scheduled_at(self, field: DateTimeLocalField) -> None:
        if field.data is not None and field.data.replace(tzinfo=UTC) <= utcnow():
            raise ValidationError("The start time must be in the future (times are UTC).")

    def scheduled_at_utc(self) -> datetime | None:
        """The chosen start time as an aware UTC datetime, or None to start now."""
        return self.scheduled_at.data.replace(tzinfo=UTC) if self.scheduled_at.data else None
