"""A campaign's audience: lists and segments resolved once at start into its recipients — deduplicated,
suppressed/unsubscribed/unconfirmed/excluded left out, the contact's attributes as merge fields, the
size cap counting the resolved recipients, a refused start keeping nothing."""

from __future__ import annotations

import re
from datetime import datetime

import pytest
from sqlalchemy import select

from mailadmin.extensions import db
from mailadmin.models import MailingList
from mailadmin.models.audience import ChangeSource, MembershipStatus
from mailadmin.models.campaign import DRAFT, QUEUED, Recipient
from mailadmin.services.audiences.memberships import AudienceError, set_membership_status, upsert_contact
from mailadmin.services.audiences.segments import save_segment
from mailadmin.services.audiences.targets import Targets, campaign_targets, resolved_count, set_campaign_targets
from mailadmin.services.campaigns import CampaignError, start_campaign
from mailadmin.services.transaction import transaction
from tests.factories import create_campaign, create_suppressions, fresh_campaign
from tests.support.env import with_env
from tests.support.web import flashes, submit

SUB, UNSUB, UNCONF = MembershipStatus.SUBSCRIBED, MembershipStatus.UNSUBSCRIBED, MembershipStatus.UNCONFIRMED


def make_list(owner, name: str, members: dict[str, MembershipStatus], attributes: dict | None = None) -> int:
    """A list of `owner`'s with these members (contacts created as needed)."""
    with transaction():
        mailing_list = MailingList(name=name, owner_id=owner.id)
        db.session.add(mailing_list)
        db.session.flush()
        for email, status in members.items():
            contact = upsert_contact(email, ChangeSource.IMPORT, name=email.split("@")[0].title(),
                                     attributes=(attributes or {}).get(email))
            set_membership_status(mailing_list.id, contact.id, status, ChangeSource.IMPORT)
    return mailing_list.id


@pytest.fixture
def audience(app, manager):
    customers = make_list(manager, "Customers", {
        "ann@example.com": SUB, "bob@example.com": SUB, "cy@example.com": UNSUB, "dee@example.com": UNCONF,
        "sue@example.com": SUB,
    }, attributes={"ann@example.com": {"plan": "pro", "seats": 12}, "bob@example.com": {"plan": "free"}})
    news = make_list(manager, "News", {"ann@example.com": SUB, "eve@example.com": SUB, "cy@example.com": SUB})
    staff = make_list(manager, "Staff", {"eve@example.com": SUB})
    create_suppressions(["sue@example.com"], reason="unsubscribed", source="unsubscribe")
    return {"customers": customers, "news": news, "staff": staff}


def _draft(owner, targets: Targets):
    campaign = create_campaign(owner, 0)
    set_campaign_targets(campaign, owner, targets)
    return campaign


def _recipients(campaign_id: int) -> dict[str, tuple[str | None, dict]]:
    rows = db.session.scalars(select(Recipient).where(Recipient.campaign_id == campaign_id).order_by(Recipient.id))
    return {row.email: (row.name, row.merge_fields(), row.position) for row in rows}


def test_lists_resolve_at_start_into_each_subscribed_contact_once_with_its_attributes(audience, manager):
    campaign = _draft(manager, Targets(lists=[audience["customers"], audience["news"]],
                                       exclude_lists=[audience["staff"]]))
    assert resolved_count(campaign) == 3  # ann (twice subscribed), bob, cy (via News); eve excluded, sue suppressed
    start_campaign(campaign, manager, enforce_throttle=False)
    recipients = _recipients(campaign.id)
    assert set(recipients) == {"ann@example.com", "bob@example.com", "cy@example.com"}
    assert recipients["ann@example.com"][1] == {"plan": "pro", "seats": 12, "email": "ann@example.com", "name": "Ann"}
    assert sorted(place for _, _, place in recipients.values()) == [1, 2, 3]
    started = fresh_campaign(campaign.id)
    assert (started.status, started.recipients_total, started.skipped_count) == (QUEUED, 3, 0)


