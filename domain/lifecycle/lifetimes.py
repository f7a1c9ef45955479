"""Replacement lifetimes per category: learned from customers' repurchase intervals where there is enough
data, else the configured window (``triggers.replacement_lifetimes``).

The shop names the categories that are replaced (bags, wallets...) in the configuration; the data says when.
A configured category with at least ``triggers.replacement_min_intervals`` repurchase intervals gets the
middle half of them (:mod:`recommender.lifetimes`); the others keep the configured window. Categories
the shop did not configure are reported (what would be learned) but never fire the replacement trigger.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from config import Settings
from domain.models import Order, OrderLine, Product
from domain.origin import real_orders
from domain.serving.next_purchase import day_number
from recommender.lifetimes import learn_lifetimes, repurchase_intervals

__all__ = ["CategoryLifetime", "category_lifetimes"]


@dataclass(frozen=True)
class CategoryLifetime:
    """One category: its configured and learned windows (days after the last purchase), and the data."""

    category: str
    configured: tuple[int, int] | None
    learned: tuple[int, int] | None
    median_days: float | None
    intervals: int

    @property
    def window(self) -> tuple[int, int] | None:
        """What the replacement trigger uses: learned where there was enough data, else configured; None
        for a category the shop did not configure (it never fires)."""
        if self.configured is None:
            return None
        return self.learned or self.configured

    @property
    def source(self) -> str:
        if self.configured is None:
            return "not configured"
        return "learned" if self.learned else "configured"


def category_lifetimes(
    session: Session, settings: Settings, now: dt.datetime, *, configured_only: bool = False
) -> list[CategoryLifetime]:
    """Every configured category, and every other one with enough intervals to learn, by name;
    ``configured_only``: the configured ones only (what the replacement trigger uses), reading only
    their sales.

    One query: the distinct (customer, category, day) of sales up to `now`, the day a number computed
    by the database.
    """
    configured = {name: (first, last) for name, first, last in settings.triggers.lifetimes()}
    if configured_only and not configured:
        return []
    day = day_number(session)
    statement = (
        select(Order.customer_id, Product.category, day)
        .join(OrderLine, OrderLine.order_id == Order.id)
        .join(Product, Product.id == OrderLine.product_id)
        .where(
            Order.kind == "sale",
            Order.customer_id.is_not(None),
            Order.ordered_at <= now,
            Product.category.is_not(None),
            real_orders(),
        )
        .distinct()
    )
    if configured_only:
        statement = statement.where(Product.category.in_(sorted(configured)))
    rows = session.execute(statement).all()
    names = sorted({str(r[1]) for r in rows} | set(configured))
    code = {name: i for i, name in enumerate(names)}
    n = len(rows)
    cats, gaps = repurchase_intervals(
        np.fromiter((r[0] for r in rows), dtype=np.int64, count=n),
        np.fromiter((code[str(r[1])] for r in rows), dtype=np.int64, count=n),
        np.fromiter((r[2] for r in rows), dtype=np.int64, count=n),
    )
    min_count = settings.triggers.replacement_min_intervals
    learned = learn_lifetimes(cats, gaps, len(names), min_count=min_count)
    out = []
    for name in names:
        i = code[name]
        if name not in configured and not learned.learned[i]:
            continue
        median = float(learned.median[i])
        out.append(
            CategoryLifetime(
                name,
                configured.get(name),
                learned.window(i),
                None if np.isnan(median) else median,
                int(learned.counts[i]),
            )
        )
    return out
