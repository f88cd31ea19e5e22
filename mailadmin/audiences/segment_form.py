"""The segment editor's form, row by row, to and from the filter JSON (`services.audiences.segment_filter`).

Each condition is one row of fields named `c-<n>-op`, `c-<n>-name`, `c-<n>-type`, `c-<n>-value`,
`c-<n>-list` and `c-<n>-group` (0: the top level, 1-3: a group whose match is `g-<k>-match`). Rows
keep the order of their numbers; the page re-renders them from the filter in its JSON order, so a
refusal's "Condition 3" or "Condition 2.1" is the row labelled so (both in the request's language).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from werkzeug.datastructures import MultiDict

from mailadmin.services.audiences.bounds import MAX_CONDITIONS

GROUPS = (1, 2, 3)
ROW_KEY = re.compile(r"^c-(\d{1,4})-op$")
MAX_ROWS = MAX_CONDITIONS + 1  # one more than allowed, so that the budget's refusal is what the page says

# What a row may say: "field:op" and its words in the editor.
OPERATIONS = (
    ("attribute:eq", _l("attribute equals")),
    ("attribute:ne", _l("attribute does not equal")),
    ("attribute:contains", _l("attribute contains")),
    ("attribute:gt", _l("attribute is greater than")),
    ("attribute:lt", _l("attribute is less than")),
    ("attribute:is_set", _l("attribute is set")),
    ("attribute:in", _l("attribute is one of (comma-separated)")),
    ("list:subscribed", _l("is subscribed to list")),
    ("list:not_subscribed", _l("is not subscribed to list")),
    ("created:before", _l("was created before")),
    ("created:after", _l("was created after")),
    ("updated:before", _l("was updated before")),
    ("updated:after", _l("was updated after")),
    ("sent:within_days", _l("was sent a campaign in the last N days")),
    ("sent:not_within_days", _l("was not sent a campaign in the last N days")),
    ("bounced:ever", _l("bounced or complained, ever")),
    ("bounced:never", _l("never bounced or complained")),
)
TYPES = (("text", _l("as text")), ("number", _l("as a number")), ("date", _l("as a date")))


@dataclass
class Row:
    """One condition row as the editor shows it."""

    number: int | str  # "__N__" in the blank row the script copies
    label: str
    group: int = 0
    op: str = "attribute:eq"
    name: str = ""
    type: str = "text"
    value: str = ""
    list_id: str = ""


def _row_condition(form: MultiDict, n: int) -> dict:
    field, _, op = form.get(f"c-{n}-op", "").partition(":")
    condition: dict = {"field": field, "op": op}
    if field == "list":
        condition["value"] = form.get(f"c-{n}-list", "")
    elif field == "attribute":
        condition.update(name=form.get(f"c-{n}-name", "").strip(), type=form.get(f"c-{n}-type", "text"))
        if op != "is_set":
            condition["value"] = form.get(f"c-{n}-value", "")
    elif field in ("created", "updated", "sent"):
        condition["value"] = form.get(f"c-{n}-value", "").strip()
    return condition


def _not_filled_in(condition: dict) -> bool:
    return condition["field"] == "attribute" and not condition.get("name") and not condition.get("value")


def filter_from_form(form: MultiDict, drop: int | None = None) -> dict:
    """The (not yet validated) filter the rows describe; `drop` leaves one row out (its remove button)."""
    numbers = sorted({int(match.group(1)) for key in form if (match := ROW_KEY.match(key))})[:MAX_ROWS]
    top: list[dict] = []
    grouped: dict[int, list[dict]] = {}
    for n in numbers:
        if n == drop:
            continue
        condition = _row_condition(form, n)
        if _not_filled_in(condition):
            continue  # a row added but not filled in yet is no condition
        group = form.get(f"c-{n}-group", "0")
        group = int(group) if group.isdigit() and int(group) in GROUPS else 0
        (grouped.setdefault(group, []) if group else top).append(condition)
    for group, conditions in sorted(grouped.items()):
        match = form.get(f"g-{group}-match", "all")
        top.append({"match": match if match in ("all", "any") else "all", "conditions": conditions})
    match = form.get("match", "all")
    return {"match": match if match in ("all", "any") else "all", "conditions": top}


def _row_from(condition: dict, number: int, label: str, group: int) -> Row:
    value = condition.get("value", "")
    if isinstance(value, list):
        value = ", ".join(str(item) for item in value)
    field = condition.get("field", "")
    return Row(
        number=number, label=label, group=group, op=f"{field}:{condition.get('op', '')}",
        name=str(condition.get("name", "")), type=str(condition.get("type") or "text"),
        value="" if field == "list" or value is None else str(value),
        list_id=str(value) if field == "list" else "",
    )


def rows_of(filter_json: dict) -> tuple[list[Row], dict[int, str]]:
    """The editor's rows for a filter (in its JSON order, labelled as refusals name them) and each
    group's match."""
    rows: list[Row] = []
    matches: dict[int, str] = {}
    group = 0
    for index, item in enumerate(filter_json.get("conditions") or [], start=1):
        if isinstance(item, dict) and "conditions" in item:
            group = min(group + 1, GROUPS[-1])
            matches[group] = item.get("match", "all")
            for inner, condition in enumerate(item.get("conditions") or [], start=1):
                if isinstance(condition, dict):
                    place = ".".join((str(index), str(inner)))  # "2.1", as segment_filter's refusals name it
                    rows.append(_row_from(condition, len(rows), gettext("Condition %(num)s", num=place), group))
        elif isinstance(item, dict):
            rows.append(_row_from(item, len(rows), gettext("Condition %(num)s", num=index), 0))
    return rows, matches


def with_blank_row(filter_json: dict, new_group: bool = False) -> dict:
    """The filter with one more (empty) condition: at the top level, or in a new group."""
    blank = {"field": "attribute", "op": "eq", "name": "", "value": ""}
    conditions = list(filter_json.get("conditions") or [])
    groups = sum(1 for item in conditions if isinstance(item, dict) and "conditions" in item)
    if new_group and groups < len(GROUPS):
        conditions.append({"match": "all", "conditions": [blank]})
    else:
        conditions.append(blank)
    return {**filter_json, "conditions": conditions}
