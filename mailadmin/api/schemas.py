"""The API's shared fields and the campaign resources' schemas: each validates a request or
serializes an answer, and the OpenAPI description is generated from them."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime

import marshmallow as ma
import sqlalchemy as sa

from mailadmin.models.campaign import CAMPAIGN_STATUSES, OUTCOME_COUNTS, RECIPIENT_STATUSES, Campaign, Recipient
from mailadmin.services.drafts import BODY_MAX, NAME_MAX, SUBJECT_MAX

# A NUL or a lone surrogate cannot be stored (PostgreSQL text, UTF-8): refused as input, never a 500.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class Text(ma.fields.String):
    """A string that can be stored as text: no NUL character, no lone surrogate."""

    default_error_messages = {"unstorable": "Contains a character that cannot be stored (NUL or a lone surrogate)."}

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        if _UNSTORABLE.search(text):
            raise self.make_error("unstorable")
        return text


class Moment(ma.fields.AwareDateTime):
    """A moment with its zone, in UTC; one beyond what can be stored is taken as the first or last storable."""

    def _deserialize(self, value, attr, data, **kwargs):
        moment = super()._deserialize(value, attr, data, **kwargs)
        try:
            return moment.astimezone(UTC)
        except OverflowError:
            return datetime.min.replace(tzinfo=UTC) if moment.year < 2 else datetime.max.replace(tzinfo=UTC)


_FIELD_OF_TYPE = {int: ma.fields.Integer, str: ma.fields.String, datetime: ma.fields.AwareDateTime, dict: ma.fields.Dict}


def stored_columns(model: type, *names: str) -> dict[str, ma.fields.Field]:
    """Answer fields for the `model`'s columns `names`, shown as stored: always present, null where the
    column may be."""
    columns = sa.inspect(model).columns

    def field(column: sa.Column) -> ma.fields.Field:
        stored_as = getattr(column.type, "impl_instance", column.type)  # a TypeDecorator: what it stores
        kind = dict if isinstance(stored_as, sa.JSON) else stored_as.python_type
        return _FIELD_OF_TYPE[kind](required=True, allow_none=bool(column.nullable))

    return {name: field(columns[name]) for name in names}


def one_of(values, **kwargs) -> ma.fields.String:
    """A string that must be one of `values` (a status, a reason, a mode)."""
    return ma.fields.String(validate=ma.validate.OneOf(values), **kwargs)


def _ids() -> ma.fields.List:
    return ma.fields.List(ma.fields.Integer(validate=ma.validate.Range(1, 2**31 - 1)), load_default=list,
                          validate=ma.validate.Length(max=20))


class TargetsSchema(ma.Schema):
    """The lists and segments a campaign sends to, and the ones it leaves out (ids)."""

    lists = _ids()
    segments = _ids()
    exclude_lists = _ids()
    exclude_segments = _ids()


class CampaignContentSchema(ma.Schema):
    """A draft's content and audience, as created."""

    name = Text(required=True, validate=ma.validate.Length(1, NAME_MAX))
    subject = Text(required=True, validate=ma.validate.Length(1, SUBJECT_MAX))
    body_text = Text(required=True, validate=ma.validate.Length(1, BODY_MAX))
    body_html = Text(load_default=None, allow_none=True, validate=ma.validate.Length(max=BODY_MAX))
    targets = ma.fields.Nested(TargetsSchema, load_default=None, allow_none=True)


class CampaignPatchSchema(ma.Schema):
    """A draft's fields to change; those left out stay as they are."""

    name = Text(validate=ma.validate.Length(1, NAME_MAX))
    subject = Text(validate=ma.validate.Length(1, SUBJECT_MAX))
    body_text = Text(validate=ma.validate.Length(1, BODY_MAX))
    body_html = Text(allow_none=True, validate=ma.validate.Length(max=BODY_MAX))
    targets = ma.fields.Nested(TargetsSchema)


