"""The owner rule for what a user makes (SPEC "Roles"): an admin sees every campaign and every
segment, a manager only their own; anyone else's does not exist for them ("not found", never
"forbidden", so a manager cannot learn that it exists). Campaign pages, segments and campaign targets
ask here; lists have their own rule (shared lists), in `services/audiences/access.py`."""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy import Select, select

from mailadmin.extensions import db
from mailadmin.models import Campaign, User
from mailadmin.models.audience import Segment

MAX_ID = 2**31 - 1  # ids are INTEGER columns

Owned = TypeVar("Owned", Campaign, Segment)


def visible_to(user: User, model: type[Owned]) -> Select[tuple[Owned]]:
    """SELECT of the rows of `model` that `user` may see."""
    query = select(model)
    if not user.is_admin:
        query = query.where(model.owner_id == user.id)
    return query


def find_visible(user: User, model: type[Owned], row_id: int) -> Owned | None:
    """The row if it exists and `user` may see it, else None."""
    if not 0 < row_id <= MAX_ID:  # names no row (PostgreSQL would refuse to compare it with the column)
        return None
    row = db.session.get(model, row_id)
    if row is None or not (user.is_admin or row.owner_id == user.id):
        return None
    return row
