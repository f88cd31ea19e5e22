"""A list's member counts, kept by the writes that change them, in their own transaction: the lists
page and a list's page read a few rows per list instead of counting its memberships (1M members:
~1 s a count, not 50 ms a page).

`list_daily_counts` holds, per list and UTC day, the change of each status's count that day and the
members who joined that day; a list's counts are the sums over its days, its growth the joins of the
last GROWTH_DAYS. Every writer of `list_memberships` calls `record`: `set_membership_status` (pages,
forms, confirmations, unsubscribe links, preferences), the import's set-based merge, and the erase
of a person (`forget_memberships`). Deleting a list deletes its rows with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta

from sqlalchemy import case, delete, func, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from mailadmin.extensions import db
from mailadmin.models import ListDailyCount, ListMembership
from mailadmin.models.audience import MembershipStatus
from mailadmin.models.types import utcnow
from mailadmin.services.audiences.bounds import GROWTH_DAYS

_STATUSES = tuple(status.value for status in MembershipStatus)


def record(list_id: int, changes: Mapping[str, int], joined: int = 0, day: date | None = None) -> None:
    """Add `changes` ({status: +n / -n}) and `joined` to the list's counts of `day` (today), in the caller's
    transaction: one upsert."""
    values = {status: int(changes.get(status, 0)) for status in _STATUSES}
    if not any(values.values()) and not joined:
        return
    insert = postgresql_insert if db.engine.dialect.name == "postgresql" else sqlite_insert
    statement = insert(ListDailyCount).values(list_id=list_id, day=day or utcnow().date(), joined=joined, **values)
    table = ListDailyCount.__table__.c
    db.session.execute(statement.on_conflict_do_update(
        index_elements=[table.list_id, table.day],
        set_={name: table[name] + statement.excluded[name] for name in (*_STATUSES, "joined")}))


def status_change(list_id: int, before: str | None, after: str) -> None:
    """One membership moved from `before` (None: it is new, it joined today) to `after`."""
    changes = {after: 1}
    if before is not None:
        changes[before] = changes.get(before, 0) - 1
    record(list_id, changes, joined=int(before is None))


def forget_memberships(where) -> None:
    """Take the memberships matching `where` (about to be deleted) out of their lists' counts: each leaves
    its status's count and the joins of the day it joined."""
    moment = ListMembership.created_at
    day = func.date(func.timezone("UTC", moment) if db.engine.dialect.name == "postgresql" else moment)
    rows = db.session.execute(
        select(ListMembership.list_id, ListMembership.status, day, func.count())
        .where(where).group_by(ListMembership.list_id, ListMembership.status, day)).all()
    for list_id, status, joined_on, count in rows:
        joined_on = joined_on if isinstance(joined_on, date) else date.fromisoformat(str(joined_on)[:10])
        record(list_id, {status: -count}, joined=-count, day=joined_on)


def forget_list(list_id: int) -> None:
    db.session.execute(delete(ListDailyCount).where(ListDailyCount.list_id == list_id))


def counts_query(list_id: int | None = None):
    """SELECT list_id, subscribed, unconfirmed, unsubscribed, joined in the last GROWTH_DAYS: per list."""
    since = utcnow().date() - timedelta(days=GROWTH_DAYS - 1)  # today and the GROWTH_DAYS - 1 days before
    c = ListDailyCount
    query = select(c.list_id, func.sum(c.subscribed), func.sum(c.unconfirmed), func.sum(c.unsubscribed),
                   func.sum(case((c.day >= since, c.joined), else_=0)))
    if list_id is not None:
        query = query.where(c.list_id == list_id)
    return query.group_by(c.list_id)
