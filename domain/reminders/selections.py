"""Curated gift selections: batch planning (re-exported from ``domain.reminders.planning``) and the review
use cases.

The use cases (approve, swap, remove, add, move, note, skip) serve the account managers' review pages and
the selections API. Each one that changes a selection writes an :class:`~domain.models.AuditLog` entry
naming the user, and raises :class:`~domain.errors.NotFound`, :class:`~domain.errors.InvalidInput` (with
the field at fault) or :class:`~domain.errors.Conflict` (a selection that was already sent, skipped or
failed cannot change).

Approval is of a version. Every edit raises ``version``; given ``expected_version`` (the version the
editor saw), a use case refuses with Conflict when someone saved in between. An edit to an approved
selection returns it to review (``awaiting_review``; one approved without a review deadline, i.e. not a
VIP's, goes back to ``ready``), and an email already queued for it is cancelled: the queueing job renders
the email again from the version then current, under a new outbox key. While an email is being sent (or
its outcome is unknown) the selection cannot change.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from domain.customers.rejections import load_rejections
from domain.errors import Conflict, InvalidInput, NotFound
from domain.messaging.outbox import cancel_queued
from domain.models import (
    SELECTION_STATUSES,
    AuditLog,
    Customer,
    GiftGiven,
    GiftSelection,
    Order,
    OrderLine,
    OutboundEmail,
    Product,
    SelectionPick,
    User,
)
from domain.models._types import utcnow
from domain.origin import real_orders
from domain.reminders.planning import (
    CutoffSummary,
    PlanSummary,
    apply_review_cutoff,
    plan_due_selections,
    plan_selections,
)
from recommender.curation import EXPLANATION_KEYS

__all__ = [
    "EDITABLE_STATUSES",
    "FINISHED_STATUSES",
    "CutoffSummary",
    "PlanSummary",
    "add_pick",
    "apply_review_cutoff",
    "approve_selection",
    "get_selection",
    "list_selections",
    "move_pick",
    "plan_due_selections",
    "plan_selections",
    "remove_pick",
    "set_note",
    "skip_selection",
    "swap_pick",
]

#: A selection in one of these states can still be edited and approved.
EDITABLE_STATUSES = ("planned", "ready", "awaiting_review", "approved")
#: Nothing changes a selection once it is in one of these.
FINISHED_STATUSES = tuple(s for s in SELECTION_STATUSES if s not in EDITABLE_STATUSES)
#: The longest personal note a manager may add to the email.
MAX_NOTE_LENGTH = 1000


def _load(session: Session, selection_id: int, *, for_update: bool = False) -> GiftSelection:
    stmt = (
        select(GiftSelection)
        .where(GiftSelection.id == selection_id)
        .options(selectinload(GiftSelection.picks))
    )
    if for_update:
        stmt = stmt.with_for_update(of=GiftSelection)
    selection = session.execute(stmt).scalar_one_or_none()
    if selection is None:
        raise NotFound("selection", selection_id)
    return selection


def _editable(session: Session, selection_id: int, expected_version: int | None = None) -> GiftSelection:
    selection = _load(session, selection_id, for_update=True)
    if selection.status not in EDITABLE_STATUSES:
        raise Conflict(f"selection {selection_id} is {selection.status}: it can no longer be changed")
    if expected_version is not None and expected_version != selection.version:
        raise Conflict(
            f"selection {selection_id} was changed by someone else since you opened it (you saw version "
            f"{expected_version}, it is now version {selection.version}); nothing was saved: reload the page"
        )
    in_flight = session.scalar(
        select(OutboundEmail.status).where(
            OutboundEmail.selection_id == selection_id, OutboundEmail.status.in_(("sending", "unknown"))
        )
    )
    if in_flight is not None:
        raise Conflict(f"the email of selection {selection_id} is being sent: it can no longer be changed")
    return selection


def _edited(session: Session, selection: GiftSelection, user: User) -> None:
    """After an edit: a new version; an approval is withdrawn, a queued email cancelled (never stale)."""
    selection.version += 1
    reason = f"selection edited by {user.email}: re-queued from version {selection.version}"
    cancelled = cancel_queued(session, reason=reason, selection_ids=[selection.id])
    if selection.status == "approved":
        selection.status = "awaiting_review" if selection.review_cutoff_at is not None else "ready"
        selection.status_reason = f"edited after approval (version {selection.approved_version})"
        _audit(
            session,
            user,
            "selection.returned_to_review",
            selection,
            approved_version=selection.approved_version,
            version=selection.version,
            emails_cancelled=cancelled,
        )
    elif cancelled:
        _audit(session, user, "selection.email_cancelled", selection, version=selection.version)


def _audit(session: Session, user: User, action: str, selection: GiftSelection, **details: Any) -> None:
    session.add(AuditLog.by_user(user, action, "gift_selection", selection.id, **details))


def _find_pick(selection: GiftSelection, pick_id: int) -> SelectionPick:
    for pick in selection.picks:
        if pick.id == pick_id:
            return pick
    raise NotFound("pick", pick_id)


def _product_for(session: Session, selection: GiftSelection, sku: str) -> Product:
    """The product with `sku`, checked to be offerable in this selection."""
    sku = (sku or "").strip()
    if not sku:
        raise InvalidInput("product_sku", "a SKU is required")
    product = session.execute(select(Product).where(Product.sku == sku)).scalar_one_or_none()
    if product is None:
        raise InvalidInput("product_sku", f"no product with SKU {sku!r}")
    if not (product.is_active and product.in_stock):
        raise InvalidInput("product_sku", f"product {sku!r} is not active and in stock")
    if any(p.product_id == product.id for p in selection.picks):
        raise InvalidInput("product_sku", f"product {sku!r} is already in this selection")
    rejected = load_rejections(session, customer_ids=[selection.customer_id])
    if product.id in rejected.products_for(selection.customer_id, selection.recipient_id):
        raise InvalidInput(
            "product_sku",
            f"product {sku!r} was removed from a selection for this recipient: it is not offered again",
        )
    if selection.recipient_id is not None:
        given = session.execute(
            select(func.count())
            .select_from(GiftGiven)
            .where(GiftGiven.recipient_id == selection.recipient_id, GiftGiven.product_id == product.id)
        ).scalar_one()
        given += session.execute(
            select(func.count())
            .select_from(OrderLine)
            .join(Order, Order.id == OrderLine.order_id)
            .where(
                Order.recipient_id == selection.recipient_id,
                Order.kind == "sale",
                OrderLine.product_id == product.id,
                real_orders(),
            )
        ).scalar_one()
        if given:
            raise InvalidInput("product_sku", f"product {sku!r} was already given to this recipient")
    return product


def get_selection(session: Session, selection_id: int) -> GiftSelection:
    """One selection with its picks; NotFound when there is none."""
    return _load(session, selection_id)


def list_selections(
    session: Session, customer_external_id: str, status: str | None = None
) -> list[GiftSelection]:
    """A customer's selections (optionally in one status), soonest occasion first."""
    if status is not None and status not in SELECTION_STATUSES:
        raise InvalidInput("status", f"must be one of {', '.join(SELECTION_STATUSES)}")
    customer_id = session.execute(
        select(Customer.id).where(Customer.external_id == customer_external_id)
    ).scalar_one_or_none()
    if customer_id is None:
        raise NotFound("customer", customer_external_id)
    stmt = (
        select(GiftSelection)
        .where(GiftSelection.customer_id == customer_id)
        .options(selectinload(GiftSelection.picks))
        .order_by(GiftSelection.occasion_on, GiftSelection.id)
    )
    if status is not None:
        stmt = stmt.where(GiftSelection.status == status)
    return list(session.execute(stmt).scalars())


