"""How audit events read on the audit log: a label for each action and for each detail."""

from __future__ import annotations

from datetime import datetime

from mailadmin.campaigns.display import local_time

# Details that hold a moment (ISO 8601 in the JSON): shown like every other time on the pages.
TIME_DETAILS = frozenset({"scheduled_at", "previous_scheduled_at"})

ACTION_LABELS = {
    "campaign_started": "Campaign started",
    "campaign_paused": "Campaign paused",
    "campaign_resumed": "Campaign resumed",
    "campaign_cancelled": "Campaign cancelled",
    "campaign_started_now": "Scheduled campaign started now",
    "campaign_rescheduled": "Scheduled start moved",
    "circuit_breaker_tripped": "Circuit breaker tripped",
    "unknown_recipients_requeued": "Unknown recipients re-queued",
    "draft_deleted": "Draft deleted",
    "draft_created": "Draft created",
    "draft_edited": "Draft edited",
    "api_token_created": "API token created",
    "contacts_upserted": "Contacts upserted",
    "contact_updated": "Contact changed",
    "contact_deleted": "Contact deleted",
    "contact_removed_from_lists": "Contact taken off lists",
    "list_created": "List created",
    "list_edited": "List edited",
    "list_deleted": "List deleted",
    "list_members_changed": "List members changed",
    "segment_saved": "Segment saved",
    "segment_deleted": "Segment deleted",
    "api_token_revoked": "API token revoked",
    "api_tokens_revoked": "API tokens revoked (sessions ended)",
    "sending_switched_off": "All sending switched off",
    "sending_switched_on": "All sending switched back on",
    "user_created": "User created",
    "user_role_changed": "Role changed",
    "user_disabled": "User disabled",
    "user_enabled": "User enabled",
    "user_password_changed": "Password changed",
    "user_password_reset": "Password reset",
    "user_sessions_ended": "Sessions ended",
    "person_exported": "A person's data exported",
    "list_form_published": "Subscription form published",
    "list_form_withdrawn": "Subscription form withdrawn",
}

DETAIL_LABELS = {
    "campaigns_waiting": "campaigns waiting",
    "consecutive_errors": "consecutive errors",
    "scheduled_at": "scheduled for",
    "previous_scheduled_at": "was scheduled for",
    "recipients": "recipients",
    "threshold": "threshold",
    "campaign": "campaign",
    "campaign_id": "campaign number",
    "from": "from",
    "to": "to",
    "role": "role",
    "api_token": "through API token",
}


def action_label(action: str) -> str:
    """"Campaign paused" for `campaign_paused`; unknown codes read as words."""
    return ACTION_LABELS.get(action) or action.replace("_", " ").capitalize()


def detail_label(key: str) -> str:
    """The words for one key of an event's details."""
    return DETAIL_LABELS.get(key) or key.replace("_", " ")


def detail_value(key: str, value: object) -> object:
    """One detail's value as the page shows it: a moment through `local_time`, anything else as it is."""
    if key in TIME_DETAILS and isinstance(value, str):
        try:
            return local_time(datetime.fromisoformat(value))
        except ValueError:
            return value
    return value
