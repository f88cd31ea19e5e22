"""Defer / pause reasons are one table: every reason has its row, its playbook section exists, and
`is_due` and its SQL twin agree — NULL reasons included."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from mailadmin.extensions import db
from mailadmin.models import CampaignQueue
from mailadmin.models.reasons import REASONS, Reason, Resumes, is_due, is_due_sql
from mailadmin.services.campaigns import start_campaign
from tests.factories import create_campaign

ONCALL = Path(__file__).resolve().parents[1] / "playbook" / "ONCALL.md"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def heading_slugs(markdown: str) -> set[str]:
    """GitHub-style anchors of every heading: lower case, punctuation dropped, spaces -> '-'."""
    return {
        re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in markdown.splitlines()
        if line.startswith("#")
    }


def test_every_reason_has_a_row_and_its_playbook_section_exists():
    slugs = heading_slugs(ONCALL.read_text(encoding="utf-8"))
    assert set(REASONS) == set(Reason)
    for reason, info in REASONS.items():
        assert info.playbook_anchor in slugs, (reason, info.playbook_anchor)
        assert info.playbook_anchor.startswith(str(reason)), reason
        assert info.has_deadline == info.automatic, reason  # only a deadline makes a reason resume by itself


def test_only_a_global_pause_waits_for_the_switch_and_only_the_breaker_and_bounce_rate_need_an_admin():
    assert [r for r, i in REASONS.items() if i.resumes is Resumes.WHEN_SWITCH_ON] == [Reason.GLOBAL_PAUSE]
    assert [r for r, i in REASONS.items() if i.resumes is Resumes.BY_ADMIN] == [Reason.CIRCUIT_BREAKER,
                                                                               Reason.BOUNCE_RATE]


CASES = [
    # (reason, deferred_until, due at NOW?)
    (Reason.RATE_LIMIT, NOW - timedelta(seconds=1), True),
    (Reason.SCHEDULED, NOW, True),
    (Reason.TRANSIENT_ERROR, NOW + timedelta(seconds=1), False),
    (Reason.GLOBAL_PAUSE, NOW - timedelta(hours=1), False),
    (Reason.ADMIN_PAUSE, NOW - timedelta(hours=1), False),
    (None, NOW - timedelta(minutes=5), True),  # a NULL reason with a deadline: the time alone decides
    (None, None, False),
    (Reason.RATE_LIMIT, None, False),
]


@pytest.mark.parametrize(("reason", "until", "due"), CASES)
def test_is_due(reason, until, due):
    assert is_due(reason, until, NOW) is due


def test_the_sql_twin_of_is_due_agrees_with_it(app, make_user):
    owner = make_user("owner@example.com")
    ids = []
    for reason, until, _ in CASES:
        campaign = create_campaign(owner, 1)
        start_campaign(campaign, owner, enforce_throttle=False)
        ids.append(campaign.id)
        # Test data: the queue row in each state of the table (a factory write, from tests/).
        queue = db.session.scalar(select(CampaignQueue).where(CampaignQueue.campaign_id == campaign.id))
        queue.defer_reason, queue.deferred_until = reason, until
    db.session.commit()

    table = CampaignQueue.__table__
    due_ids = set(db.session.scalars(
        select(table.c.campaign_id).where(is_due_sql(table.c.defer_reason, table.c.deferred_until, NOW))
    ))

    assert [campaign_id in due_ids for campaign_id in ids] == [due for _, _, due in CASES]
