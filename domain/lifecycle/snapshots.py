"""The daily RFM snapshot: scores, segment, expected purchases and CLV of every customer, in bulk.

Purchases are the sale lines of registered, not erased customers up to the end of ``today`` (UTC), summed
per customer and day in the database (one aggregate query; a customer's several orders on one day are one
purchase). Returns are subtracted from the monetary value, not from the spend per purchase the Gamma-Gamma
model learns. Recency is measured on the data's clock, as next purchase and training do: ``today``, or the
newest purchase's day when that is earlier (the bundled UCI sample ends on 2011-12-09).

Scores use fixed cut points or the day's quintiles per dimension (``settings.rfm``); the segment is the
first matching rule of ``rfm.segments``. Expected purchases (BG/NBD) and CLV (discounted BG/NBD purchases x
Gamma-Gamma spend) are refitted on every run and left NULL when the data cannot support a fit.

Re-running a day replaces that day's rows; earlier days are kept, which is what makes segment moves visible.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, cast

import numpy as np
from sqlalchemy import Table, delete, func, insert, select
from sqlalchemy.orm import Session

from config import RfmSettings
from domain.lifecycle.phases import Phases, timed
from domain.models import Customer, Order, OrderLine, RfmSnapshot
from domain.origin import real_orders
from domain.serving.next_purchase import day_number
from recommender.base import RecommenderError
from recommender.bgnbd import BGNBD
from recommender.clv import GammaGamma, customer_lifetime_value
from recommender.rfm import RFMSummary, SegmentRule, assign_segments, quantile_cuts, rfm_summary, score

__all__ = ["PurchaseSpend", "SnapshotResult", "load_purchase_spend", "take_snapshot"]

log = logging.getLogger(__name__)

_EPOCH = dt.date(1970, 1, 1)
#: Rows per INSERT statement: well under SQLite's and PostgreSQL's parameter limits (13 columns).
INSERT_CHUNK = 2000


@dataclass(frozen=True)
class PurchaseSpend:
    """Spend per (customer, day) of sale lines, and each customer's returns; parallel arrays."""

    customer_ids: np.ndarray  # int64, shape (n_days,)
    days: np.ndarray  # int64, days since 1970-01-01 (UTC)
    amounts: np.ndarray  # float64, the day's sales
    return_customer_ids: np.ndarray  # int64, shape (n_returners,)
    return_amounts: np.ndarray  # float64, total returned

    def __len__(self) -> int:
        return int(self.customer_ids.size)


