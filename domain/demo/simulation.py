"""A seeded uplift simulation: purchases generated after trigger emails with a known extra probability.

The source data has no trigger emails, so it cannot show what they do. This plants an effect: every customer
recorded eligible for a trigger buys, within the attribution window, with ``base_probability`` whatever their
arm, and a treated customer whose email was sent buys with ``extra_probability`` on top. The campaign report
(:mod:`domain.lifecycle.campaigns`) should then find, by assignment, a conversion difference of about
``sent share x extra x (1 - base)`` with that value inside its interval. Generated orders are labelled
``source = 'simulation'`` and their ids start with ``SIM-``; a re-run adds nothing. Training, bestsellers,
next purchase, RFM and category lifetimes never read them (:func:`domain.origin.real_orders`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from config import Settings
from domain.models import (
    Customer,
    Order,
    OrderLine,
    OutboundEmail,
    Product,
    SelectionPick,
    TriggerAssignment,
)
from domain.origin import SIMULATED

__all__ = ["SOURCE", "SimulationResult", "simulate_uplift"]

#: ``orders.source`` of every generated order: training, next purchase and RFM leave them out.
SOURCE = SIMULATED


@dataclass
class SimulationResult:
    """Orders added, and per trigger the planted conversion difference treated - control (by assignment)."""

    orders: int = 0
    planted: dict[str, float] = field(default_factory=dict)


def simulate_uplift(
    session: Session,
    settings: Settings,
    since: dt.date,
    until: dt.date,
    *,
    extra_probability: float,
    base_probability: float = 0.0,
    seed: int = 20111209,
) -> SimulationResult:
    """Generate purchases for the trigger assignments eligible from ``since`` to ``until``; never commits.

    Draws are made in the order of (the shop's customer id, trigger, window), so a seed gives the same
    orders on every database.
    """
    if not (0 <= extra_probability <= 1 and 0 <= base_probability <= 1):
        raise ValueError("probabilities must be in [0, 1]")
    rows = session.execute(
        select(TriggerAssignment, Customer.external_id)
        .join(Customer, Customer.id == TriggerAssignment.customer_id)
        .where(TriggerAssignment.eligible_on >= since, TriggerAssignment.eligible_on <= until)
    ).all()
    rows = sorted(rows, key=lambda r: (r[1], r[0].trigger, r[0].window_key))
    sent = {
        sid
        for sid in session.scalars(select(OutboundEmail.selection_id).where(OutboundEmail.status == "sent"))
        if sid is not None
    }
    fallback = session.scalar(
        select(Product)
        .where(Product.is_active.is_(True), Product.in_stock.is_(True))
        .order_by(Product.id)
        .limit(1)
    )
    existing = set(session.scalars(select(Order.external_id).where(Order.source == SOURCE)))
    rng = np.random.default_rng(seed)
    days = max(settings.reminders.attribution_days - 1, 1)
    result = SimulationResult()
    treated: dict[str, list[bool]] = {}
    for assignment, _ in rows:
        u_base, u_extra, offset = rng.random(), rng.random(), 1 + int(rng.integers(days))
        emailed = assignment.arm == "treatment" and assignment.selection_id in sent
        if assignment.arm == "treatment":
            treated.setdefault(assignment.trigger, []).append(emailed)
        buys = u_base < base_probability or (emailed and u_extra < extra_probability)
        key = f"SIM-{assignment.id}"
        if not buys or key in existing or fallback is None:
            continue
        product_id = fallback.id
        if assignment.selection_id is not None:
            pick = session.scalar(
                select(SelectionPick.product_id)
                .where(SelectionPick.selection_id == assignment.selection_id)
                .order_by(SelectionPick.tier, SelectionPick.position)
                .limit(1)
            )
            product_id = pick or product_id
        product = session.get(Product, product_id)
        assert product is not None
        order = Order(
            external_id=key,
            customer_id=assignment.customer_id,
            ordered_at=assignment.eligible_at + dt.timedelta(days=offset),
            source=SOURCE,
            currency=product.currency,
        )
        order.lines.append(OrderLine(line_no=1, product_id=product.id, quantity=1, unit_price=product.price))
        session.add(order)
        result.orders += 1
    for trigger, flags in treated.items():
        result.planted[trigger] = float(np.mean(flags)) * extra_probability * (1 - base_probability)
    session.flush()
    return result
