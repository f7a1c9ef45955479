"""Who is eligible for each trigger today: replacement, running out, win-back, new arrivals, abandoned cart,
review request.

Each finder reads what it needs in a few bulk queries, applies the pure rules of ``recommender.triggers``
and returns :class:`Firing` rows: a customer, the trigger, the window that fired it (its key makes a
repeated run add nothing) and the products behind it. Only customers who may be emailed are eligible
(consent given, not unsubscribed, not erased, an address): the control groups are drawn from the same
people as the treated, so the comparison is fair. Audience (RFM segments), cooldown and arms are applied
by :mod:`domain.lifecycle.assignments`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from config import Settings
from domain.lifecycle.lifetimes import category_lifetimes
from domain.models import Customer, Event, Order, OrderLine, Product, RfmSnapshot
from domain.origin import real_orders
from domain.serving.next_purchase import load_purchase_days
from recommender.next_purchase import RepurchaseIntervals
from recommender.triggers import replacement_due, review_request_due, running_out_due

__all__ = ["FINDERS", "Firing", "emailable_customers", "latest_segments"]

_EPOCH = dt.date(1970, 1, 1)
#: Ids per ``IN (...)`` list: well under SQLite's and PostgreSQL's parameter limits.
IN_CHUNK = 900


@dataclass(frozen=True)
class Firing:
    """A customer eligible for a trigger: ``window_key`` names what fired it; ``product_ids`` the products
    the email is about (the cart's items, the ones running out...); ``details`` go to the assignment."""

    customer_id: int
    trigger: str
    window_key: str
    product_ids: tuple[int, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)


def _day(value: dt.date) -> int:
    return (value - _EPOCH).days


def emailable_customers(session: Session) -> set[int]:
    """Customers a marketing email may go to: consent, an address, not unsubscribed, not erased."""
    rows = session.scalars(
        select(Customer.id).where(
            Customer.email_consent.is_(True),
            Customer.email.is_not(None),
            Customer.unsubscribed_at.is_(None),
            Customer.erased_at.is_(None),
        )
    )
    return set(rows)


def latest_segments(session: Session, today: dt.date) -> tuple[dt.date | None, dict[int, str]]:
    """The newest snapshot day up to ``today`` and every customer's segment on it."""
    day = session.scalar(select(func.max(RfmSnapshot.taken_on)).where(RfmSnapshot.taken_on <= today))
    if day is None:
        return None, {}
    rows = session.execute(
        select(RfmSnapshot.customer_id, RfmSnapshot.segment).where(RfmSnapshot.taken_on == day)
    )
    return day, {cid: segment for cid, segment in rows}


def find_replacement(
    session: Session, settings: Settings, now: dt.datetime, allowed: set[int]
) -> list[Firing]:
    """A category's lifetime reached since the customer's last purchase in it (one firing per category).

    The lifetime is learned from the data where there is enough, else the configured one
    (:mod:`domain.lifecycle.lifetimes`)."""
    if not settings.triggers.lifetimes():
        return []
    known = [lt for lt in category_lifetimes(session, settings, now, configured_only=True) if lt.window]
    lifetimes = {lt.category: lt.window for lt in known if lt.window is not None}
    sources = {lt.category: lt.source for lt in known}
    # the newest sale line of each (customer, category), found by the database: the latest order, and
    # in it the last line
    newest = (
        select(
            Order.customer_id,
            Product.category,
            Order.ordered_at,
            OrderLine.unit_price,
            Product.id.label("product_id"),
            func.row_number()
            .over(
                partition_by=(Order.customer_id, Product.category),
                order_by=(Order.ordered_at.desc(), OrderLine.id.desc()),
            )
            .label("rank"),
        )
        .join(OrderLine, OrderLine.order_id == Order.id)
        .join(Product, Product.id == OrderLine.product_id)
        .where(
            Order.kind == "sale",
            Order.customer_id.is_not(None),
            Order.ordered_at <= now,
            real_orders(),
            Product.category.in_(sorted(lifetimes)),
        )
        .subquery()
    )
    rows = session.execute(
        select(
            newest.c.customer_id,
            newest.c.category,
            newest.c.ordered_at,
            newest.c.unit_price,
            newest.c.product_id,
        )
        .where(newest.c.rank == 1)
        .order_by(newest.c.customer_id, newest.c.category)
    ).all()
    last: dict[tuple[int, str], tuple[dt.datetime, float, int]] = {
        (cid, category): (at, float(price), pid) for cid, category, at, price, pid in rows if cid in allowed
    }
    if not last:
        return []
    keys = list(last)
    days = np.array([_day(last[k][0].date()) for k in keys], dtype=np.int64)
    first = np.array([lifetimes[k[1]][0] for k in keys], dtype=np.int64)
    final = np.array([lifetimes[k[1]][1] for k in keys], dtype=np.int64)
    due = replacement_due(days, first, final, _day(now.date()))
    out = []
    for i in np.flatnonzero(due).tolist():
        (cid, category), (at, paid, pid) = keys[i], last[keys[i]]
        out.append(
            Firing(
                cid,
                "replacement",
                f"{category[:50]}:{at.date().isoformat()}",
                (pid,),
                {
                    "category": category,
                    "last_on": at.date().isoformat(),
                    "last_price": paid,
                    "lifetime": list(lifetimes[category]),
                    "lifetime_source": sources[category],
                },
            )
        )
    return out


def find_running_out(
    session: Session, settings: Settings, now: dt.datetime, allowed: set[int]
) -> list[Firing]:
    """Products the customer rebuys whose expected repurchase day (the next-purchase model's repurchase
    intervals) is near.

    Only the intervals are fitted: the trigger reads no BG/NBD estimate, and the pairs' intervals do not
    depend on how customers and products are numbered, so ids sorted by number serve (the endpoint's
    order by external id and SKU breaks ranking ties; there is no ranking here)."""
    ts = settings.triggers
    rows = load_purchase_days(session, until=now)
    if not len(rows):
        return []
    customer_ids, u = np.unique(rows.customer_ids, return_inverse=True)
    product_ids, i = np.unique(rows.product_ids, return_inverse=True)
    iv = RepurchaseIntervals().fit(u, i, rows.days, customer_ids.size, product_ids.size)
    mask = iv.pair_days >= ts.running_out_min_purchases
    mask &= running_out_due(iv.pair_last, iv.pair_interval, _day(now.date()), ts.running_out_days_before)
    by_customer: dict[int, list[tuple[int, int, float]]] = {}
    for p in np.flatnonzero(mask).tolist():
        cid = int(customer_ids[iv.pair_user[p]])
        if cid in allowed:
            pid = int(product_ids[iv.pair_item[p]])
            by_customer.setdefault(cid, []).append((pid, int(iv.pair_last[p]), float(iv.pair_interval[p])))
    out = []
    for cid, items in sorted(by_customer.items()):
        items.sort(key=lambda it: (it[1] + it[2], it[0]))  # soonest expected first
        expected = [
            (_EPOCH + dt.timedelta(days=round(last + interval))).isoformat() for _, last, interval in items
        ]
        pids = tuple(pid for pid, _, _ in items)
        out.append(
            Firing(
                cid,
                "running_out",
                f"products:{','.join(map(str, sorted(pids)))}"[:80],
                pids,
                {"expected_on": expected},
            )
        )
    return out


def find_winback(session: Session, settings: Settings, now: dt.datetime, allowed: set[int]) -> list[Firing]:
    """Customers who moved into a win-back segment (at risk, can't lose) since the previous snapshot."""
    audience = settings.triggers.audience("winback")
    day, segments = latest_segments(session, now.date())
    if day is None or not audience:
        return []
    previous_day = session.scalar(select(func.max(RfmSnapshot.taken_on)).where(RfmSnapshot.taken_on < day))
    _, before = latest_segments(session, previous_day) if previous_day else (None, {})
    out = []
    for cid, segment in sorted(segments.items()):
        if cid in allowed and segment in audience and before.get(cid) not in audience and cid in before:
            out.append(
                Firing(
                    cid,
                    "winback",
                    f"moved:{day.isoformat()}",
                    (),
                    {"from": before[cid], "to": segment, "on": day.isoformat()},
                )
            )
    return out


def find_new_arrivals(
    session: Session, settings: Settings, now: dt.datetime, allowed: set[int]
) -> list[Firing]:
    """Every allowed customer when products arrived in the last N days (the audience narrows it down)."""
    since = now - dt.timedelta(days=settings.triggers.new_arrivals_days)
    new = session.scalars(
        select(Product.id).where(
            Product.created_at > since,
            Product.created_at <= now,
            Product.is_active.is_(True),
            Product.in_stock.is_(True),
        )
    ).all()
    if not new:
        return []
    pids = tuple(sorted(new))
    return [Firing(cid, "new_arrivals", f"on:{now.date().isoformat()}", pids) for cid in sorted(allowed)]


def find_abandoned_cart(
    session: Session, settings: Settings, now: dt.datetime, allowed: set[int]
) -> list[Firing]:
    """Cart events N hours old or more (up to a maximum) whose products the customer has not bought since."""
    ts = settings.triggers
    newest = now - dt.timedelta(hours=ts.abandoned_cart_hours)
    oldest = now - dt.timedelta(hours=ts.abandoned_cart_max_hours)
    carts = session.execute(
        select(Event.customer_id, Event.product_id, Event.occurred_at).where(
            Event.kind == "cart",
            Event.customer_id.is_not(None),
            Event.product_id.is_not(None),
            Event.occurred_at >= oldest,
            Event.occurred_at <= newest,
        )
    ).all()
    carted: dict[int, dict[int, dt.datetime]] = {}
    for cid, pid, at in carts:
        if cid is not None and pid is not None and cid in allowed:
            items = carted.setdefault(cid, {})
            items[pid] = min(at, items.get(pid, at))
    if not carted:
        return []
    bought: set[tuple[int | None, int, dt.datetime]] = set()
    ids = sorted(carted)
    for start in range(0, len(ids), IN_CHUNK):
        bought.update(
            (cid, pid, at)
            for cid, pid, at in session.execute(
                select(Order.customer_id, OrderLine.product_id, Order.ordered_at)
                .join(OrderLine, OrderLine.order_id == Order.id)
                .where(
                    Order.kind == "sale",
                    Order.customer_id.in_(ids[start : start + IN_CHUNK]),
                    Order.ordered_at >= oldest,
                    Order.ordered_at <= now,
                    real_orders(),  # a generated order does not close a real cart
                )
            )
        )
    bought_after: dict[tuple[int, int], dt.datetime] = {}
    for cid, pid, at in bought:
        if cid is None:  # pragma: no cover - filtered by the IN list
            continue
        bought_after[(cid, pid)] = min(at, bought_after.get((cid, pid), at))
    out = []
    for cid in ids:
        left = {
            pid: at
            for pid, at in carted[cid].items()
            if not ((cid, pid) in bought_after and bought_after[(cid, pid)] >= at)
        }
        if left:
            first = min(left.values())
            out.append(
                Firing(
                    cid, "abandoned_cart", f"cart:{first.isoformat(timespec='minutes')}", tuple(sorted(left))
                )
            )
    return out


def find_review_request(
    session: Session, settings: Settings, now: dt.datetime, allowed: set[int]
) -> list[Firing]:
    """Orders that arrived quickly (the shop posted ``delivered_at``), the configured delay after delivery:
    one firing per order (its window is the order), with the order's products."""
    ts = settings.triggers
    today = now.date()
    # delivered on a day from (today - delay - window) to (today - delay): the SQL narrows, the rule decides
    first = dt.datetime.combine(
        today - dt.timedelta(days=ts.review_request_delay_days + ts.review_request_window_days), dt.time()
    )
    last = dt.datetime.combine(today - dt.timedelta(days=ts.review_request_delay_days - 1), dt.time())
    orders = session.execute(
        select(Order.id, Order.external_id, Order.customer_id, Order.ordered_at, Order.delivered_at)
        .where(
            Order.kind == "sale",
            Order.customer_id.is_not(None),
            Order.delivered_at >= first,
            Order.delivered_at < last,
            Order.delivered_at <= now,
        )
        .order_by(Order.id)
    ).all()
    orders = [o for o in orders if o.customer_id in allowed]
    if not orders:
        return []
    due = review_request_due(
        np.array([o.ordered_at for o in orders], dtype="datetime64[s]"),
        np.array([o.delivered_at for o in orders], dtype="datetime64[s]"),
        _day(today),
        max_delivery_days=ts.review_request_max_delivery_days,
        delay_days=ts.review_request_delay_days,
        window_days=ts.review_request_window_days,
    )
    fired = [orders[i] for i in np.flatnonzero(due).tolist()]
    products: dict[int, list[int]] = {}
    ids = [o.id for o in fired]
    for start in range(0, len(ids), IN_CHUNK):
        for oid, pid in session.execute(
            select(OrderLine.order_id, OrderLine.product_id)
            .where(OrderLine.order_id.in_(ids[start : start + IN_CHUNK]))
            .order_by(OrderLine.order_id, OrderLine.line_no)
        ):
            if pid not in products.setdefault(oid, []):
                products[oid].append(pid)
    return [
        Firing(
            int(o.customer_id),
            "review_request",
            f"order:{o.external_id}"[:80],
            tuple(products.get(o.id, [])),
            {
                "order_id": o.external_id,
                "ordered_at": o.ordered_at.isoformat(timespec="minutes"),
                "delivered_at": o.delivered_at.isoformat(timespec="minutes"),
            },
        )
        for o in fired
    ]


Finder = Callable[[Session, Settings, dt.datetime, set[int]], list[Firing]]

#: The finder of each trigger, in the order they are evaluated.
FINDERS: dict[str, Finder] = {
    "replacement": find_replacement,
    "running_out": find_running_out,
    "winback": find_winback,
    "new_arrivals": find_new_arrivals,
    "abandoned_cart": find_abandoned_cart,
    "review_request": find_review_request,
}
