"""SQLAlchemy models of the whole domain, importable from ``domain.models``."""

from domain.models.catalog import EVENT_KINDS, ORDER_KINDS, Event, ImportRun, Order, OrderLine, Product
from domain.models.lifecycle import ARMS, RfmSnapshot, TriggerAssignment
from domain.models.ops import API_KEY_SCOPES, ApiKey, AuditLog, JobLock, JobRunTotal, MailPause
from domain.models.people import (
    CONTACT_KINDS,
    DATE_KINDS,
    ClientContact,
    Customer,
    GiftGiven,
    ImportantDate,
    OccasionOptIn,
    Recipient,
    User,
)
from domain.models.pipeline import (
    EMAIL_STATUSES,
    SELECTION_STATUSES,
    GiftSelection,
    ModelArtifactChunk,
    ModelRun,
    NextPurchaseRun,
    OutboundEmail,
    SelectionPick,
)

__all__ = [
    "ARMS",
    "API_KEY_SCOPES",
    "CONTACT_KINDS",
    "DATE_KINDS",
    "EMAIL_STATUSES",
    "EVENT_KINDS",
    "ORDER_KINDS",
    "SELECTION_STATUSES",
    "ApiKey",
    "AuditLog",
    "ClientContact",
    "Customer",
    "Event",
    "GiftGiven",
    "GiftSelection",
    "ImportRun",
    "ImportantDate",
    "JobLock",
    "JobRunTotal",
    "MailPause",
    "ModelArtifactChunk",
    "ModelRun",
    "NextPurchaseRun",
    "OccasionOptIn",
    "Order",
    "OrderLine",
    "OutboundEmail",
    "Product",
    "Recipient",
    "RfmSnapshot",
    "SelectionPick",
    "TriggerAssignment",
    "User",
]