@dataclass(frozen=True)
class SnapshotResult:
    """What a snapshot run did: its day, clock, counts per segment and the model fits."""

    taken_on: dt.date
    as_of: dt.date | None
    customers: int
    segments: dict[str, int] = field(default_factory=dict)
    cuts: dict[str, tuple[float, ...]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: Wall and CPU seconds of each phase (loading, scoring, writing).
    phases: Phases = field(default_factory=dict, compare=False)

    def summary(self) -> str:
        if not self.customers:
            return f"rfm snapshot {self.taken_on}: no purchases, nothing to score"
        sizes = ", ".join(f"{name} {n}" for name, n in sorted(self.segments.items(), key=lambda kv: -kv[1]))
        notes = "".join(f"; {note}" for note in self.notes)
        head = f"rfm snapshot {self.taken_on} (data as of {self.as_of}): {self.customers} customers"
        return f"{head}: {sizes}{notes}"


def load_purchase_spend(session: Session, until: dt.datetime) -> PurchaseSpend:
    """Two aggregate queries: sales per (customer, day) and returns per customer, of customers not erased."""
    day = day_number(session).label("day")
    amount = func.sum(OrderLine.quantity * OrderLine.unit_price)
    base = (
        select(Order.customer_id)
        .join(OrderLine, OrderLine.order_id == Order.id)
        .join(Customer, Customer.id == Order.customer_id)
        .where(Customer.erased_at.is_(None), Order.ordered_at <= until, real_orders())
    )
    sales = session.execute(
        base.add_columns(day, amount).where(Order.kind == "sale").group_by(Order.customer_id, day)
    ).all()
    returns = session.execute(
        base.add_columns(amount).where(Order.kind == "return").group_by(Order.customer_id)
    ).all()
    n, k = len(sales), len(returns)
    return PurchaseSpend(
        customer_ids=np.fromiter((r[0] for r in sales), dtype=np.int64, count=n),
        days=np.fromiter((r[1] for r in sales), dtype=np.int64, count=n),
        amounts=np.fromiter((float(r[2]) for r in sales), dtype=np.float64, count=n),
        return_customer_ids=np.fromiter((r[0] for r in returns), dtype=np.int64, count=k),
        return_amounts=np.fromiter((float(r[1]) for r in returns), dtype=np.float64, count=k),
    )


def _rules(settings: RfmSettings) -> list[SegmentRule]:
    return [SegmentRule(name, r, f, m) for name, r, f, m in settings.segment_rules()]


def _cuts(settings: RfmSettings, dimension: str, values: np.ndarray) -> tuple[float, ...]:
    if getattr(settings, f"{dimension}_scoring") == "quantile":
        return quantile_cuts(values)
    return settings.cuts(dimension)


def _value(summary: RFMSummary, settings: RfmSettings, notes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Expected purchase days within the horizon and CLV per customer; nan where a model cannot fit."""
    n = summary.purchases.size
    expected = np.full(n, np.nan)
    clv = np.full(n, np.nan)
    x, t_x, age = summary.days.frequency, summary.days.recency, summary.days.T
    horizon = float(settings.clv_horizon_days)
    try:
        bgnbd = BGNBD().fit(x, t_x, age)
        expected = bgnbd.expected_purchases(horizon, x, t_x, age)
    except RecommenderError as exc:
        notes.append(f"no expected purchases: {exc}")
        return expected, clv
    try:
        spend = GammaGamma().fit(x, summary.repeat_spend)
        clv = customer_lifetime_value(
            bgnbd,
            spend,
            x,
            t_x,
            age,
            summary.repeat_spend,
            horizon=horizon,
            annual_discount_rate=settings.clv_discount_rate,
        )
        repeat = x > 0
        if repeat.sum() > 2:  # Gamma-Gamma assumes spend independent of frequency: say how far that holds
            corr = float(np.corrcoef(x[repeat], summary.repeat_spend[repeat])[0, 1])
            notes.append(f"corr(frequency, spend per purchase) = {corr:.2f}")
    except RecommenderError as exc:
        notes.append(f"no CLV: {exc}")
    return expected, clv


def _money(value: float) -> Decimal | None:
    return None if not np.isfinite(value) else Decimal(f"{value:.2f}")


def _write(session: Session, today: dt.date, as_of: dt.date, columns: dict[str, list[Any]]) -> None:
    """The day's rows from parallel columns: Core INSERTs of ``INSERT_CHUNK`` rows (executemany)."""
    names = list(columns)
    rows = [
        {"taken_on": today, "as_of": as_of, **dict(zip(names, row, strict=True))}
        for row in zip(*columns.values(), strict=True)
    ]
    table = cast(Table, RfmSnapshot.__table__)
    for start in range(0, len(rows), INSERT_CHUNK):
        session.execute(insert(table), rows[start : start + INSERT_CHUNK])


def take_snapshot(session: Session, settings: RfmSettings, today: dt.date) -> SnapshotResult:
    """Score every customer who bought up to the end of ``today`` and write the day's snapshot rows.

    Replaces rows already written for ``today`` (a re-run gives the same rows); never commits.
    """
    until = dt.datetime.combine(today, dt.time.max)
    phases: Phases = {}
    with timed(phases, "RFM: load purchases"):
        data = load_purchase_spend(session, until)
        session.execute(delete(RfmSnapshot).where(RfmSnapshot.taken_on == today))
    if not len(data):
        return SnapshotResult(today, None, 0, phases=phases)
    with timed(phases, "RFM: scores, segments, CLV"):
        ids = np.unique(data.customer_ids)
        rows = np.searchsorted(ids, data.customer_ids)
        now = min((today - _EPOCH).days, int(data.days.max()))
        summary = rfm_summary(rows, data.days, data.amounts, ids.size, now)
        returned = np.zeros(ids.size)
        known = np.isin(data.return_customer_ids, ids)
        np.add.at(returned, np.searchsorted(ids, data.return_customer_ids[known]), data.return_amounts[known])
        monetary = np.maximum(summary.monetary - returned, 0.0)
        purchases = summary.purchases.astype(np.float64)
        cuts = {
            "recency": _cuts(settings, "recency", summary.recency_days),
            "frequency": _cuts(settings, "frequency", purchases),
            "monetary": _cuts(settings, "monetary", monetary),
        }
        r = score(summary.recency_days, cuts["recency"], lower_is_better=True)
        f = score(purchases, cuts["frequency"])
        m = score(monetary, cuts["monetary"])
        codes, names = assign_segments(r, f, m, _rules(settings))
        notes: list[str] = []
        expected, clv = _value(summary, settings, notes)
    as_of = _EPOCH + dt.timedelta(days=now)
    with timed(phases, "RFM: write rows"):
        values = {
            "customer_id": ids.tolist(),
            "r_score": r.tolist(),
            "f_score": f.tolist(),
            "m_score": m.tolist(),
            "segment": [names[c] for c in codes.tolist()],
            "recency_days": summary.recency_days.astype(np.int64).tolist(),
            "frequency": summary.purchases.tolist(),
            "monetary": [Decimal(f"{v:.2f}") for v in monetary.tolist()],
            "expected_purchases": [None if not np.isfinite(v) else round(v, 6) for v in expected.tolist()],
            "clv": [_money(v) for v in clv.tolist()],
        }
        _write(session, today, as_of, values)
    counts = Counter(names[c] for c in codes.tolist())
    result = SnapshotResult(today, as_of, int(ids.size), dict(counts), cuts, notes, phases)
    log.info("%s", result.summary())
    return result
