"""The data model, one module per aggregate. Importing this package registers every table."""

from mailadmin.models.app_state import APP_STATE_ID, AppState
from mailadmin.models.audience import CampaignTarget, Contact, ListMembership, MailingList, MembershipChange, Segment
from mailadmin.models.audit import AuditEvent
from mailadmin.models.campaign import Campaign, CampaignQueue, Recipient
from mailadmin.models.events import EventDelivery, EventEndpoint, OutboxEvent
from mailadmin.models.suppression import BounceEvent, Suppression
from mailadmin.models.user import User

__all__ = [
    "APP_STATE_ID",
    "AppState",
    "AuditEvent",
    "BounceEvent",
    "Campaign",
    "CampaignTarget",
    "EventDelivery",
    "EventEndpoint",
    "Contact",
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