def test_a_segment_target_keeps_only_subscribed_contacts_and_an_excluded_segment_leaves_out(audience, manager):
    pro = save_segment(manager, "Pro", {"match": "all", "conditions": [
        {"field": "attribute", "name": "plan", "op": "eq", "value": "pro"}]})
    anyone = save_segment(manager, "Anyone with a plan", {"match": "all", "conditions": [
        {"field": "attribute", "name": "plan", "op": "is_set"}]})
    campaign = _draft(manager, Targets(segments=[anyone.id], exclude_segments=[pro.id]))
    start_campaign(campaign, manager, enforce_throttle=False)
    assert set(_recipients(campaign.id)) == {"bob@example.com"}


@with_env(MAILER_MAX_CAMPAIGN_RECIPIENTS="3")
def test_the_size_cap_counts_the_resolved_recipients_and_a_refused_start_keeps_nothing(engine_env, audience,
                                                                                       manager):
    campaign = _draft(manager, Targets(lists=[audience["customers"], audience["news"]]))
    with pytest.raises(AudienceError, match=r"too large \(more than 3 recipients\)\. Maximum: 3"):
        start_campaign(campaign, manager, enforce_throttle=False)
    assert fresh_campaign(campaign.id).status == DRAFT and _recipients(campaign.id) == {}


def test_a_start_refused_after_resolving_keeps_no_recipient_and_a_second_start_adds_none(audience, manager):
    campaign = _draft(manager, Targets(lists=[audience["staff"]]))
    with pytest.raises(CampaignError):
        start_campaign(campaign, manager, scheduled_at=datetime(2030, 1, 1))  # naive: refused
    assert _recipients(campaign.id) == {}
    start_campaign(campaign, manager, enforce_throttle=False)
    with pytest.raises(CampaignError, match="Only a draft"):
        start_campaign(fresh_campaign(campaign.id), manager, enforce_throttle=False)
    assert set(_recipients(campaign.id)) == {"eve@example.com"}


def test_another_managers_list_or_segment_cannot_be_a_target(audience, manager, other_manager):
    campaign = create_campaign(other_manager, 0)
    with pytest.raises(AudienceError, match="does not exist or you may not use it"):
        set_campaign_targets(campaign, other_manager, Targets(lists=[audience["customers"]]))
    assert campaign_targets(campaign.id).empty


def test_a_one_off_campaign_without_targets_starts_from_its_imported_recipients(app, manager):
    campaign = create_campaign(manager, 3)
    start_campaign(campaign, manager, enforce_throttle=False)
    assert fresh_campaign(campaign.id).recipients_total == 3


def test_the_audience_step_saves_targets_and_the_start_page_shows_the_resolved_count(audience, manager,
                                                                                      manager_client):
    campaign = create_campaign(manager, 0)
    url = f"/campaigns/{campaign.id}/audience"
    saved = submit(manager_client, url, {f"list-{audience['customers']}": "send", f"list-{audience['news']}": "send",
                                         f"list-{audience['staff']}": "leave_out"}, follow_redirects=True)
    assert saved.status_code == 200 and '<strong id="resolved-count">3</strong>' in saved.get_data(as_text=True)
    start_page = manager_client.get(f"/campaigns/{campaign.id}/start").get_data(as_text=True)
    assert re.search(r'id="start-count"><strong>3</strong>', start_page)
    started = submit(manager_client, f"/campaigns/{campaign.id}/start", {"tz": "UTC"}, follow_redirects=True)
    assert ("success", "Campaign started: 3 recipients queued.") in flashes(started.get_data(as_text=True))


def test_the_audience_step_refuses_another_managers_list_and_hides_another_managers_campaign(
        audience, manager, other_manager, other_client):
    theirs = create_campaign(other_manager, 0)
    refused = submit(other_client, f"/campaigns/{theirs.id}/audience", {f"list-{audience['customers']}": "send"})
    assert refused.status_code == 404
    assert "does not exist or you may not use it" in refused.get_data(as_text=True)
    mine = create_campaign(manager, 0)
    assert other_client.get(f"/campaigns/{mine.id}/audience").status_code == 404