def approve_selection(
    session: Session, selection_id: int, user: User, *, expected_version: int | None = None
) -> GiftSelection:
    """An account manager approves the current version of a selection (approving twice changes nothing)."""
    selection = _editable(session, selection_id, expected_version)
    if selection.status == "approved" and selection.approved_version == selection.version:
        return selection
    if not selection.picks:
        raise InvalidInput("picks", "a selection needs at least one pick to be approved")
    previous = selection.status
    selection.status = "approved"
    selection.status_reason = None
    selection.approved_version = selection.version
    selection.reviewed_by_id = user.id
    selection.reviewed_at = utcnow()
    _audit(
        session, user, "selection.approved", selection, previous_status=previous, version=selection.version
    )
    session.flush()
    return selection


def swap_pick(
    session: Session,
    selection_id: int,
    pick_id: int,
    product_sku: str,
    user: User,
    *,
    expected_version: int | None = None,
) -> SelectionPick:
    """Replace a pick's product, keeping its tier and position; the pick becomes manual."""
    selection = _editable(session, selection_id, expected_version)
    pick = _find_pick(selection, pick_id)
    product = _product_for(session, selection, product_sku)
    old_product_id = pick.product_id
    pick.product_id = product.id
    pick.price_at_pick = product.price
    pick.source = "manual"
    pick.explanation = EXPLANATION_KEYS["manual"]
    pick.score = 0.0
    pick.is_manual = True
    _audit(
        session,
        user,
        "selection.pick_swapped",
        selection,
        pick_id=pick.id,
        tier=pick.tier,
        old_product_id=old_product_id,
        new_product_id=product.id,
        sku=product.sku,
    )
    _edited(session, selection, user)
    session.flush()
    return pick


