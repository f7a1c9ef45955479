"""Admins assign clients (VIP customers) to account managers, a few at once, and unassign them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from domain.errors import InvalidInput, NotFound
from domain.models import AuditLog, Customer, User
from domain.review.scope import sees_all

#: Roles a client can be assigned to.
ASSIGNABLE_ROLES = ("manager", "admin")
#: The most clients one form assigns at once.
MAX_AT_ONCE = 200


@dataclass(frozen=True)
class ClientRow:
    customer_id: int
    external_id: str
    name: str
    is_vip: bool
    manager_id: int | None
    manager_name: str | None


def _admin(user: User) -> None:
    """Only admins assign: anyone else is told there is no such page."""
    if not sees_all(user):
        raise NotFound("page", "assignments")


def managed_clients(session: Session, user: User) -> list[ClientRow]:
    """Every VIP or assigned client with their manager, by manager then name (admins only)."""
    _admin(user)
    rows = session.execute(
        select(Customer, User.name)
        .outerjoin(User, User.id == Customer.account_manager_id)
        .where(
            Customer.erased_at.is_(None),
            or_(Customer.is_vip.is_(True), Customer.account_manager_id.is_not(None)),
        )
        .order_by(User.name.is_(None).desc(), User.name, Customer.name, Customer.id)
    ).all()
    return [
        ClientRow(
            c.id, c.external_id, c.name or f"Customer {c.external_id}", c.is_vip, c.account_manager_id, m
        )
        for c, m in rows
    ]


def assignable_managers(session: Session) -> list[User]:
    """Active users who can look after clients, by name."""
    return list(
        session.scalars(
            select(User)
            .where(User.is_active.is_(True), User.role.in_(ASSIGNABLE_ROLES))
            .order_by(User.name, User.id)
        )
    )


def _audit(session: Session, by: User, customer: Customer, before: int | None, after: int | None) -> None:
    action = "client.assigned" if after is not None else "client.unassigned"
    session.add(
        AuditLog.by_user(
            by, action, "customer", customer.id, before_manager_id=before, after_manager_id=after
        )
    )


def _clients(session: Session, customer_ids: Sequence[int]) -> list[Customer]:
    ids = sorted(set(customer_ids))
    if not ids:
        raise InvalidInput("customer_ids", "choose at least one client")
    if len(ids) > MAX_AT_ONCE:
        raise InvalidInput("customer_ids", f"at most {MAX_AT_ONCE} clients at once")
    found = {
        c.id: c
        for c in session.scalars(select(Customer).where(Customer.id.in_(ids), Customer.erased_at.is_(None)))
    }
    missing = [i for i in ids if i not in found]
    if missing:
        raise InvalidInput("customer_ids", f"no such client: {', '.join(map(str, missing))}")
    return [found[i] for i in ids]


def assign_clients(session: Session, by: User, customer_ids: Sequence[int], manager_id: int) -> int:
    """Give these clients to one manager (all of them or, on any bad id, none). Returns how many changed
    hands; each change is in the audit log with the manager before and after."""
    _admin(by)
    manager = session.get(User, manager_id)
    if manager is None or not manager.is_active or manager.role not in ASSIGNABLE_ROLES:
        raise InvalidInput("manager_id", "choose an active manager")
    changed = 0
    for customer in _clients(session, customer_ids):
        if customer.account_manager_id != manager.id:
            _audit(session, by, customer, customer.account_manager_id, manager.id)
            customer.account_manager_id = manager.id
            changed += 1
    session.flush()
    return changed


def unassign_clients(session: Session, by: User, customer_ids: Sequence[int]) -> int:
    """Take these clients from their manager (they stay VIPs, seen by admins); returns how many had one."""
    _admin(by)
    changed = 0
    for customer in _clients(session, customer_ids):
        if customer.account_manager_id is not None:
            _audit(session, by, customer, customer.account_manager_id, None)
            customer.account_manager_id = None
            changed += 1
    session.flush()
    return changed
