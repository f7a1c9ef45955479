"""Contacts with a client (call, message, meeting) logged by their manager, and the clients lapsing."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from domain.errors import InvalidInput
from domain.models import CONTACT_KINDS, AuditLog, ClientContact, Customer, Order, User
from domain.models._types import naive_utc
from domain.origin import real_orders
from domain.review.scope import customer_for, visible

MAX_CONTACT_NOTE = 1000
#: Contacts the client page lists, newest first.
RECENT_CONTACTS = 10


def log_contact(
    session: Session, user: User, customer_id: int, kind: str, note: str, now: dt.datetime
) -> ClientContact:
    """Record that ``user`` was in touch with a client at ``now``; NotFound unless the user sees the client.

    Raises :class:`InvalidInput` naming ``kind`` or ``note``.
    """
    customer = customer_for(session, user, customer_id)
    if kind not in CONTACT_KINDS:
        raise InvalidInput("kind", f"must be one of {', '.join(CONTACT_KINDS)}")
    text = (note or "").replace("\r\n", "\n").strip()
    if len(text) > MAX_CONTACT_NOTE:
        raise InvalidInput("note", f"must have at most {MAX_CONTACT_NOTE} characters")
    contact = ClientContact(
        customer_id=customer.id, user_id=user.id, kind=kind, note=text or None, contacted_at=naive_utc(now)
    )
    session.add(contact)
    session.flush()
    session.add(
        AuditLog.by_user(
            user, "client.contact_logged", "customer", customer.id, contact_id=contact.id, kind=kind
        )
    )
    session.flush()
    return contact


def recent_contacts(session: Session, customer_id: int) -> list[tuple[ClientContact, str | None]]:
    """A client's latest contacts with the name of who logged each (the caller checked visibility)."""
    rows = session.execute(
        select(ClientContact, User.name)
        .outerjoin(User, User.id == ClientContact.user_id)
        .where(ClientContact.customer_id == customer_id)
        .order_by(ClientContact.contacted_at.desc(), ClientContact.id.desc())
        .limit(RECENT_CONTACTS)
    ).all()
    return [(contact, name) for contact, name in rows]


@dataclass(frozen=True)
class LapsingClient:
    """A client with no purchase, or no contact, for longer than the settings allow (None: never)."""

    customer_id: int
    customer_name: str
    days_since_purchase: int | None
    days_since_contact: int | None
    no_purchase: bool
    no_contact: bool


def lapsing_clients(
    session: Session, user: User, now: dt.datetime, purchase_days: int, contact_days: int
) -> list[LapsingClient]:
    """The user's managed clients (VIP or assigned) past either threshold: those past both first, then the
    longest without a purchase (never counts as longest).

    Two grouped queries (last sale, last contact per client): no per-client SQL.
    """
    now = naive_utc(now)
    mine = select(Customer.id, Customer.name, Customer.external_id).where(
        visible(user), or_(Customer.is_vip.is_(True), Customer.account_manager_id.is_not(None))
    )
    clients = session.execute(mine).all()
    ids = select(mine.subquery().c.id)  # in SQL: no parameter per client, however many an admin sees
    last_sale = dict(
        session.execute(
            select(Order.customer_id, func.max(Order.ordered_at))
            .where(Order.customer_id.in_(ids), Order.kind == "sale", Order.ordered_at <= now, real_orders())
            .group_by(Order.customer_id)
        ).all()
    )
    last_contact = dict(
        session.execute(
            select(ClientContact.customer_id, func.max(ClientContact.contacted_at))
            .where(ClientContact.customer_id.in_(ids), ClientContact.contacted_at <= now)
            .group_by(ClientContact.customer_id)
        ).all()
    )
    out = []
    for cid, name, external_id in clients:
        sale, contact = last_sale.get(cid), last_contact.get(cid)
        since_sale = (now.date() - sale.date()).days if sale is not None else None
        since_contact = (now.date() - contact.date()).days if contact is not None else None
        no_purchase = since_sale is None or since_sale >= purchase_days
        no_contact = since_contact is None or since_contact >= contact_days
        if no_purchase or no_contact:
            out.append(
                LapsingClient(
                    cid, name or f"Customer {external_id}", since_sale, since_contact, no_purchase, no_contact
                )
            )
    never = 10**6  # never bought / never contacted: the longest wait of all
    out.sort(
        key=lambda c: (
            -(c.no_purchase and c.no_contact),
            -(never if c.days_since_purchase is None else c.days_since_purchase),
            -(never if c.days_since_contact is None else c.days_since_contact),
            c.customer_id,
        )
    )
    return out
