"""A selection under review: picks by tier, alternatives for a slot, catalog search, email preview."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from config import Settings
from domain.customers.rejections import load_rejections
from domain.lifecycle.trigger_emails import render_trigger_email
from domain.messaging.signing import LinkSigner
from domain.models import (
    AuditLog,
    Customer,
    GiftGiven,
    GiftSelection,
    ImportantDate,
    Order,
    OrderLine,
    OutboundEmail,
    Product,
    Recipient,
)
from domain.models._types import naive_utc, utcnow
from domain.origin import real_orders
from domain.reminders.queueing import (
    EXPLANATIONS,
    TIER_NAMES,
    TRIGGER_KEY,
    RenderedEmail,
    occasion_label,
    render_reminder,
)
from domain.reminders.selections import EDITABLE_STATUSES
from domain.serving.candidates import CandidateRows, Catalog, default_candidates, profile_words

#: How many alternatives the page offers for one slot, and catalog search results.
ALTERNATIVES = 5
SEARCH_RESULTS = 12


@dataclass(frozen=True)
class ProductCard:
    """A product as the review page shows it."""

    product_id: int
    sku: str
    title: str
    price: Decimal
    currency: str
    image_url: str | None
    is_available: bool
    delivery_days: int


@dataclass(frozen=True)
class PickView:
    pick_id: int
    position: int
    product: ProductCard
    explanation: str
    source: str
    is_manual: bool


@dataclass
class TierView:
    number: int
    name: str
    low: float | None
    high: float | None
    picks: list[PickView] = field(default_factory=list)


@dataclass(frozen=True)
class AuditEntry:
    at: dt.datetime
    actor: str
    action: str
    details: dict[str, Any]


@dataclass
class SelectionView:
    selection: GiftSelection
    customer: Customer
    recipient: Recipient | None
    occasion: str
    tiers: list[TierView]
    audit: list[AuditEntry]
    emails: list[OutboundEmail]

    @property
    def can_edit(self) -> bool:
        return self.selection.status in EDITABLE_STATUSES

    def pick(self, pick_id: int) -> PickView | None:
        return next((p for t in self.tiers for p in t.picks if p.pick_id == pick_id), None)


def _card(product: Product) -> ProductCard:
    return ProductCard(
        product.id, product.sku, product.title, product.price, product.currency, product.image_url,
        bool(product.is_active and product.in_stock), product.delivery_days,
    )  # fmt: skip


def selection_view(session: Session, selection: GiftSelection) -> SelectionView:
    """Everything the review page shows about one selection (the caller checked the user may see it)."""
    customer = session.get(Customer, selection.customer_id)
    assert customer is not None  # the foreign key
    recipient = session.get(Recipient, selection.recipient_id) if selection.recipient_id else None
    date = session.get(ImportantDate, selection.important_date_id) if selection.important_date_id else None
    products = {
        p.id: p
        for p in session.scalars(
            select(Product).where(Product.id.in_([k.product_id for k in selection.picks]))
        )
    }
    bounds = selection.tier_bounds or []
    n_tiers = max(len(bounds), max((p.tier for p in selection.picks), default=0))
    names = TIER_NAMES["en"]
    tiers = [
        TierView(
            i,
            names[min(i - 1, len(names) - 1)],
            bounds[i - 1][0] if i <= len(bounds) else None,
            bounds[i - 1][1] if i <= len(bounds) else None,
        )
        for i in range(1, n_tiers + 1)
    ]
    for pick in sorted(selection.picks, key=lambda p: (p.tier, p.position, p.id)):
        explanation = EXPLANATIONS["en"].get(pick.explanation, pick.explanation)
        tiers[pick.tier - 1].picks.append(
            PickView(
                pick.id,
                pick.position,
                _card(products[pick.product_id]),
                explanation,
                pick.source,
                pick.is_manual,
            )
        )
    audit = [
        AuditEntry(a.at, a.actor, a.action, a.details or {})
        for a in session.scalars(
            select(AuditLog)
            .where(AuditLog.entity_type == "gift_selection", AuditLog.entity_id == str(selection.id))
            .order_by(AuditLog.at, AuditLog.id)
        )
    ]
    emails = list(
        session.scalars(
            select(OutboundEmail).where(OutboundEmail.selection_id == selection.id).order_by(OutboundEmail.id)
        )
    )
    label = occasion_label(selection.occasion_code, "en", date.title if date else None)
    return SelectionView(selection, customer, recipient, label, tiers, audit, emails)


def preview_email(
    session: Session, settings: Settings, selection: GiftSelection, now: dt.datetime | None = None
) -> RenderedEmail:
    """The email as the queueing job will render it from the selection's current version: a trigger's
    selection in its trigger's template (as of ``now``, default the current time), a reminder's in the
    reminder's."""
    signer = LinkSigner.from_settings(settings)
    if selection.occasion_key.startswith(TRIGGER_KEY):
        return render_trigger_email(session, settings, selection, naive_utc(now or utcnow()), signer=signer)
    customer = session.get(Customer, selection.customer_id)
    assert customer is not None  # the foreign key
    return render_reminder(session, selection, customer, signer)


