"""A segment's filter: validated from untrusted JSON, then compiled to a SQLAlchemy condition on contacts.

The JSON shape is `{"match": "all"|"any", "conditions": [condition | group, ...]}`, a group being the
same shape one level down (no deeper). A condition is one of:

    {"field": "list", "op": "subscribed"|"not_subscribed", "value": <list id>}
    {"field": "attribute", "name": "plan", "op": "eq"|"ne"|"contains"|"gt"|"lt"|"is_set"|"in",
     "type": "text"|"number"|"date", "value": ...}
    {"field": "created"|"updated", "op": "before"|"after", "value": "YYYY-MM-DD"}
    {"field": "sent", "op": "within_days"|"not_within_days", "value": <days>}
    {"field": "bounced", "op": "ever"|"never"}

Every value reaches the database as a bound parameter; nothing a manager types becomes SQL text.
Numbers are compared as numbers only where the stored JSON value is a number, dates as their
YYYY-MM-DD prefix (which sorts as the date does), so a stray value never raises on either database.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from flask_babel import gettext, lazy_gettext
from sqlalchemy import ColumnElement, and_, case, cast, exists, false, func, literal, not_, or_, true
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import Numeric, String

from mailadmin.extensions import db
from mailadmin.models.audience import Contact, ListMembership, MembershipStatus
from mailadmin.models.campaign import R_BOUNCED, R_COMPLAINED, R_SENT, Recipient
from mailadmin.models.suppression import REASON_COMPLAINT, REASON_HARD_BOUNCE, Suppression
from mailadmin.models.types import utcnow
from mailadmin.services.audiences.bounds import MAX_CONDITIONS, MAX_DAYS, MAX_IN_VALUES, MAX_TEXT
from mailadmin.services.errors import ErrorKind, ServiceError

ATTRIBUTE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_ -]{0,63}$")
ISO_DAY = "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]"  # SQLite GLOB
ISO_DAY_RE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}"  # PostgreSQL ~

# The refusals' words (in the request's language: the segment editor shows them; English elsewhere).
OP_WORDS = {
    "subscribed": lazy_gettext("subscribed to"), "not_subscribed": lazy_gettext("not subscribed to"),
    "eq": lazy_gettext("equals"), "ne": lazy_gettext("not equals"), "contains": lazy_gettext("contains"),
    "gt": lazy_gettext("greater than"), "lt": lazy_gettext("less than"), "is_set": lazy_gettext("is set"),
    "in": lazy_gettext("in"), "before": lazy_gettext("before"), "after": lazy_gettext("after"),
    "within_days": lazy_gettext("sent within"), "not_within_days": lazy_gettext("not sent within"),
    "ever": lazy_gettext("ever"), "never": lazy_gettext("never"),
}
FIELD_WORDS = {"created": lazy_gettext("created"), "updated": lazy_gettext("updated")}
FIELD_OPS = {
    "list": ("subscribed", "not_subscribed"),
    "attribute": ("eq", "ne", "contains", "gt", "lt", "is_set", "in"),
    "created": ("before", "after"),
    "updated": ("before", "after"),
    "sent": ("within_days", "not_within_days"),
    "bounced": ("ever", "never"),
}
TYPES = ("text", "number", "date")


class SegmentFilterError(ServiceError):
    """A filter refused; `.message` names the condition ("Condition 3: ...")."""


def _refuse(label: str, message: str) -> SegmentFilterError:
    return SegmentFilterError(f"{label}: {message}", ErrorKind.INVALID)


def validate_filter(raw: object, may_use_list: Callable[[int], bool]) -> dict:
    """The filter in its stored (canonical) form; SegmentFilterError names the first wrong condition.
    `may_use_list(list_id)` says whether the manager may use that list."""
    counter = [0]
    return _group(raw, gettext("The filter"), depth=0, may_use_list=may_use_list, counter=counter)


def _group(raw: object, label: str, depth: int, may_use_list, counter: list[int]) -> dict:
    if not isinstance(raw, dict) or set(raw) - {"match", "conditions"}:
        raise _refuse(label, gettext('must be {"match": ..., "conditions": [...]}'))
    match = raw.get("match", "all")
    if match not in ("all", "any"):
        raise _refuse(label, gettext("match must be 'all' or 'any'"))
    conditions = raw.get("conditions")
    if not isinstance(conditions, list):
        raise _refuse(label, gettext("conditions must be a list"))
    checked = []
    for index, item in enumerate(conditions, start=1):
        item_label = gettext("Condition %(num)s", num=index) if depth == 0 else f"{label}.{index}"
        counter[0] += 1
        if counter[0] > MAX_CONDITIONS:
            raise _refuse(item_label, gettext("a segment has at most %(num)s conditions", num=MAX_CONDITIONS))
        if isinstance(item, dict) and "conditions" in item:
            if depth >= 1:
                raise _refuse(item_label, gettext("groups nest one level deep at most"))
            checked.append(_group(item, item_label, 1, may_use_list, counter))
        else:
            checked.append(_condition(item, item_label, may_use_list))
    return {"match": match, "conditions": checked}


def _condition(raw: object, label: str, may_use_list) -> dict:
    if not isinstance(raw, dict):
        raise _refuse(label, gettext("must be an object with a field and an operator"))
    field, op = raw.get("field"), raw.get("op")
    if field not in FIELD_OPS:
        raise _refuse(label, gettext("unknown field %(field)s", field=repr(str(field)[:40])))
    if op not in FIELD_OPS[field]:
        raise _refuse(label, gettext("unknown operator %(op)s for %(field)s", op=repr(str(op)[:40]), field=field))
    value = raw.get("value")
    if field == "list":
        list_id = _whole_number(value, label, gettext("a list"))
        if not may_use_list(list_id):
            raise _refuse(label, gettext("that list does not exist or you may not use it"))
        return {"field": field, "op": op, "value": list_id}
    if field == "attribute":
        return _attribute_condition(raw, label)
    if field in ("created", "updated"):
        return {"field": field, "op": op, "value": _iso_day(value, label, f"{FIELD_WORDS[field]} {OP_WORDS[op]}")}
    if field == "sent":
        days = _whole_number(value, label, gettext("a number of days"))
        if not 1 <= days <= MAX_DAYS:
            raise _refuse(label, gettext("the number of days must be between 1 and %(max)s", max=MAX_DAYS))
        return {"field": field, "op": op, "value": days}
    return {"field": field, "op": op}


def _attribute_condition(raw: dict, label: str) -> dict:
    name, op, kind, value = raw.get("name"), raw["op"], raw.get("type") or "text", raw.get("value")
    if not isinstance(name, str) or not ATTRIBUTE_NAME.match(name):
        raise _refuse(label, gettext("an attribute name is letters, digits, spaces, _ or - (64 at most)"))
    if kind not in TYPES:
        raise _refuse(label, gettext("unknown type %(type)s", type=repr(str(kind)[:20])))
    what = f"{name!r} {OP_WORDS[op]}"
    if op in ("gt", "lt") and kind == "text":
        kind = "number"  # greater/less compare numbers unless a date is asked for
    if op == "contains":
        kind = "text"
    if op == "is_set":
        return {"field": "attribute", "name": name, "op": op}
    if op == "in":
        values = [v.strip() for v in value.split(",")] if isinstance(value, str) else value
        if not isinstance(values, list) or not values or len(values) > MAX_IN_VALUES:
            raise _refuse(label, gettext("%(what)s needs 1 to %(max)s values", what=what, max=MAX_IN_VALUES))
        checked = [_typed(v, kind, label, what) for v in values]
    else:
        checked = _typed(value, kind, label, what)
    return {"field": "attribute", "name": name, "op": op, "type": kind, "value": checked}


def _typed(value: object, kind: str, label: str, what: str) -> object:
    if kind == "number":
        if isinstance(value, bool):
            raise _refuse(label, gettext("%(what)s needs a number", what=what))
        try:
            number = float(value) if isinstance(value, (int, float, str)) else None
        except ValueError:
            number = None
        if number is None or number != number or number in (float("inf"), float("-inf")):
            raise _refuse(label, gettext("%(what)s needs a number", what=what))
        return int(number) if number.is_integer() and abs(number) < 2**53 else number
    if kind == "date":
        return _iso_day(value, label, what)
    if isinstance(value, bool) or not isinstance(value, (str, int, float)) or len(str(value)) > MAX_TEXT:
        raise _refuse(label, gettext("%(what)s needs a text of at most %(max)s characters", what=what, max=MAX_TEXT))
    return str(value)


def _whole_number(value: object, label: str, what: str) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value > 2**31:
        raise _refuse(label, gettext("needs %(what)s", what=what))
    return value


def _iso_day(value: object, label: str, what: str) -> str:
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip()[:10]).isoformat()
        except ValueError:
            pass
    raise _refuse(label, gettext("%(what)s needs a date (YYYY-MM-DD)", what=what))


# --- compiling ------------------------------------------------------------------------------------


def compile_filter(checked: dict, dialect: str | None = None) -> ColumnElement[bool]:
    """The SQLAlchemy condition on `contacts` of a validated filter (bound parameters only)."""
    dialect = dialect or db.session.get_bind().dialect.name
    parts = [
        compile_filter(item, dialect) if "conditions" in item else _compiled(item, dialect)
        for item in checked["conditions"]
    ]
    if not parts:
        return true() if checked["match"] == "all" else false()
    return and_(*parts) if checked["match"] == "all" else or_(*parts)


def _compiled(cond: dict, dialect: str) -> ColumnElement[bool]:
    field, op, value = cond["field"], cond["op"], cond.get("value")
    if field == "list":
        subscribed = exists().where(
            ListMembership.contact_id == Contact.id, ListMembership.list_id == value,
            ListMembership.status == MembershipStatus.SUBSCRIBED.value,
        )
        return subscribed if op == "subscribed" else not_(subscribed)
    if field in ("created", "updated"):
        column = Contact.created_at if field == "created" else Contact.updated_at
        day = datetime.combine(date.fromisoformat(value), datetime.min.time(), tzinfo=UTC)
        return column < day if op == "before" else column >= day + timedelta(days=1)
    if field == "sent":
        since = utcnow() - timedelta(days=value)
        sent = exists().where(
            Recipient.email == Contact.email, Recipient.status.in_((R_SENT, R_BOUNCED, R_COMPLAINED)),
            Recipient.sent_at >= since,
        )
        return sent if op == "within_days" else not_(sent)
    if field == "bounced":
        bounced = or_(
            exists().where(Recipient.email == Contact.email, Recipient.status.in_((R_BOUNCED, R_COMPLAINED))),
            exists().where(Suppression.email == Contact.email,
                           Suppression.reason.in_((REASON_HARD_BOUNCE, REASON_COMPLAINT))),
        )
        return bounced if op == "ever" else not_(bounced)
    return _attribute(cond, dialect)


def _attribute(cond: dict, dialect: str) -> ColumnElement[bool]:
    name, op, kind, value = cond["name"], cond["op"], cond.get("type", "text"), cond.get("value")
    text = _text_of(name, dialect)
    if op == "is_set":
        return text.is_not(None)
    if op == "contains":
        return func.lower(text).contains(str(value).lower(), autoescape=True)
    compared = {"number": _number_of, "date": _day_of}.get(kind, lambda n, d: text)(name, dialect)
    # Decimal: an exact number on PostgreSQL's numeric side (a float parameter there can miss 40.5).
    bound = (lambda v: Decimal(str(v))) if kind == "number" else str
    if op == "in":
        return compared.in_([bound(v) for v in value])
    if op == "eq":
        return compared == bound(value)
    if op == "ne":
        return or_(compared.is_(None), compared != bound(value))
    return compared > bound(value) if op == "gt" else compared < bound(value)


def _path(name: str) -> str:
    return f'$."{name}"'  # the name was checked against ATTRIBUTE_NAME: no quote can be in it


def _text_of(name: str, dialect: str) -> ColumnElement:
    """The attribute as text (NULL when not set), the same on both databases for strings and numbers."""
    if dialect == "postgresql":
        return Contact.attributes.op("->>", return_type=String)(literal(name, String))
    path = literal(_path(name), String)
    kind = func.json_type(Contact.attributes, path)
    return case((kind == "true", "true"), (kind == "false", "false"),
                else_=cast(func.json_extract(Contact.attributes, path), String))


def _number_of(name: str, dialect: str) -> ColumnElement:
    """The attribute as a number where the stored JSON value is one, NULL otherwise (never a cast error)."""
    if dialect == "postgresql":
        kind = func.jsonb_typeof(Contact.attributes.op("->", return_type=JSONB)(literal(name, String)))
        return case((kind == "number", cast(_text_of(name, dialect), Numeric)), else_=None)
    path = literal(_path(name), String)
    return case((func.json_type(Contact.attributes, path).in_(("integer", "real")),
                 func.json_extract(Contact.attributes, path)), else_=None)


def _day_of(name: str, dialect: str) -> ColumnElement:
    """The attribute's YYYY-MM-DD prefix where it has one (it sorts as the date), NULL otherwise."""
    text = _text_of(name, dialect)
    day = func.substr(text, 1, 10)
    if dialect == "postgresql":
        return case((text.op("~")(literal(ISO_DAY_RE, String)), day.collate("C")), else_=None)
    return case((text.op("GLOB")(literal(ISO_DAY + "*", String)), day), else_=None)
