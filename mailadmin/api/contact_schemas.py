"""Schemas of the contacts resources."""

from __future__ import annotations

import re
from dataclasses import fields

import marshmallow as ma

from mailadmin.api.schemas import _UNSTORABLE, Text, counts, one_of, stored_columns
from mailadmin.models import Contact
from mailadmin.services.audiences.upserts import MAX_ROWS, MODES, NEW_MEMBER_STATUSES, RowOutcome
from mailadmin.services.privacy import ErasureReport

ATTRIBUTE_KEY_MAX = 64
ATTRIBUTE_TEXT_MAX = 1000
ATTRIBUTES_MAX = 100


def _check_attributes(attributes: dict) -> None:
    if len(attributes) > ATTRIBUTES_MAX:
        raise ma.ValidationError(f"At most {ATTRIBUTES_MAX} attributes.")
    for key, value in attributes.items():
        if isinstance(value, bool) or isinstance(value, int | float) and abs(value) < 1e15:
            continue
        if isinstance(value, str) and len(value) <= ATTRIBUTE_TEXT_MAX and not _UNSTORABLE.search(value):
            continue
        raise ma.ValidationError(f"Attribute {key!r}: a text (up to {ATTRIBUTE_TEXT_MAX} characters), a number "
                                 "or a boolean.")


def _attributes(**kwargs) -> ma.fields.Dict:
    """Free attributes by name: text, numbers and booleans."""
    return ma.fields.Dict(keys=Text(validate=ma.validate.Regexp(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")),
                          values=ma.fields.Raw(metadata={"type": ["string", "number", "boolean"]}),
                          validate=_check_attributes, **kwargs)


ContactSchema = ma.Schema.from_dict(
    stored_columns(Contact, "id", "email", "name", "attributes", "created_at", "updated_at"), name="ContactSchema")


class _Into(ma.Schema):
    list_id = ma.fields.Integer(load_default=None, allow_none=True, validate=ma.validate.Range(1, 2**31 - 1),
                                metadata={"description": "The list they go into (required for a manager)"})
    status = one_of([str(s) for s in NEW_MEMBER_STATUSES], load_default="subscribed",
                    metadata={"description": "New members' status; an existing member keeps theirs"})
    mode = one_of(MODES, load_default="update",
                  metadata={"description": "Existing contacts' attributes: merged, replaced or left alone"})


class ContactInputSchema(ma.Schema):
    email = Text(required=True, validate=ma.validate.Length(1, 320))
    name = Text(load_default=None, allow_none=True, validate=ma.validate.Length(max=200))
    attributes = _attributes(load_default=None, allow_none=True)


class ContactUpsertSchema(ContactInputSchema, _Into):
    """One contact, created or updated by its address."""


_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
_ROW_JSON_SCHEMA = {
    "type": "object", "required": ["email"], "additionalProperties": False,
    "properties": {
        "email": {"type": "string", "minLength": 1, "maxLength": 320},
        "name": {"type": ["string", "null"], "maxLength": 200},
        "attributes": {"type": ["object", "null"], "maxProperties": ATTRIBUTES_MAX,
                       "propertyNames": {"pattern": _KEY.pattern},
                       "additionalProperties": {"type": ["string", "number", "boolean"]}},
    },
}


class ContactRowField(ma.fields.Field):
    """One row of a bulk upsert, checked in plain Python: the same rules as ContactInputSchema, without
    a schema object per row (10,000 rows are checked in milliseconds, not a second)."""

    def _deserialize(self, value, attr, data, **kwargs) -> dict:
        if not isinstance(value, dict):
            raise ma.ValidationError("A contact is an object with an email.")
        if unknown := set(value) - {"email", "name", "attributes"}:
            raise ma.ValidationError({key: ["Unknown field."] for key in unknown})
        email, name, attributes = value.get("email"), value.get("name"), value.get("attributes")
        if not isinstance(email, str) or not 1 <= len(email) <= 320 or _UNSTORABLE.search(email):
            raise ma.ValidationError({"email": ["An address of 1 to 320 characters."]})
        if name is not None and (not isinstance(name, str) or len(name) > 200 or _UNSTORABLE.search(name)):
            raise ma.ValidationError({"name": ["A text of at most 200 characters."]})
        if attributes is not None:
            if not isinstance(attributes, dict) or not all(isinstance(k, str) and _KEY.match(k) for k in attributes):
                raise ma.ValidationError({"attributes": ["An object of attributes by name."]})
            try:
                _check_attributes(attributes)
            except ma.ValidationError as error:
                raise ma.ValidationError({"attributes": error.messages}) from None
        return {"email": email, "name": name, "attributes": attributes}


class BulkUpsertSchema(_Into):
    contacts = ma.fields.List(ContactRowField(metadata=_ROW_JSON_SCHEMA), required=True,
                              validate=ma.validate.Length(1, MAX_ROWS))


class RowResultSchema(ma.Schema):
    row = ma.fields.Integer(required=True, metadata={"description": "Index in `contacts`, from 0"})
    email = ma.fields.String(required=True, allow_none=True)
    outcome = one_of([str(o) for o in RowOutcome], required=True)
    contact_id = ma.fields.Integer(required=True, allow_none=True)
    error = ma.fields.String(required=True, allow_none=True)


# How many rows each outcome had, and each row's result.
BulkResultSchema = ma.Schema.from_dict({
    **counts(outcome.value for outcome in RowOutcome),
    "results": ma.fields.List(ma.fields.Nested(RowResultSchema), required=True),
}, name="BulkResultSchema")


class ContactPatchSchema(ma.Schema):
    name = Text(validate=ma.validate.Length(max=200))
    attributes = _attributes()
    replace_attributes = ma.fields.Boolean(load_default=False)


class ContactSearchArgs(ma.Schema):
    search = Text(validate=ma.validate.Length(max=200),
                  metadata={"description": "Part of an address or name, or `key=value` on an attribute"})
    email = Text(validate=ma.validate.Length(max=320), metadata={"description": "Exactly this address"})


class DeletedSchema(ma.Schema):
    deleted = ma.fields.Boolean(required=True, metadata={
        "description": "True: the contact is gone; false: a manager's delete took it off their lists only"})


# What an erasure replaced or deleted, as the privacy service reports it.
ErasedSchema = ma.Schema.from_dict(counts(field.name for field in fields(ErasureReport)), name="ErasedSchema")
