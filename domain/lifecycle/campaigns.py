"""The campaign report: per trigger and per reminder occasion, who was eligible, emailed, clicked, bought.

Triggers are analysed by assignment (intention to treat): every customer recorded eligible in the period
counts in their arm, emailed or not. The control side is the per-trigger control and the global holdout
together (neither gets that trigger's email, and both are drawn by hash independently of the customer).
"Ordered" is any sale order of the customer within ``reminders.attribution_days`` after they became
eligible (a reminder: after its selection was planned), "revenue" the sum of those orders. Reminders have
no control group, so their uplift is never estimated. Uplift statistics: :mod:`recommender.uplift`.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from config import Settings
from domain.models import Event, GiftSelection, Order, OrderLine, OutboundEmail, TriggerAssignment
from domain.reminders.queueing import TRIGGER_KEY
from recommender.uplift import Uplift, uplift

__all__ = ["CampaignReport", "CampaignRow", "campaign_report"]

IN_CHUNK = 900


@dataclass(frozen=True)
class CampaignRow:
    """One trigger (``trigger:winback``) or reminder occasion (``reminder:birthday``) in the period."""

    campaign: str
    eligible: int
    treated: int
    control: int
    holdout: int
    sent: int
    clicked: int
    ordered_treated: int
    ordered_control: int
    revenue_treated: float
    revenue_control: float
    uplift: Uplift | None

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "uplift"}
        out["uplift"] = None if self.uplift is None else dict(self.uplift.__dict__)
        return out


@dataclass(frozen=True)
class CampaignReport:
    since: dt.date
    until: dt.date
    attribution_days: int
    min_group_size: int
    rows: list[CampaignRow] = field(default_factory=list)


@dataclass
class _Unit:
    customer_id: int
    at: dt.datetime
    arm: str
    selection_id: int | None


def _chunks(values: list[int]) -> Iterable[list[int]]:
    for start in range(0, len(values), IN_CHUNK):
        yield values[start : start + IN_CHUNK]


def _orders(session: Session, customer_ids: list[int], lo: dt.datetime, hi: dt.datetime) -> dict[int, Any]:
    """Per customer: sorted order times and the running revenue, for window sums by bisection."""
    amounts: dict[int, list[tuple[dt.datetime, float]]] = defaultdict(list)
    # Every order, the simulated ones included (no real_orders() here): measuring the uplift that
    # `giftrec demo simulate-uplift` plants is what those orders are for, and only this report reads them.
    for chunk in _chunks(customer_ids):
        for cid, at, amount in session.execute(
            select(Order.customer_id, Order.ordered_at, func.sum(OrderLine.quantity * OrderLine.unit_price))
            .join(OrderLine, OrderLine.order_id == Order.id)
            .where(
                Order.kind == "sale",
                Order.customer_id.in_(chunk),
                Order.ordered_at > lo,
                Order.ordered_at <= hi,
            )
            .group_by(Order.id, Order.customer_id, Order.ordered_at)
        ):
            if cid is not None:
                amounts[cid].append((at, float(amount)))
    out = {}
    for cid, rows in amounts.items():
        rows.sort()
        out[cid] = ([at for at, _ in rows], np.concatenate([[0.0], np.cumsum([a for _, a in rows])]))
    return out


def _outcomes(
    units: list[_Unit], orders: dict[int, Any], window: dt.timedelta
) -> tuple[np.ndarray, np.ndarray]:
    bought = np.zeros(len(units), dtype=bool)
    revenue = np.zeros(len(units))
    for i, u in enumerate(units):
        if u.customer_id not in orders:
            continue
        times, cumulative = orders[u.customer_id]
        a, b = bisect.bisect_right(times, u.at), bisect.bisect_right(times, u.at + window)
        bought[i] = b > a
        revenue[i] = cumulative[b] - cumulative[a]
    return bought, revenue


def _delivery(session: Session, selection_ids: list[int]) -> tuple[set[int], set[int]]:
    """Selections whose email was sent, and those clicked in (an email click event names the selection)."""
    sent: set[int] = set()
    clicked: set[int] = set()
    for chunk in _chunks(selection_ids):
        sent.update(
            sid
            for sid in session.scalars(
                select(OutboundEmail.selection_id).where(
                    OutboundEmail.selection_id.in_(chunk), OutboundEmail.status == "sent"
                )
            )
            if sid is not None
        )
        keys = [f"selection:{sid}" for sid in chunk]
        clicked.update(
            int(key.split(":")[1])
            for key in session.scalars(
                select(Event.recommendation_id).where(
                    Event.kind == "click", Event.recommendation_id.in_(keys)
                )
            )
            if key
        )
    return sent, clicked


def campaign_report(
    session: Session, settings: Settings, since: dt.date, until: dt.date, *, seed: int = 0
) -> CampaignReport:
    """Every trigger and reminder occasion with customers eligible from ``since`` to ``until`` (inclusive)."""
    window = dt.timedelta(days=settings.reminders.attribution_days)
    campaigns: dict[str, list[_Unit]] = defaultdict(list)
    for a in session.scalars(
        select(TriggerAssignment)
        .where(TriggerAssignment.eligible_on >= since, TriggerAssignment.eligible_on <= until)
        .order_by(TriggerAssignment.id)
    ):
        campaigns[f"trigger:{a.trigger}"].append(_Unit(a.customer_id, a.eligible_at, a.arm, a.selection_id))
    start, end = dt.datetime.combine(since, dt.time()), dt.datetime.combine(until, dt.time.max)
    for s in session.scalars(
        select(GiftSelection)
        .where(
            ~GiftSelection.occasion_key.startswith(TRIGGER_KEY),
            GiftSelection.created_at >= start,
            GiftSelection.created_at <= end,
            GiftSelection.status != "skipped",
        )
        .order_by(GiftSelection.id)
    ):
        campaigns[f"reminder:{s.occasion_code}"].append(_Unit(s.customer_id, s.created_at, "treatment", s.id))
    report = CampaignReport(
        since, until, settings.reminders.attribution_days, settings.triggers.min_group_size
    )
    if not campaigns:
        return report
    units = [u for us in campaigns.values() for u in us]
    orders = _orders(
        session,
        sorted({u.customer_id for u in units}),
        min(u.at for u in units),
        max(u.at for u in units) + window,
    )
    sent, clicked = _delivery(session, sorted({u.selection_id for u in units if u.selection_id is not None}))
    for name in sorted(campaigns):
        us = campaigns[name]
        bought, revenue = _outcomes(us, orders, window)
        treated = np.array([u.arm == "treatment" for u in us])
        control = ~treated
        estimate = None
        if name.startswith("trigger:"):
            estimate = uplift(
                bought[treated],
                revenue[treated],
                bought[control],
                revenue[control],
                min_group_size=settings.triggers.min_group_size,
                seed=seed,
            )
        report.rows.append(
            CampaignRow(
                campaign=name,
                eligible=len(us),
                treated=int(treated.sum()),
                control=int(control.sum()),
                holdout=sum(u.arm == "holdout" for u in us),
                sent=sum(u.selection_id in sent for u in us),
                clicked=sum(u.selection_id in clicked for u in us),
                ordered_treated=int(bought[treated].sum()),
                ordered_control=int(bought[control].sum()),
                revenue_treated=round(float(revenue[treated].sum()), 2),
                revenue_control=round(float(revenue[control].sum()), 2),
                uplift=estimate,
            )
        )
    return report
