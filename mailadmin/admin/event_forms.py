"""Forms of the events-out pages (endpoints). Every button is a POST form with a CSRF token."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, SelectMultipleField, StringField, URLField, widgets
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length

from mailadmin.models.events import SUBSCRIBABLE_TYPES
from mailadmin.services.events.addresses import URL_MAX
from mailadmin.services.events.endpoints import DESCRIPTION_MAX


class EndpointForm(FlaskForm):
    url = URLField(_l("URL"), validators=[DataRequired(), Length(max=URL_MAX)],
                   description=_l("Where the events are POSTed. In production: https:// and a public address."))
    description = StringField(_l("Description"), validators=[Length(max=DESCRIPTION_MAX)])
    event_types = SelectMultipleField(
        _l("Events"), choices=[SelectChoice(t.value, t.value) for t in SUBSCRIBABLE_TYPES],
        validators=[DataRequired(message=_l("Choose at least one event type."))],
        widget=widgets.ListWidget(prefix_label=False), option_widget=widgets.CheckboxInput(),
    )
    active = BooleanField(_l("Active"), default=True)
