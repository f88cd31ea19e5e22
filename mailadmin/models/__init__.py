"""The data model, one module per aggregate. Importing this package registers every table."""

from mailadmin.models.api_token import ApiToken
from mailadmin.models.app_state import APP_STATE_ID, AppState
from mailadmin.models.audience import (
    CampaignTarget,
    Contact,
    ImportChunk,
    ListDailyCount,
    ListMembership,
    MailingList,
    MembershipChange,
    Segment,
)
from mailadmin.models.audit import AuditEvent
from mailadmin.models.campaign import Campaign, CampaignQueue, Recipient
from mailadmin.models.events import EventDelivery, EventEndpoint, OutboxEvent
from mailadmin.models.suppression import BounceEvent, Suppression
from mailadmin.models.user import User

__all__ = [
    "ApiToken",
    "APP_STATE_ID",
    "AppState",
    "AuditEvent",
    "BounceEvent",
    "Campaign",
    "CampaignTarget",
    "EventDelivery",
    "EventEndpoint",
    "Contact",
    "ImportChunk",
    "ListDailyCount",
    "ListMembership",
    "MailingList",
    "MembershipChange",
    "OutboxEvent",
    "CampaignQueue",
    "Recipient",
    "Segment",
    "Suppression",
    "User",
]
