"""/api/v1/campaigns/{id}/...: a test email, start, pause, resume and cancel — the same services,
throttles, size cap and confirmation figures as the campaign's pages."""

from __future__ import annotations

from flask import url_for

from mailadmin.api.auth import api_user
from mailadmin.api.blueprint import NOT_FOUND, NOT_FOUND_OR_CONFLICT
from mailadmin.api.campaigns import blp, campaign_body
from mailadmin.api.problems import ApiProblem
from mailadmin.api.schemas import (
    StartArgs,
    StartResultSchema,
    TestEmailArgs,
    TestEmailResultSchema,
    TransitionSchema,
)
from mailadmin.campaigns.access import get_campaign_for, resume_refusal
from mailadmin.extensions import get_settings
from mailadmin.services import campaigns as campaign_service
from mailadmin.services import sending_switch
from mailadmin.services.estimates import current_estimate
from mailadmin.services.test_email import send_test_email
from mailadmin.services.transitions import Transition


@blp.operation("POST", "/<int:campaign_id>/test-email", "send", TestEmailResultSchema, body=TestEmailArgs,
               errors=NOT_FOUND)
def test_email(args: dict, campaign_id: int):
    """Send one test message of the campaign to `to` (the per-user test-email throttle applies)."""
    campaign = get_campaign_for(api_user(), campaign_id)
    result = send_test_email(campaign, api_user(), args["to"])
    return {"to_address": result.to_address, "message_id": result.message_id}


def _estimate(count: int) -> dict | None:
    estimate = current_estimate(count)
    if estimate is None:
        return None
    return {"finishes_at": estimate.finishes_at, "duration_seconds": int(estimate.duration.total_seconds()),
            "max_per_hour": estimate.max_per_hour, "waits_for_quota": estimate.waits_for_quota}


@blp.operation("POST", "/<int:campaign_id>/start", "send", StartResultSchema, body=StartArgs, idempotent=True,
               errors=NOT_FOUND_OR_CONFLICT)
def start_campaign(args: dict, campaign_id: int):
    """Start a draft now or at `scheduled_at`: its lists and segments resolved, the size cap and the
    per-user start throttle checked; the answer carries the start page's figures."""
    campaign = get_campaign_for(api_user(), campaign_id)
    campaign_service.start_campaign(campaign, api_user(), scheduled_at=args.get("scheduled_at"))
    settings = get_settings()
    recipients = max(0, campaign.recipients_total - campaign.skipped_count)
    body = {"campaign": campaign_body(campaign), "recipients": recipients,
            "max_recipients": settings.max_campaign_recipients,
            "starts_per_hour": settings.throttle_campaign_start_per_hour, "estimate": _estimate(recipients)}
    return body, 200, {"Location": url_for("api_campaigns.get_campaign", campaign_id=campaign.id)}


def _transition_body(campaign, done: Transition) -> dict:
    return {"changed": done.changed, "from_status": done.from_status, "to_status": done.to_status,
            "campaign": campaign_body(campaign)}


@blp.operation("POST", "/<int:campaign_id>/pause", "send", TransitionSchema, errors=NOT_FOUND_OR_CONFLICT)
def pause_campaign(campaign_id: int):
    """Pause a queued, sending or deferred campaign (a paused one: nothing changes)."""
    campaign = get_campaign_for(api_user(), campaign_id)
    return _transition_body(campaign, campaign_service.pause_campaign(campaign, api_user()))


@blp.operation("POST", "/<int:campaign_id>/resume", "send", TransitionSchema, errors=NOT_FOUND_OR_CONFLICT)
def resume_campaign(campaign_id: int):
    """Resume a paused campaign; after a circuit-breaker trip, or while sending is off, only an admin may."""
    campaign = get_campaign_for(api_user(), campaign_id)
    refusal = resume_refusal(api_user(), campaign, sending_switch.sending_paused())
    if refusal:
        raise ApiProblem(409, "admin-only-resume", refusal)
    return _transition_body(campaign, campaign_service.resume_campaign(campaign, api_user()))


@blp.operation("POST", "/<int:campaign_id>/cancel", "send", TransitionSchema, errors=NOT_FOUND_OR_CONFLICT)
def cancel_campaign(campaign_id: int):
    """Cancel a started campaign for good (a cancelled one: nothing changes)."""
    campaign = get_campaign_for(api_user(), campaign_id)
    return _transition_body(campaign, campaign_service.cancel_campaign(campaign, api_user()))
