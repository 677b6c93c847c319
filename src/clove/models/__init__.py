"""ORM tables, one module per area. Importing this package registers them all."""

from clove.models.account import ConnectedAccount, PhoneNumber, SendAs
from clove.models.activity import EmailActivity, Task
from clove.models.auth import ApiKey, OAuthApp, OAuthCode, OAuthToken
from clove.models.base import Base
from clove.models.crm import (
    Contact,
    ContactEmail,
    ContactPhone,
    ContactUrl,
    Lead,
    LeadAddress,
    LeadStatus,
)
from clove.models.custom_field import CustomField
from clove.models.email import EmailTemplate, UnsubscribedEmail
from clove.models.event import Event
from clove.models.job import BulkAction, BulkActionItem, Job
from clove.models.organization import Membership, Organization, User
from clove.models.saved_search import SavedSearch
from clove.models.sequence import Sequence, SequenceStep, SequenceStepRun, SequenceSubscription
from clove.models.webhook import Webhook, WebhookDelivery

__all__ = [
    "ApiKey",
    "Base",
    "BulkAction",
    "BulkActionItem",
    "ConnectedAccount",
    "Contact",
    "ContactEmail",
    "ContactPhone",
    "ContactUrl",
    "CustomField",
    "EmailActivity",
    "EmailTemplate",
    "Event",
    "Job",
    "Lead",
    "LeadAddress",
    "LeadStatus",
    "Membership",
    "OAuthApp",
    "OAuthCode",
    "OAuthToken",
    "Organization",
    "PhoneNumber",
    "SavedSearch",
    "SendAs",
    "Sequence",
    "SequenceStep",
    "SequenceStepRun",
    "SequenceSubscription",
    "Task",
    "UnsubscribedEmail",
    "User",
    "Webhook",
    "WebhookDelivery",
]
