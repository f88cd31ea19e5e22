"""Who may see a campaign, for the pages: the owner rule of `services/ownership.py` (admins see every
campaign, managers only their own) as a 404; and who may resume one."""

from __future__ import annotations

from flask import abort
from flask_babel import lazy_gettext
from sqlalchemy import Select

from mailadmin.models import Campaign, User
from mailadmin.models.reasons import Resumes, reason_of
from mailadmin.services.ownership import find_visible, visible_to


def visible_campaigns(user: User) -> Select:
    """SELECT of the campaigns `user` may see."""
    return visible_to(user, Campaign)


def get_campaign_for(user: User, campaign_id: int) -> Campaign:
    """The campaign if `user` may see it; 404 otherwise, never 403 (a manager must not learn that it exists)."""
    campaign = find_visible(user, Campaign, campaign_id)
    if campaign is None:
        abort(404)
    return campaign


# The refusals say why; a reason that only admins resume is the circuit breaker today (models/reasons.py).
BREAKER_RESUME_REFUSAL = lazy_gettext(
    "The circuit breaker paused this campaign after repeated SMTP errors: only an admin can resume it."
)
SWITCHED_OFF_RESUME_REFUSAL = lazy_gettext("All sending is switched off by an admin: only an admin can resume a campaign now.")


def resume_refusal(user: User, campaign: Campaign, sending_off: bool) -> str | None:
    """Why `user` may not resume `campaign` (None: they may). SPEC "Roles": after a circuit-breaker trip,
    and while all sending is switched off, resuming is for admins."""
    if user.is_admin:
        return None
    reason = reason_of(campaign.queue.defer_reason if campaign.queue else None)
    resumes = reason.info.resumes if reason is not None else None
    if resumes is Resumes.BY_ADMIN:
        return str(BREAKER_RESUME_REFUSAL)
    if sending_off or resumes is Resumes.WHEN_SWITCH_ON:
        return str(SWITCHED_OFF_RESUME_REFUSAL)
    return None
