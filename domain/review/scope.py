"""Who sees what: a manager only the clients assigned to them, an admin every client."""

from __future__ import annotations

from sqlalchemy import ColumnElement, select, true
from sqlalchemy.orm import Session

from domain.errors import NotFound
from domain.models import Customer, GiftSelection, User

#: Roles that see every client.
SEE_ALL_ROLES = ("admin",)


def sees_all(user: User) -> bool:
    return user.role in SEE_ALL_ROLES


def visible(user: User) -> ColumnElement[bool]:
    """A condition on :class:`Customer` rows: the clients this user may see (never erased ones)."""
    mine = true() if sees_all(user) else Customer.account_manager_id == user.id
    return mine & Customer.erased_at.is_(None)


def customer_for(session: Session, user: User, customer_id: int) -> Customer:
    """The client, if this user may see them; else NotFound (never "forbidden": it would say they exist)."""
    customer = session.scalar(select(Customer).where(Customer.id == customer_id, visible(user)))
    if customer is None:
        raise NotFound("client", customer_id)
    return customer


def selection_for(session: Session, user: User, selection_id: int) -> GiftSelection:
    """The selection, if its client is one this user may see; else NotFound."""
    selection = session.scalar(
        select(GiftSelection)
        .join(Customer, Customer.id == GiftSelection.customer_id)
        .where(GiftSelection.id == selection_id, visible(user))
    )
    if selection is None:
        raise NotFound("selection", selection_id)
    return selection
