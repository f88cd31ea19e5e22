"""Paged lists: the request's filters as WHERE clauses (`narrowed`), then cursor pagination
(`page_of`): `?limit=&cursor=`, the page's items and a `next` link (also a `Link` header).

A cursor is the last id of the page (clients should take the `next` link as it is): pages walk an
index by id, so a page costs the same at the millionth row as at the first, and rows added
meanwhile are not skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import marshmallow as ma
from flask import request, url_for
from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute

from mailadmin.extensions import db

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


class PageArgs(ma.Schema):
    """The query of a paged list."""

    limit = ma.fields.Integer(load_default=DEFAULT_LIMIT, validate=ma.validate.Range(1, MAX_LIMIT))
    cursor = ma.fields.String(load_default=None, validate=ma.validate.Regexp(r"^[0-9]{1,18}$"),
                              metadata={"description": "From the previous page's `next` link"})


def page_schema(item_schema: type[ma.Schema], name: str) -> type[ma.Schema]:
    """A page of `item_schema`: `items` and the `next` page's URL (null on the last page)."""
    return ma.Schema.from_dict({
        "items": ma.fields.List(ma.fields.Nested(item_schema), required=True),
        "next": ma.fields.String(required=True, allow_none=True),
    }, name=name)


def encode_cursor(last_id: int) -> str:
    return str(last_id)


def decode_cursor(cursor: str | None, largest_id: int = 2**31 - 1) -> int | None:
    """The id a cursor stands for (None: the first page), at most `largest_id` (the id column's
    largest value: a larger one walks the same rows); the schema has checked its digits."""
    return min(int(cursor), largest_id) if cursor else None


def page(items: Sequence, limit: int, id_of=lambda item: item.id) -> dict:
    """The page body for `items` fetched as `limit + 1` rows: the extra row only says there is a next page."""
    shown = list(items[:limit])
    next_url = None
    if len(items) > limit and shown:
        args = {**request.args.to_dict(), **(request.view_args or {}), "cursor": encode_cursor(id_of(shown[-1]))}
        next_url = url_for(request.endpoint, _external=True, **args)
    return {"items": shown, "next": next_url}


def narrowed(query: Select, args: Mapping, conditions: Mapping[str, Callable]) -> Select:
    """`query` narrowed by the condition of each filter the request gave (`conditions`: filter name →
    its value → a WHERE clause)."""
    for name, condition in conditions.items():
        if name in args:
            query = query.where(condition(args[name]))
    return query


def page_of(query: Select, id_column: InstrumentedAttribute, paging: dict, *, newest_first: bool = True,
            largest_id: int = 2**31 - 1) -> dict:
    """The page of `query`'s rows that `paging` asks for, walked by `id_column`: newest (highest id)
    first, or in their order with `newest_first=False`."""
    if (cursor := decode_cursor(paging["cursor"], largest_id)) is not None:
        query = query.where(id_column < cursor if newest_first else id_column > cursor)
    order = id_column.desc() if newest_first else id_column
    return page(db.session.scalars(query.order_by(order).limit(paging["limit"] + 1)).unique().all(), paging["limit"])
