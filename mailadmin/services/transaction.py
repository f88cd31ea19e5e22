"""The one way a service function owns its transaction: `with transaction():`.

The outermost block commits once at its end, rolls back on any error and re-raises, and only then
runs the hooks registered with `after_commit` (enqueue a job, announce a stop: nothing outside the
database may see a state before it is committed). A block inside another joins the outer one, so a
service may call another service and the work still commits once. Hooks of a rolled-back
transaction are dropped.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import ParamSpec, TypeVar

from mailadmin.extensions import db

P = ParamSpec("P")
R = TypeVar("R")

# The after-commit hooks of the transaction open in this context; None outside any `transaction()`.
_open_hooks: ContextVar[list[Callable[[], None]] | None] = ContextVar("mailadmin_transaction", default=None)


@contextmanager
def transaction() -> Iterator[None]:
    """Commit once at the end of the outermost block, roll back on error, then run after-commit hooks."""
    if _open_hooks.get() is not None:
        yield  # joins the enclosing transaction: it commits or rolls back the whole
        return
    hooks: list[Callable[[], None]] = []
    token = _open_hooks.set(hooks)
    try:
        yield
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    finally:
        _open_hooks.reset(token)
    for hook in hooks:
        hook()


def after_commit(hook: Callable[[], None]) -> None:
    """Run `hook` once the enclosing transaction has committed (at once outside any transaction)."""
    hooks = _open_hooks.get()
    if hooks is None:
        hook()
    else:
        hooks.append(hook)


def in_transaction(func: Callable[P, R]) -> Callable[P, R]:
    """Decorator form of `with transaction():` for a service function that is one transaction whole."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with transaction():
            return func(*args, **kwargs)

    return wrapper

