"""Read-side queries of the campaign pages. Lists read the counters on Campaign; only the
pages of one campaign look at its recipients, always through the (campaign_id, ...) indexes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Row, Select, func, select, true

from mailadmin.campaigns.access import visible_campaigns
from mailadmin.extensions import db
from mailadmin.models import Campaign, Recipient, User
from mailadmin.models.campaign import CAMPAIGN_STATUSES, R_SKIPPED, RECIPIENT_STATUSES
from mailadmin.services.batches import read_in_batches
from mailadmin.services.drafts import recipient_matches

CAMPAIGNS_PER_PAGE = 25
RECIPIENTS_PER_PAGE = 50
LAST_ERRORS = 10


@dataclass
class Page:
    """One page of a paginated list."""

    items: list
    page: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    @property
    def has_prev(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page < self.pages


def page_number(raw: str | None) -> int:
    """?page= as a positive int (1 when missing or nonsense)."""
    try:
        return max(1, min(int(raw or 1), 1_000_000))
    except ValueError:
        return 1


def list_campaigns(user: User, status: str | None, page: int) -> Page:
    """The campaigns `user` may see, newest first, optionally of one status."""
    query = visible_campaigns(user)
    if status in CAMPAIGN_STATUSES:
        query = query.where(Campaign.status == status)
    total = db.session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    pages = max(1, -(-total // CAMPAIGNS_PER_PAGE))
    page = min(page, pages)
    items = db.session.scalars(
        query.order_by(Campaign.id.desc()).limit(CAMPAIGNS_PER_PAGE).offset((page - 1) * CAMPAIGNS_PER_PAGE)
    ).unique().all()
    return Page(list(items), page, CAMPAIGNS_PER_PAGE, total)


def recipient_status_counts(campaign: Campaign) -> dict[str, int]:
    """Recipients of one campaign per status (every status present, zeros included)."""
    counts = dict.fromkeys(RECIPIENT_STATUSES, 0)
    rows = db.session.execute(
        select(Recipient.status, func.count()).where(Recipient.campaign_id == campaign.id).group_by(Recipient.status)
    )
    for status, count in rows:
        counts[status] = count
    return counts


def sends_per_hour(campaign: Campaign, statuses: tuple[str, ...] | None = None) -> dict[datetime, int]:
    """Sent emails of one campaign per UTC hour (hours with sends only); `statuses`: only recipients in those."""
    if db.engine.dialect.name == "postgresql":
        hour = func.date_trunc("hour", func.timezone("UTC", Recipient.sent_at))
    else:
        hour = func.strftime("%Y-%m-%d %H:00:00", Recipient.sent_at)
    rows = db.session.execute(
        select(hour.label("hour"), func.count())
        .where(Recipient.campaign_id == campaign.id, Recipient.sent_at.is_not(None),
               Recipient.status.in_(statuses) if statuses else true())
        .group_by(hour)
    )
    buckets: dict[datetime, int] = {}
    for value, count in rows:
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        buckets[value.replace(tzinfo=UTC)] = count
    return buckets


def last_errors(campaign: Campaign, limit: int = LAST_ERRORS) -> list[Recipient]:
    """The most recent recipient-level errors of one campaign (suppressed skips excluded)."""
    return list(
        db.session.scalars(
            select(Recipient)
            .where(
                Recipient.campaign_id == campaign.id,
                Recipient.last_error.is_not(None),
                Recipient.status != R_SKIPPED,
            )
            .order_by(Recipient.updated_at.desc(), Recipient.id.desc())
            .limit(limit)
        )
    )


def _recipients_query(campaign: Campaign, status: str | None, search: str | None) -> Select:
    query = select(Recipient).where(Recipient.campaign_id == campaign.id)
    if status in RECIPIENT_STATUSES:
        query = query.where(Recipient.status == status)
    if search:
        query = query.where(recipient_matches(search))
    return query


def recipients_page(
    campaign: Campaign, status: str | None, search: str | None, page: int, counts: dict[str, int]
) -> Page:
    """One page of a campaign's recipients, filtered by status and a search in email or name."""
    query = _recipients_query(campaign, status, search)
    if search:
        total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    elif status in RECIPIENT_STATUSES:
        total = counts.get(status, 0)
    else:
        total = sum(counts.values())
    pages = max(1, -(-total // RECIPIENTS_PER_PAGE))
    page = min(page, pages)
    offset = (page - 1) * RECIPIENTS_PER_PAGE
    items = db.session.scalars(query.order_by(Recipient.id).limit(RECIPIENTS_PER_PAGE).offset(offset)).all()
    return Page(list(items), page, RECIPIENTS_PER_PAGE, total)


EXPORT_COLUMNS = ("email", "name", "status", "attempts", "smtp_code", "last_error", "soft_bounces", "sent_at")


def export_rows(campaign_id: int, batch: int = 2000) -> Iterator[Row]:
    """Every recipient of one campaign as a row of EXPORT_COLUMNS, in id order, read `batch` at a time.

    Call it in the request; iterate it while the download streams (see `services.batches`).
    """
    query = select(
        Recipient.email,
        Recipient.name,
        Recipient.status,
        Recipient.attempts,
        Recipient.smtp_code,
        Recipient.last_error,
        Recipient.soft_bounce_count,
        Recipient.sent_at,
        Recipient.id,
    ).where(Recipient.campaign_id == campaign_id)
    return read_in_batches(query, Recipient.id, batch)
