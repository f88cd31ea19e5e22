"""/api/v1/suppressions (admins: search, add, remove — the suppression page's services) and
/api/v1/bounces (bounce and complaint reports: an admin's all, a manager's on their campaigns)."""

from __future__ import annotations

import csv
import io

import marshmallow as ma
from sqlalchemy import select

from mailadmin.api.auth import api_user
from mailadmin.api.blueprint import NOT_FOUND, ApiBlueprint
from mailadmin.api.pagination import narrowed, page_of, page_schema
from mailadmin.api.problems import ApiProblem
from mailadmin.api.schemas import Moment, Text, one_of
from mailadmin.models import BounceEvent, Campaign, Suppression
from mailadmin.models.suppression import REASON_MANUAL, SUPPRESSION_REASONS
from mailadmin.services import suppressions

blp = ApiBlueprint("api_suppressions", __name__, url_prefix="/api/v1",
                   description="The suppression list (admins) and bounce and complaint reports")


class SuppressionSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    email = ma.fields.String(required=True, metadata={"description": "The address, or its erasure marker"})
    reason = ma.fields.String(required=True)
    source = ma.fields.String(required=True, allow_none=True)
    note = ma.fields.String(required=True, allow_none=True)
    campaign_id = ma.fields.Integer(required=True, allow_none=True)
    created_at = ma.fields.AwareDateTime(required=True)


class SuppressionSearchArgs(ma.Schema):
    search = Text(load_default="", validate=ma.validate.Length(max=320),
                  metadata={"description": "Part of an address, or @domain"})
    reason = one_of(["", *SUPPRESSION_REASONS], load_default="")


class SuppressionAddSchema(ma.Schema):
    emails = ma.fields.List(Text(validate=ma.validate.Length(1, 320)), required=True,
                            validate=ma.validate.Length(1, 1000))
    reason = one_of(SUPPRESSION_REASONS, load_default=REASON_MANUAL)
    note = Text(load_default="", validate=ma.validate.Length(max=200))


class SuppressionAddResult(ma.Schema):
    added = ma.fields.Integer(required=True)
    already = ma.fields.Integer(required=True)
    refused = ma.fields.List(ma.fields.String(), required=True)


class RemoveArgs(ma.Schema):
    why = Text(required=True, validate=ma.validate.Length(1, 200),
               metadata={"description": "Why the address may receive mail again (audit log)"})


class BounceSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    kind = ma.fields.String(required=True, metadata={"description": "hard, soft or complaint"})
    source = ma.fields.String(required=True)
    email_hash = ma.fields.String(required=True, metadata={"description": "The address's erasure hash"})
    campaign_id = ma.fields.Integer(required=True, allow_none=True)
    recipient_id = ma.fields.Integer(required=True, allow_none=True)
    status_code = ma.fields.String(required=True, allow_none=True)
    created_at = ma.fields.AwareDateTime(required=True)


class BounceArgs(ma.Schema):
    kind = one_of(["hard", "soft", "complaint"])
    campaign_id = ma.fields.Integer(validate=ma.validate.Range(1, 2**31 - 1))
    since = Moment()


def _admin_only() -> None:
    if not api_user().is_admin:
        raise ApiProblem(403, "admins-only", "The suppression list is for admins.")


@blp.operation("GET", "/suppressions", "read", page_schema(SuppressionSchema, "SuppressionPage"),
               query=SuppressionSearchArgs, paged=True)
def list_suppressions(args: dict, paging: dict):
    """The suppression list, newest first, searched by address and reason (admins)."""
    _admin_only()
    query = suppressions.suppression_query(suppressions.SuppressionFilter(query=args["search"], reason=args["reason"]))
    return page_of(query, Suppression.id, paging)


@blp.operation("POST", "/suppressions", "write", SuppressionAddResult, body=SuppressionAddSchema, idempotent=True)
def add_suppressions(args: dict):
    """Put up to 1,000 addresses on the suppression list (admins); a bad address is refused by its row."""
    _admin_only()
    text = io.StringIO()
    csv.writer(text).writerows([address, args["reason"]] for address in args["emails"])
    rows = suppressions.read_address_rows("email,reason\n" + text.getvalue(), args["reason"])
    added, already = suppressions.add_address_rows(rows, args["note"], api_user(), source="admin")
    return {"added": added, "already": already, "refused": rows.refused}


@blp.operation("DELETE", "/suppressions/<int:suppression_id>", "write", status=204, query=RemoveArgs,
               errors=NOT_FOUND)
def remove_suppression(args: dict, suppression_id: int):
    """Take an entry off the suppression list, saying why (admins)."""
    _admin_only()
    if not 0 < suppression_id < 2**31:
        raise ApiProblem(404, "not-found", "No such entry.")
    suppressions.remove_suppression(suppression_id, args["why"], api_user())


@blp.operation("GET", "/bounces", "read", page_schema(BounceSchema, "BouncePage"), query=BounceArgs, paged=True)
def list_bounces(args: dict, paging: dict):
    """Bounce and complaint reports, newest first: an admin's all, a manager's on their own campaigns."""
    query = select(BounceEvent)
    if not api_user().is_admin:
        query = query.join(Campaign, Campaign.id == BounceEvent.campaign_id).where(Campaign.owner_id == api_user().id)
    return page_of(narrowed(query, args, {
        "kind": lambda kind: BounceEvent.kind == kind, "campaign_id": lambda id_: BounceEvent.campaign_id == id_,
        "since": lambda moment: BounceEvent.created_at >= moment}), BounceEvent.id, paging)
