"""Reading a large result for a download: batch by batch, each batch in an app context of its own.

A streamed response's body is produced after the view has returned, when a real server has already
torn the request's context down: the body cannot use the request's database session. Holding that
context open for the whole download (`stream_with_context`) would keep one transaction open for as
long as the slowest client reads — on PostgreSQL an idle transaction that holds back vacuum and
makes a migration wait. So each batch is read in a short app context (its own session and
transaction, ended before the batch is handed on), keyed on an increasing column: memory stays at
one batch, however large the result.
"""

from __future__ import annotations

from collections.abc import Iterator

from flask import current_app
from sqlalchemy import Row, Select
from sqlalchemy.orm import InstrumentedAttribute

from mailadmin.extensions import db

DEFAULT_BATCH = 1000


def read_in_batches(statement: Select, key: InstrumentedAttribute, batch_size: int = DEFAULT_BATCH) -> Iterator[Row]:
    """The rows of `statement` (which must select `key`) in `key` order, read `batch_size` at a time.

    Call it inside the request; iterate the result anywhere (it needs no context of the caller's).
    """
    app = current_app._get_current_object()  # taken now: the iteration may run after the request ended
    return _batches(app, statement, key, batch_size)


def _batches(app, statement: Select, key: InstrumentedAttribute, batch_size: int) -> Iterator[Row]:
    last = None
    while True:
        with app.app_context():  # its teardown removes this batch's session and ends its transaction
            page = statement if last is None else statement.where(key > last)
            rows = db.session.execute(page.order_by(key).limit(batch_size)).all()
        yield from rows
        if len(rows) < batch_size:
            return
        last = rows[-1]._mapping[key]