def _never_offer(session: Session, selection: GiftSelection) -> set[int]:
    """Products this selection may not take: its own picks, what its recipient was already given, and
    what a manager took out of a selection for the same recipient."""
    out = {p.product_id for p in selection.picks}
    out.update(
        load_rejections(session, customer_ids=[selection.customer_id]).products_for(
            selection.customer_id, selection.recipient_id
        )
    )
    if selection.recipient_id is not None:
        out.update(
            session.scalars(
                select(GiftGiven.product_id).where(GiftGiven.recipient_id == selection.recipient_id)
            )
        )
        out.update(
            session.scalars(
                select(OrderLine.product_id)
                .join(Order, Order.id == OrderLine.order_id)
                .where(Order.recipient_id == selection.recipient_id, Order.kind == "sale", real_orders())
            )
        )
    return out


def alternatives(
    session: Session, settings: Settings, selection: GiftSelection, tier: int, now: dt.datetime
) -> list[ProductCard]:
    """What the recommender proposes for a slot in ``tier``: the same blended candidates planning uses, for
    this customer and recipient, within the tier's price bounds, deliverable before the date, never a
    product the recipient was given, a manager took out for them, or the selection holds."""
    now = naive_utc(now)
    catalog = Catalog.load(session)
    if catalog.n_items == 0:
        return []
    recipient = session.get(Recipient, selection.recipient_id) if selection.recipient_id else None
    profile = (
        profile_words(recipient.interests, recipient.gender, recipient.birth_on, selection.occasion_on)
        if recipient is not None
        else []
    )
    window = (selection.occasion_on, selection.occasion_on)
    scorer = default_candidates(session, settings, now=now, catalog=catalog, window=window)
    rows = CandidateRows(
        customer_ids=np.array([selection.customer_id], dtype=np.int64),
        recipient_ids=np.array([selection.recipient_id or -1], dtype=np.int64),
        profiles=[profile],
        occasion_codes=[selection.occasion_code],
        occasion_on=[selection.occasion_on],
    )
    scores = np.asarray(scorer(catalog, rows).scores[0], dtype=np.float64)
    ok = catalog.available & (catalog.delivery_days <= (selection.occasion_on - now.date()).days)
    bounds = selection.tier_bounds or []
    if 1 <= tier <= len(bounds):
        low, high = bounds[tier - 1]
        ok &= (catalog.prices >= low) & (catalog.prices < high)
    blocked = catalog.index_of(sorted(_never_offer(session, selection)))
    ok[blocked[blocked >= 0]] = False
    positions = np.flatnonzero(ok)
    best = positions[np.lexsort((positions, -scores[positions]))][:ALTERNATIVES]
    ids = [int(catalog.product_ids[i]) for i in best]
    products = {p.id: p for p in session.scalars(select(Product).where(Product.id.in_(ids)))}
    return [_card(products[i]) for i in ids]


def search_catalog(session: Session, selection: GiftSelection, query: str) -> list[ProductCard]:
    """Active, in-stock products whose title or SKU holds ``query`` and that this selection may take."""
    words = query.strip()
    if not words:
        return []
    pattern = f"%{words.lower()}%"
    blocked = _never_offer(session, selection)
    found = session.scalars(
        select(Product)
        .where(
            Product.is_active.is_(True),
            Product.in_stock.is_(True),
            or_(func.lower(Product.title).like(pattern), func.lower(Product.sku) == words.lower()),
        )
        .order_by(Product.price, Product.id)
        .limit(SEARCH_RESULTS + len(blocked))
    )
    return [_card(p) for p in found if p.id not in blocked][:SEARCH_RESULTS]
