"""URLs the admin pages and their templates share (a leaf module: views and the package both import it)."""

from __future__ import annotations

from flask import url_for


def campaign_url(campaign_id: int) -> str:
    """The dashboard's page of a campaign."""
    return url_for("campaigns.show", campaign_id=campaign_id)
