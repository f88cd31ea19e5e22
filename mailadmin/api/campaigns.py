"""/api/v1/campaigns: drafts created and edited with their audience, read, listed with filters, and
their recipients paged by status. Starting and steering them: campaign_actions.py."""

from __future__ import annotations

from dataclasses import asdict

from flask import url_for
from sqlalchemy import select

from mailadmin.api import schemas
from mailadmin.api.auth import api_user
from mailadmin.api.blueprint import NOT_FOUND, NOT_FOUND_OR_CONFLICT, ApiBlueprint
from mailadmin.api.pagination import narrowed, page_of, page_schema
from mailadmin.campaigns.access import get_campaign_for, visible_campaigns
from mailadmin.models import Campaign, Recipient
from mailadmin.services import drafts
from mailadmin.services.audiences.targets import Targets, campaign_targets

blp = ApiBlueprint("api_campaigns", __name__, url_prefix="/api/v1/campaigns",
                   description="Campaigns: drafts, their audience, starts and live figures")


def campaign_stats(campaign: Campaign) -> dict:
    """The live figures of a campaign, from its counters: one row read, whatever its size."""
    queue = campaign.queue
    return {
        "status": campaign.status,
        "reason": queue.defer_reason if queue is not None and campaign.status in ("deferred", "paused") else None,
        "recipients_total": campaign.recipients_total,
        **campaign.outcome_counts,
        "pending": max(0, campaign.recipients_total - campaign.done_count),
        "progress_percent": campaign.progress_percent,
        "started_at": campaign.started_at,
        "finished_at": campaign.finished_at,
    }


def campaign_body(campaign: Campaign) -> dict:
    """A campaign as CampaignSchema serializes it."""
    return {
        "id": campaign.id, "owner_id": campaign.owner_id, "name": campaign.name, "subject": campaign.subject,
        "body_text": campaign.body_text, "body_html": campaign.body_html, "status": campaign.status,
        "created_at": campaign.created_at, "scheduled_at": campaign.scheduled_at,
        "targets": asdict(campaign_targets(campaign.id)), "stats": campaign_stats(campaign),
    }


@blp.operation("POST", "", "write", schemas.CampaignSchema, status=201, body=schemas.CampaignContentSchema,
               idempotent=True)
@blp.alt_response(404, response="NOT_FOUND", description="A list or segment in `targets` is not one this user may use")
def create_campaign(content: dict):
    """Create a draft with its content and, optionally, the lists and segments it sends to."""
    targets = content.pop("targets", None)
    campaign = drafts.create_draft(api_user(), content, Targets(**targets) if targets else None)
    return campaign_body(campaign), 201, {"Location": url_for("api_campaigns.get_campaign", campaign_id=campaign.id)}


@blp.operation("GET", "", "read", page_schema(schemas.CampaignSchema, "CampaignPage"), query=schemas.CampaignListArgs,
               paged=True)
def list_campaigns(filters: dict, paging: dict):
    """The campaigns this token's user may see, newest first, filtered by status, owner and creation time."""
    query = narrowed(visible_campaigns(api_user()), filters, {
        "status": lambda status: Campaign.status == status, "owner_id": lambda owner: Campaign.owner_id == owner,
        "created_after": lambda moment: Campaign.created_at >= moment,
        "created_before": lambda moment: Campaign.created_at < moment})
    result = page_of(query, Campaign.id, paging)
    result["items"] = [campaign_body(campaign) for campaign in result["items"]]
    return result


@blp.operation("GET", "/<int:campaign_id>", "read", schemas.CampaignSchema, errors=NOT_FOUND)
def get_campaign(campaign_id: int):
    """One campaign with its live figures."""
    return campaign_body(get_campaign_for(api_user(), campaign_id))


@blp.operation("PATCH", "/<int:campaign_id>", "write", schemas.CampaignSchema, body=schemas.CampaignPatchSchema,
               errors=NOT_FOUND_OR_CONFLICT)
def patch_campaign(changes: dict, campaign_id: int):
    """Change a draft's content or audience; a started campaign answers 409."""
    campaign = get_campaign_for(api_user(), campaign_id)
    targets = changes.pop("targets", None)
    campaign = drafts.edit_draft(campaign, api_user(), changes, Targets(**targets) if targets is not None else None)
    return campaign_body(campaign)


@blp.operation("GET", "/<int:campaign_id>/stats", "read", schemas.CampaignStatsSchema, errors=NOT_FOUND)
def campaign_stats_view(campaign_id: int):
    """A campaign's live figures (what its page polls)."""
    return campaign_stats(get_campaign_for(api_user(), campaign_id))


@blp.operation("GET", "/<int:campaign_id>/recipients", "read", page_schema(schemas.RecipientSchema, "RecipientPage"),
               query=schemas.RecipientListArgs, paged=True, errors=NOT_FOUND)
def list_recipients(filters: dict, paging: dict, campaign_id: int):
    """A campaign's recipients in their order, optionally of one status."""
    campaign = get_campaign_for(api_user(), campaign_id)
    query = narrowed(select(Recipient).where(Recipient.campaign_id == campaign.id), filters,
                     {"status": lambda status: Recipient.status == status})
    return page_of(query, Recipient.id, paging, newest_first=False, largest_id=2**63 - 1)