def counts(names: Iterable[str]) -> dict[str, ma.fields.Integer]:
    """A required whole-number field for each of `names`: the counts an answer carries."""
    return {name: ma.fields.Integer(required=True) for name in names}


# A campaign's live figures, read from its counters (no count over its recipients).
CampaignStatsSchema = ma.Schema.from_dict({
    "status": one_of(CAMPAIGN_STATUSES, required=True),
    "reason": ma.fields.String(required=True, allow_none=True, metadata={"description": "Why it waits or is paused"}),
    **counts(("recipients_total", *OUTCOME_COUNTS)),
    "pending": ma.fields.Integer(required=True, metadata={"description": "Not yet sent, failed, skipped or unknown"}),
    "progress_percent": ma.fields.Integer(required=True),
    "started_at": ma.fields.AwareDateTime(required=True, allow_none=True),
    "finished_at": ma.fields.AwareDateTime(required=True, allow_none=True),
}, name="CampaignStatsSchema")


# A campaign as the API shows it.
CampaignSchema = ma.Schema.from_dict({
    **stored_columns(Campaign, "id", "owner_id", "name", "subject", "body_text", "body_html"),
    "status": one_of(CAMPAIGN_STATUSES, required=True),
    **stored_columns(Campaign, "created_at", "scheduled_at"),
    "targets": ma.fields.Nested(TargetsSchema, required=True),
    "stats": ma.fields.Nested(CampaignStatsSchema, required=True),
}, name="CampaignSchema")


class CampaignListArgs(ma.Schema):
    """Filters of the campaigns list (with `limit` and `cursor`)."""

    status = one_of(CAMPAIGN_STATUSES)
    owner_id = ma.fields.Integer(validate=ma.validate.Range(1, 2**31 - 1))
    created_after = Moment()
    created_before = Moment()


RecipientSchema = ma.Schema.from_dict({
    **stored_columns(Recipient, "id", "email", "name"),
    "status": one_of(RECIPIENT_STATUSES, required=True),
    **stored_columns(Recipient, "attempts", "last_error", "smtp_code", "sent_at"),
}, name="RecipientSchema")


class RecipientListArgs(ma.Schema):
    status = one_of(RECIPIENT_STATUSES)


class TestEmailArgs(ma.Schema):
    to = Text(required=True, validate=ma.validate.Length(1, 320))


class TestEmailResultSchema(ma.Schema):
    to_address = ma.fields.String(required=True)
    message_id = ma.fields.String(required=True)


class StartArgs(ma.Schema):
    scheduled_at = Moment(load_default=None, allow_none=True,
                                           metadata={"description": "Start later, at this moment (with a zone)"})


class EstimateSchema(ma.Schema):
    """When the last message should go, from the real quota and send speed (as the start page says)."""

    finishes_at = ma.fields.AwareDateTime(required=True)
    duration_seconds = ma.fields.Integer(required=True)
    max_per_hour = ma.fields.Integer(required=True)
    waits_for_quota = ma.fields.Boolean(required=True)


class StartResultSchema(ma.Schema):
    """A started campaign and the start page's confirmation figures."""

    campaign = ma.fields.Nested(CampaignSchema, required=True)
    recipients = ma.fields.Integer(required=True, metadata={"description": "Recipients the start queued"})
    max_recipients = ma.fields.Integer(required=True, metadata={"description": "The size cap"})
    starts_per_hour = ma.fields.Integer(required=True, metadata={"description": "The per-user start throttle"})
    estimate = ma.fields.Nested(EstimateSchema, required=True, allow_none=True)


class TransitionSchema(ma.Schema):
    """What a pause, resume or cancel did; `changed` false when the campaign already was so."""

    changed = ma.fields.Boolean(required=True)
    from_status = ma.fields.String(required=True)
    to_status = ma.fields.String(required=True)
    campaign = ma.fields.Nested(CampaignSchema, required=True)
