"""The send loop's status probe: the campaign's status and the global switch, read once per claim
batch and when a stop signal arrives (the safety net for a lost stop signal)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import select

from mailadmin.extensions import db
from mailadmin.models import APP_STATE_ID, AppState, Campaign
from mailadmin.queue.outages import is_database_outage

_campaigns = Campaign.__table__
_app_state = AppState.__table__


@contextmanager
def probe_slice_state(campaign_id: int) -> Iterator[Callable[[], tuple[str | None, bool]]]:
    """Yield a read of the campaign's status (None once it is gone) and of the global switch (True: sending is off).

    One statement on a connection of its own in AUTOCOMMIT, so each read sees other commits at once
    (also on SQLite), holds no transaction and never touches the slice's session. It only reads.
    Closing a connection the database already dropped is not an error.
    """
    switched_off = select(_app_state.c.sending_paused).where(_app_state.c.id == APP_STATE_ID).scalar_subquery()
    statement = select(_campaigns.c.status, switched_off).where(_campaigns.c.id == campaign_id)
    connection = db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")

    def read() -> tuple[str | None, bool]:
        row = connection.execute(statement).first()
        return (None, False) if row is None else (row[0], bool(row[1]))

    try:
        yield read
    finally:
        try:
            connection.close()
        except Exception as exc:  # nothing to release on a connection the database dropped
            if not is_database_outage(exc):
                raise
