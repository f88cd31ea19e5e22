"""How audit events read on the audit log: a label for each action and for each detail."""

from __future__ import annotations

from datetime import datetime

from flask_babel import lazy_gettext as _l

from mailadmin.campaigns.display import local_time

# Details that hold a moment (ISO 8601 in the JSON): shown like every other time on the pages.
TIME_DETAILS = frozenset({"scheduled_at", "previous_scheduled_at"})

ACTION_LABELS = {
    "campaign_started": _l("Campaign started"),
    "campaign_paused": _l("Campaign paused"),
    "campaign_resumed": _l("Campaign resumed"),
    "campaign_cancelled": _l("Campaign cancelled"),
    "campaign_started_now": _l("Scheduled campaign started now"),
    "campaign_rescheduled": _l("Scheduled start moved"),
    "circuit_breaker_tripped": _l("Circuit breaker tripped"),
    "unknown_recipients_requeued": _l("Unknown recipients re-queued"),
    "draft_deleted": _l("Draft deleted"),
    "sending_switched_off": _l("All sending switched off"),
    "sending_switched_on": _l("All sending switched back on"),
    "user_created": _l("User created"),
    "user_role_changed": _l("Role changed"),
    "user_disabled": _l("User disabled"),
    "user_enabled": _l("User enabled"),
    "user_password_changed": _l("Password changed"),
    "user_password_reset": _l("Password reset"),
    "user_sessions_ended": _l("Sessions ended"),
    "person_exported": _l("A person's data exported"),
    "list_form_published": _l("Subscription form published"),
    "list_form_withdrawn": _l("Subscription form withdrawn"),
    "draft_created": _l("Draft created"),
    "draft_edited": _l("Draft edited"),
    "api_token_created": _l("API token created"),
    "contacts_upserted": _l("Contacts upserted"),
    "contact_updated": _l("Contact changed"),
    "contact_deleted": _l("Contact deleted"),
    "contact_removed_from_lists": _l("Contact taken off lists"),
    "list_created": _l("List created"),
    "list_edited": _l("List edited"),
    "list_deleted": _l("List deleted"),
    "list_members_changed": _l("List members changed"),
    "segment_saved": _l("Segment saved"),
    "segment_deleted": _l("Segment deleted"),
    "api_token_revoked": _l("API token revoked"),
    "api_tokens_revoked": _l("API tokens revoked (sessions ended)"),
}

DETAIL_LABELS = {
    "campaigns_waiting": _l("campaigns waiting"),
    "consecutive_errors": _l("consecutive errors"),
    "scheduled_at": _l("scheduled for"),
    "previous_scheduled_at": _l("was scheduled for"),
    "recipients": _l("recipients"),
    "threshold": _l("threshold"),
    "campaign": _l("campaign"),
    "campaign_id": _l("campaign number"),
    "from": _l("from"),
    "to": _l("to"),
    "role": _l("role"),
    "api_token": _l("through API token"),
}


def action_label(action: str) -> str:
    """"Campaign paused" for `campaign_paused`; unknown codes read as words."""
    return str(ACTION_LABELS.get(action) or action.replace("_", " ").capitalize())


def detail_label(key: str) -> str:
    """The words for one key of an event's details."""
    return str(DETAIL_LABELS.get(key) or key.replace("_", " "))


def detail_value(key: str, value: object) -> object:
    """One detail's value as the page shows it: a moment through `local_time`, anything else as it is."""
    if key in TIME_DETAILS and isinstance(value, str):
        try:
            return local_time(datetime.fromisoformat(value))
        except ValueError:
            return value
    return value
