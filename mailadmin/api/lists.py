"""/api/v1/lists and /api/v1/segments: lists (CRUD, members changed in bulk) and segments (CRUD,
count, sample), through the audiences services and their access rule."""

from __future__ import annotations

from dataclasses import asdict

import marshmallow as ma
from flask import url_for

from mailadmin.api.auth import api_user
from mailadmin.api.blueprint import NOT_FOUND_OR_CONFLICT, ApiBlueprint
from mailadmin.api.contact_schemas import ContactSchema, RowResultSchema
from mailadmin.api.problems import ApiProblem
from mailadmin.api.schemas import Text, one_of
from mailadmin.extensions import db
from mailadmin.services.audiences import lists, segments, upserts
from mailadmin.services.ownership import MAX_ID

blp = ApiBlueprint("api_lists", __name__, url_prefix="/api/v1",
                   description="Lists with their members, and segments: saved filters over contacts")


class ListSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    name = Text(required=True, validate=ma.validate.Length(1, lists.NAME_MAX))
    description = Text(load_default="", validate=ma.validate.Length(max=lists.DESCRIPTION_MAX))
    opt_in = one_of(["single", "double"], load_default="single")
    shared = ma.fields.Boolean(load_default=False, metadata={"description": "An admin's list every manager may use"})
    owner_id = ma.fields.Integer(required=True, allow_none=True, dump_only=True)
    subscribed = ma.fields.Integer(dump_only=True)
    unconfirmed = ma.fields.Integer(dump_only=True)
    unsubscribed = ma.fields.Integer(dump_only=True)


class ListInputSchema(ListSchema):
    class Meta:
        exclude = ("id", "owner_id", "subscribed", "unconfirmed", "unsubscribed")


class MembersChangeSchema(ma.Schema):
    action = one_of(upserts.MEMBER_ACTIONS, required=True)
    status = one_of(["subscribed", "unconfirmed", "unsubscribed"], load_default="subscribed")
    emails = ma.fields.List(Text(validate=ma.validate.Length(1, 320)), required=True,
                            validate=ma.validate.Length(1, upserts.MAX_MEMBER_ROWS))


class MembersResultSchema(ma.Schema):
    results = ma.fields.List(ma.fields.Nested(RowResultSchema), required=True)


class SegmentSchema(ma.Schema):
    id = ma.fields.Integer(dump_only=True)
    name = Text(required=True, validate=ma.validate.Length(1, 200))
    filter = ma.fields.Dict(required=True, metadata={"description": "The segment's conditions (see the editor)"})


class SegmentCount(ma.Schema):
    count = ma.fields.Integer(required=True)


class SegmentSample(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(ContactSchema), required=True)


def _summary(list_id: int) -> dict:
    if not 0 < list_id <= MAX_ID:
        raise ApiProblem(404, "not-found", "No such list.")
    found = lists.list_summaries(api_user(), list_id)
    if not found:
        raise ApiProblem(404, "not-found", "No such list.")
    summary = found[0]
    return {**{c: getattr(summary.mailing_list, c) for c in ("id", "name", "description", "opt_in", "shared",
                                                              "owner_id")},
            "subscribed": summary.subscribed, "unconfirmed": summary.unconfirmed, "unsubscribed": summary.unsubscribed}


@blp.operation("GET", "/lists", "read", ListSchema(many=True))
def list_lists():
    """The lists this user may see, with their members by status."""
    return [_summary(summary.mailing_list.id) for summary in lists.list_summaries(api_user())]


@blp.operation("POST", "/lists", "write", ListSchema, status=201, body=ListInputSchema, idempotent=True)
def create_list(args: dict):
    """A new list of this user's (only an admin's may be shared)."""
    created = lists.create_list(api_user(), args["name"], args["description"], args["opt_in"], args["shared"])
    return _summary(created.id), 201, {"Location": url_for("api_lists.get_list", list_id=created.id)}


@blp.operation("GET", "/lists/<int:list_id>", "read", ListSchema, errors=NOT_FOUND_OR_CONFLICT)
def get_list(list_id: int):
    """One list with its members by status."""
    return _summary(list_id)


@blp.operation("PUT", "/lists/<int:list_id>", "write", ListSchema, body=ListInputSchema, errors=NOT_FOUND_OR_CONFLICT)
def update_list(args: dict, list_id: int):
    """Rename, describe, change the opt-in of a list this user may edit."""
    _summary(list_id)
    lists.update_list(api_user(), list_id, args["name"], args["description"], args["opt_in"], args["shared"])
    return _summary(list_id)


@blp.operation("DELETE", "/lists/<int:list_id>", "write", status=204, errors=NOT_FOUND_OR_CONFLICT)
def delete_list(list_id: int):
    """Delete a list this user may edit with its memberships (the contacts stay)."""
    _summary(list_id)
    lists.delete_list(api_user(), list_id)


@blp.operation("POST", "/lists/<int:list_id>/members", "write", MembersResultSchema, body=MembersChangeSchema,
               errors=NOT_FOUND_OR_CONFLICT)
def change_members(args: dict, list_id: int):
    """Add up to 1,000 addresses, remove them (unsubscribed, kept on record) or change their status."""
    _summary(list_id)
    results = upserts.change_members(api_user(), list_id, args["action"], args["emails"], args["status"])
    return {"results": [asdict(r) | {"outcome": r.outcome.value} for r in results]}


def _segment(segment_id: int):
    if not 0 < segment_id <= MAX_ID:
        raise ApiProblem(404, "not-found", "No such segment.")
    return segments.get_segment_for(api_user(), segment_id)


@blp.operation("GET", "/segments", "read", SegmentSchema(many=True))
def list_segments():
    """The segments this user may see."""
    return db.session.scalars(segments.visible_segments(api_user())).all()


@blp.operation("POST", "/segments", "write", SegmentSchema, status=201, body=SegmentSchema, idempotent=True)
def create_segment(args: dict):
    """Save a segment; its filter is validated (a wrong condition answers 422)."""
    segment = segments.save_segment(api_user(), args["name"], args["filter"])
    return segment, 201, {"Location": url_for("api_lists.get_segment", segment_id=segment.id)}


@blp.operation("GET", "/segments/<int:segment_id>", "read", SegmentSchema, errors=NOT_FOUND_OR_CONFLICT)
def get_segment(segment_id: int):
    return _segment(segment_id)


@blp.operation("PUT", "/segments/<int:segment_id>", "write", SegmentSchema, body=SegmentSchema,
               errors=NOT_FOUND_OR_CONFLICT)
def update_segment(args: dict, segment_id: int):
    _segment(segment_id)
    return segments.save_segment(api_user(), args["name"], args["filter"], segment_id)


@blp.operation("DELETE", "/segments/<int:segment_id>", "write", status=204, errors=NOT_FOUND_OR_CONFLICT)
def delete_segment(segment_id: int):
    _segment(segment_id)
    segments.delete_segment(api_user(), segment_id)


@blp.operation("GET", "/segments/<int:segment_id>/count", "read", SegmentCount, errors=NOT_FOUND_OR_CONFLICT)
def segment_count(segment_id: int):
    """How many contacts the segment matches now."""
    return {"count": segments.count_matching(_segment(segment_id).filter, api_user())}


@blp.operation("GET", "/segments/<int:segment_id>/sample", "read", SegmentSample, errors=NOT_FOUND_OR_CONFLICT)
def segment_sample(segment_id: int):
    """The newest contacts the segment matches (up to 10)."""
    return {"items": segments.sample_matching(_segment(segment_id).filter, api_user())}
