"""The one access rule for a campaign: admins see every campaign, managers only their own."""

from __future__ import annotations

from flask import abort
from sqlalchemy import Select, select

from mailadmin.extensions import db
from mailadmin.models import Campaign, User
from mailadmin.models.reasons import Resumes, reason_of

MAX_ID = 2**31 - 1  # campaigns.id is an INTEGER


def visible_campaigns(user: User) -> Select:
    """SELECT of the campaigns `user` may see."""
    query = select(Campaign)
    if not user.is_admin:
        query = query.where(Campaign.owner_id == user.id)
    return query


def get_campaign_for(user: User, campaign_id: int) -> Campaign:
    """The campaign if `user` may see it; 404 otherwise, never 403 (a manager must not learn that it exists)."""
    # An id beyond the column's range names no campaign (PostgreSQL would refuse to compare it).
    campaign = db.session.get(Campaign, campaign_id) if 0 < campaign_id <= MAX_ID else None
    if campaign is None or not (user.is_admin or campaign.owner_id == user.id):
        abort(404)
    return campaign


# The refusals say why; a reason that only admins resume is the circuit breaker today (models/reasons.py).
BREAKER_RESUME_REFUSAL = (
    "The circuit breaker paused this campaign after repeated SMTP errors: only an admin can resume it."
)
SWITCHED_OFF_RESUME_REFUSAL = "All sending is switched off by an admin: only an admin can resume a campaign now."


def resume_refusal(user: User, campaign: Campaign, sending_off: bool) -> str | None:
    """Why `user` may not resume `campaign` (None: they may). SPEC "Roles": after a circuit-breaker trip,
    and while all sending is switched off, resuming is for admins."""
    if user.is_admin:
        return None
    reason = reason_of(campaign.queue.defer_reason if campaign.queue else None)
    resumes = reason.info.resumes if reason is not None else None
    if resumes is Resumes.BY_ADMIN:
        return BREAKER_RESUME_REFUSAL
    if sending_off or resumes is Resumes.WHEN_SWITCH_ON:
        return SWITCHED_OFF_RESUME_REFUSAL
    return None