def remove_pick(
    session: Session, selection_id: int, pick_id: int, user: User, *, expected_version: int | None = None
) -> None:
    """Take a pick out of a selection."""
    selection = _editable(session, selection_id, expected_version)
    pick = _find_pick(selection, pick_id)
    _audit(
        session,
        user,
        "selection.pick_removed",
        selection,
        pick_id=pick.id,
        tier=pick.tier,
        product_id=pick.product_id,
    )
    selection.picks.remove(pick)
    _edited(session, selection, user)
    session.flush()


def _tier_for(selection: GiftSelection, price: Decimal) -> int:
    """The tier (1-based) whose bounds hold `price`; below the first -> 1, above the last -> the last."""
    bounds = selection.tier_bounds or []
    for i, (_lo, hi) in enumerate(bounds, start=1):
        if float(price) < hi:
            return i
    return len(bounds) or 1


def add_pick(
    session: Session,
    selection_id: int,
    product_sku: str,
    user: User,
    *,
    tier: int | None = None,
    expected_version: int | None = None,
) -> SelectionPick:
    """Add a product to a selection, in `tier` (1 = cheapest) or the tier its price falls in."""
    selection = _editable(session, selection_id, expected_version)
    n_tiers = max(len(selection.tier_bounds or []), max((p.tier for p in selection.picks), default=1))
    if tier is not None and not 1 <= tier <= n_tiers:
        raise InvalidInput("tier", f"must be between 1 and {n_tiers}")
    product = _product_for(session, selection, product_sku)
    target = tier if tier is not None else _tier_for(selection, product.price)
    position = max((p.position for p in selection.picks if p.tier == target), default=0) + 1
    pick = SelectionPick(
        product_id=product.id,
        tier=target,
        position=position,
        score=0.0,
        source="manual",
        explanation=EXPLANATION_KEYS["manual"],
        price_at_pick=product.price,
        is_manual=True,
    )
    selection.picks.append(pick)
    session.flush()
    _audit(
        session,
        user,
        "selection.pick_added",
        selection,
        pick_id=pick.id,
        tier=target,
        product_id=product.id,
        sku=product.sku,
    )
    _edited(session, selection, user)
    session.flush()
    return pick


def set_note(
    session: Session, selection_id: int, note: str, user: User, *, expected_version: int | None = None
) -> GiftSelection:
    """The manager's personal note in the email ("" removes it); an unchanged note changes nothing."""
    text = (note or "").replace("\r\n", "\n").strip()
    if len(text) > MAX_NOTE_LENGTH:
        raise InvalidInput("note", f"must have at most {MAX_NOTE_LENGTH} characters (it has {len(text)})")
    selection = _editable(session, selection_id, expected_version)
    if (selection.note or "") == text:
        return selection
    _audit(session, user, "selection.note_set", selection, before=selection.note, after=text or None)
    selection.note = text or None
    _edited(session, selection, user)
    session.flush()
    return selection


def skip_selection(
    session: Session, selection_id: int, reason: str, user: User, *, expected_version: int | None = None
) -> GiftSelection:
    """The manager decides no email goes out for this occasion; the reason is required and recorded."""
    why = (reason or "").strip()
    if not why:
        raise InvalidInput("reason", "say why this selection is skipped")
    if len(why) > 200:
        raise InvalidInput("reason", "must have at most 200 characters")
    selection = _editable(session, selection_id, expected_version)
    previous = selection.status
    selection.status, selection.status_reason = "skipped", f"skipped by {user.name}: {why}"
    cancel_queued(session, reason=f"selection skipped by {user.email}", selection_ids=[selection.id])
    _audit(session, user, "selection.skipped", selection, previous_status=previous, reason=why)
    session.flush()
    return selection


def move_pick(
    session: Session,
    selection_id: int,
    pick_id: int,
    step: int,
    user: User,
    *,
    expected_version: int | None = None,
) -> SelectionPick:
    """Move a pick one place up (``step=-1``) or down (``+1``) within its tier, as the email lists them."""
    if step not in (-1, 1):
        raise InvalidInput("step", "must be -1 (up) or 1 (down)")
    selection = _editable(session, selection_id, expected_version)
    pick = _find_pick(selection, pick_id)
    tier = sorted((p for p in selection.picks if p.tier == pick.tier), key=lambda p: (p.position, p.id))
    at = tier.index(pick)
    if not 0 <= at + step < len(tier):
        raise InvalidInput("step", f"the pick is already {'first' if step < 0 else 'last'} in its tier")
    order = [p.id for p in tier]
    tier[at], tier[at + step] = tier[at + step], tier[at]
    positions = sorted(p.position for p in tier)
    if len(set(positions)) < len(positions):  # ties: number the tier afresh
        positions = list(range(1, len(tier) + 1))
    for p, position in zip(tier, positions, strict=True):
        p.position = position
    _audit(
        session,
        user,
        "selection.pick_moved",
        selection,
        pick_id=pick.id,
        tier=pick.tier,
        before=order,
        after=[p.id for p in tier],
    )
    _edited(session, selection, user)
    session.flush()
    return pick
