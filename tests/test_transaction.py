"""`with transaction():` commits once, rolls back whole on error, and runs after-commit hooks only
after a commit — a nested block joins the outer one."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from mailadmin.extensions import db
from mailadmin.models import AuditEvent
from mailadmin.services.transaction import after_commit, in_transaction, transaction


def _audit_actions() -> list[str]:
    db.session.rollback()  # read what is committed, not what this session holds
    return list(db.session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))


def _note(action: str) -> None:
    db.session.add(AuditEvent(action=action))


def test_a_block_commits_its_work_and_then_runs_its_hooks(app):
    seen = []
    with transaction():
        _note("first")
        after_commit(lambda: seen.append(_audit_actions()))
        assert seen == []
    assert seen == [["first"]]


def test_an_error_rolls_back_the_whole_block_and_drops_its_hooks(app):
    seen = []
    with pytest.raises(RuntimeError), transaction():
        _note("lost")
        after_commit(lambda: seen.append("hook"))
        raise RuntimeError("boom")
    assert _audit_actions() == []
    assert seen == []


def test_a_nested_block_joins_the_outer_one_and_commits_with_it(app):
    seen = []
    with pytest.raises(RuntimeError), transaction():
        with transaction():
            _note("inner")
            after_commit(lambda: seen.append("inner hook"))
        raise RuntimeError("the outer block fails after the inner one ended")
    assert _audit_actions() == []
    assert seen == []


def test_the_decorator_is_one_transaction_and_a_hook_outside_any_runs_at_once(app):
    @in_transaction
    def note_twice() -> None:
        _note("a")
        _note("b")

    note_twice()
    assert _audit_actions() == ["a", "b"]
    seen = []
    after_commit(lambda: seen.append("now"))
    assert seen == ["now"]
