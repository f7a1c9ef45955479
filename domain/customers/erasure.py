"""Erasure of a customer: personal data, recipients, selections, mail, events, snapshots, contacts gone;
orders kept."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from domain.errors import NotFound
from domain.models import (
    AuditLog,
    ClientContact,
    Customer,
    Event,
    GiftGiven,
    GiftSelection,
    ImportantDate,
    OccasionOptIn,
    Order,
    OutboundEmail,
    Recipient,
    RfmSnapshot,
)
from domain.models._types import utcnow


@dataclass(frozen=True, slots=True)
class ErasureResult:
    customer_id: int
    already_erased: bool
    events_deleted: int
    recipients_deleted: int
    selections_deleted: int
    emails_deleted: int
    orders_detached: int


def erase_customer(session: Session, external_id: str, *, actor: str) -> ErasureResult:
    """Erase a customer's personal data and interactions; the next training no longer sees them.

    Name, email and country are blanked and consent withdrawn; recipients (with their dates and gifts),
    selections, opt-ins, queued or past emails and events are deleted; orders stay for the shop's totals
    but are detached (``customer_id`` NULL, like guest sales), so popularity still counts them while no
    model learns this customer again. The row stays, marked ``erased_at``, so that the shop's id is not
    re-used by accident. Erasing twice changes nothing more.
    """
    customer = session.scalar(select(Customer).where(Customer.external_id == external_id))
    if customer is None:
        raise NotFound("customer", external_id)
    if customer.erased_at is not None:
        return ErasureResult(customer.id, True, 0, 0, 0, 0, 0)
    cid = customer.id

    def count(model: Any, *where: Any) -> int:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)

    recipient_ids = list(session.scalars(select(Recipient.id).where(Recipient.customer_id == cid)))
    result = ErasureResult(
        customer_id=cid,
        already_erased=False,
        events_deleted=count(Event, Event.customer_id == cid),
        recipients_deleted=len(recipient_ids),
        selections_deleted=count(GiftSelection, GiftSelection.customer_id == cid),
        emails_deleted=count(OutboundEmail, OutboundEmail.customer_id == cid),
        orders_detached=count(Order, Order.customer_id == cid),
    )
    # Children first: the explicit deletes do not depend on ON DELETE CASCADE being enforced.
    session.execute(delete(OutboundEmail).where(OutboundEmail.customer_id == cid))
    session.execute(delete(GiftSelection).where(GiftSelection.customer_id == cid))
    session.execute(delete(OccasionOptIn).where(OccasionOptIn.customer_id == cid))
    session.execute(delete(Event).where(Event.customer_id == cid))
    session.execute(delete(RfmSnapshot).where(RfmSnapshot.customer_id == cid))
    session.execute(delete(ClientContact).where(ClientContact.customer_id == cid))  # managers' notes
    session.execute(update(Order).where(Order.customer_id == cid).values(customer_id=None, recipient_id=None))
    if recipient_ids:
        session.execute(delete(GiftGiven).where(GiftGiven.recipient_id.in_(recipient_ids)))
        session.execute(delete(ImportantDate).where(ImportantDate.recipient_id.in_(recipient_ids)))
        session.execute(delete(Recipient).where(Recipient.id.in_(recipient_ids)))
    now = utcnow()
    customer.name = None
    customer.email = None
    customer.country = None
    customer.email_consent = False
    customer.is_vip = False
    customer.account_manager_id = None
    customer.reminder_lead_days = None
    customer.unsubscribed_at = customer.unsubscribed_at or now
    customer.erased_at = now
    session.add(
        AuditLog(
            actor=actor,
            action="customer.erase",
            entity_type="customer",
            entity_id=str(cid),
            details={
                "events_deleted": result.events_deleted,
                "recipients_deleted": result.recipients_deleted,
                "selections_deleted": result.selections_deleted,
                "emails_deleted": result.emails_deleted,
                "orders_detached": result.orders_detached,
            },
        )
    )
    session.flush()
    session.expire_all()
    return result
