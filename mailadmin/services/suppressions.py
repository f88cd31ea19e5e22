"""The suppression list: addresses that never get mail again (unsubscribed, hard-bounced, manual).

Addresses are compared lower-cased. `suppress()` is idempotent and safe under concurrency
(INSERT ... ON CONFLICT DO NOTHING): the unsubscribe endpoint and several send workers may
add the same address at the same moment.
"""

from __future__ import annotations

from collections.abc import Iterable

from loguru import logger
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from mailadmin.extensions import db
from mailadmin.models import Suppression
from mailadmin.models.suppression import SUPPRESSION_REASONS
from mailadmin.models.types import utcnow
from mailadmin.pii import get_pii_log_fields

# IN lists are chunked so that a 10,000-address import never builds one giant statement.
_CHUNK = 500


def normalise_suppressed_email(email: str) -> str:
    """The form an address is stored and compared in: stripped and lower-cased."""
    return email.strip().lower()


def suppress(email: str, reason: str, campaign_id: int | None = None, *, commit: bool = True) -> bool:
    """Put `email` on the suppression list; True when it was not there yet.

    `commit=False` leaves the commit to the caller (the send loop records a hard bounce
    in the same transaction as the recipient's outcome).
    """
    if reason not in SUPPRESSION_REASONS:
        raise ValueError(f"unknown suppression reason {reason!r}")
    address = normalise_suppressed_email(email)
    table = Suppression.__table__
    dialect = db.session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = (
        insert(table)
        .values(email=address, reason=reason, campaign_id=campaign_id, created_at=utcnow())
        .on_conflict_do_nothing(index_elements=["email"])
        .returning(table.c.id)
    )
    added = db.session.execute(statement).first() is not None
    if commit:
        db.session.commit()
    if added:
        logger.bind(reason=reason, campaign_id=campaign_id, **get_pii_log_fields(address, "INFO")).info(
            "Address suppressed"
        )
    return added


def is_suppressed(email: str) -> bool:
    """Is this address on the suppression list?"""
    address = normalise_suppressed_email(email)
    return db.session.scalar(select(Suppression.id).where(Suppression.email == address).limit(1)) is not None


def suppressed_among(emails: Iterable[str]) -> set[str]:
    """The lower-cased addresses among `emails` that are on the suppression list (one query per 500)."""
    wanted = sorted({normalise_suppressed_email(email) for email in emails if email})
    found: set[str] = set()
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        found.update(db.session.scalars(select(Suppression.email).where(Suppression.email.in_(chunk))))
    return found
