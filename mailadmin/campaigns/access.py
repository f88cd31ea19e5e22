"""The one access rule for a campaign: admins see every campaign, managers only their own."""

from __future__ import annotations

from flask import abort
from sqlalchemy import Select, select

from mailadmin.extensions import db
from mailadmin.models import Campaign, User


def visible_campaigns(user: User) -> Select:
    """SELECT of the campaigns `user` may see."""
    query = select(Campaign)
    if not user.is_admin:
        query = query.where(Campaign.owner_id == user.id)
    return query


def get_campaign_for(user: User, campaign_id: int) -> Campaign:
    """The campaign if `user` may see it; 404 otherwise, never 403 (a manager must not learn that it exists)."""
    campaign = db.session.get(Campaign, campaign_id)
    if campaign is None or not (user.is_admin or campaign.owner_id == user.id):
        abort(404)
    return campaign
