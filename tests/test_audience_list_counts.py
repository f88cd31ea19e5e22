"""A list's counts are kept by the writes themselves (`list_counts`), never counted by a page: after
every kind of write — a member added on the page, a status changed, an import, a person erased, a
list deleted — the kept counts equal a recount of the memberships."""

from __future__ import annotations

import io

from sqlalchemy import func, select

from mailadmin.extensions import db
from mailadmin.models import ListDailyCount, ListMembership
from mailadmin.services.audiences.imports import begin_import
from mailadmin.services.audiences.lists import add_member, change_member_status, delete_list, list_summaries
from mailadmin.services.privacy import erase_person
from tests.support.jobs import run_queued_jobs


def _kept(user, list_id: int) -> tuple[int, int, int, int]:
    db.session.expire_all()
    [summary] = list_summaries(user, list_id)
    return summary.subscribed, summary.unconfirmed, summary.unsubscribed, summary.added_recently


def _recount(list_id: int) -> tuple[int, int, int, int]:
    statuses = dict(db.session.execute(select(ListMembership.status, func.count())
                                       .where(ListMembership.list_id == list_id).group_by(ListMembership.status)).all())
    total = sum(statuses.values())
    return statuses.get("subscribed", 0), statuses.get("unconfirmed", 0), statuses.get("unsubscribed", 0), total


def test_the_kept_counts_follow_every_write_and_equal_a_recount(app_env, manager, admin):
    from mailadmin.services.audiences.lists import create_list

    customers = create_list(manager, "Customers")
    ann, _ = add_member(manager, customers.id, "ann@example.com")
    add_member(manager, customers.id, "bob@example.com", status="unconfirmed")
    assert _kept(manager, customers.id) == _recount(customers.id) == (1, 1, 0, 2)

    change_member_status(manager, customers.id, ann.id, "unsubscribed")
    assert _kept(manager, customers.id) == _recount(customers.id) == (0, 1, 1, 2)

    csv = "email,plan\n" + "".join(f"p{n}@example.com,pro\n" for n in range(30)) + "bob@example.com,free\n"
    begin_import(manager, customers.id, io.BytesIO(csv.encode()), "p.csv", "update", "subscribed")
    run_queued_jobs(app_env["REDIS_URL"])
    assert _kept(manager, customers.id) == _recount(customers.id) == (30, 1, 1, 32)  # bob keeps his status

    erase_person("p7@example.com", admin)
    assert _kept(manager, customers.id) == _recount(customers.id) == (29, 1, 1, 31)

    delete_list(manager, customers.id)
    assert db.session.scalar(select(func.count()).select_from(ListDailyCount)) == 0
