"""Reading the RFM snapshots: one customer's segment and its moves, and the segment report with its moves."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from domain.errors import NotFound
from domain.models import Customer, RfmSnapshot

__all__ = [
    "NEW",
    "CustomerSegment",
    "Move",
    "SegmentMove",
    "SegmentReport",
    "SegmentRow",
    "customer_segment",
    "segment_report",
    "segment_sizes",
]

#: The "from" of a customer who had no snapshot on the earlier day (a first purchase since).
NEW = "(new)"


@dataclass(frozen=True, slots=True)
class SegmentMove:
    """The customer's segment changed between two consecutive snapshots: seen first on ``on``."""

    on: dt.date
    from_segment: str
    to_segment: str


@dataclass(frozen=True)
class CustomerSegment:
    """A customer's newest snapshot and the segment moves of the last ``history_days``."""

    customer_id: str
    taken_on: dt.date
    as_of: dt.date
    segment: str
    r_score: int
    f_score: int
    m_score: int
    recency_days: int
    frequency: int
    monetary: Decimal
    expected_purchases: float | None
    clv: Decimal | None
    segment_since: dt.date
    moves: list[SegmentMove]


def customer_segment(session: Session, external_id: str, history_days: int) -> CustomerSegment:
    """The newest snapshot of a customer and their moves between segments, newest first.

    ``segment_since`` is the first snapshot day of the current run of the same segment within the window.
    Raises NotFound for an unknown or erased customer and for one without a snapshot yet.
    """
    customer_id = session.scalar(
        select(Customer.id).where(Customer.external_id == external_id, Customer.erased_at.is_(None))
    )
    if customer_id is None:
        raise NotFound("customer", external_id)
    latest = session.scalar(
        select(RfmSnapshot)
        .where(RfmSnapshot.customer_id == customer_id)
        .order_by(RfmSnapshot.taken_on.desc())
        .limit(1)
    )
    if latest is None:
        raise NotFound("RFM snapshot of customer", external_id)
    since = latest.taken_on - dt.timedelta(days=history_days)
    history = session.execute(
        select(RfmSnapshot.taken_on, RfmSnapshot.segment)
        .where(RfmSnapshot.customer_id == customer_id, RfmSnapshot.taken_on >= since)
        .order_by(RfmSnapshot.taken_on)
    ).all()
    moves = [
        SegmentMove(on, previous, segment)
        for (_, previous), (on, segment) in zip(history, history[1:], strict=False)
        if segment != previous
    ]
    return CustomerSegment(
        customer_id=external_id,
        taken_on=latest.taken_on,
        as_of=latest.as_of,
        segment=latest.segment,
        r_score=latest.r_score,
        f_score=latest.f_score,
        m_score=latest.m_score,
        recency_days=latest.recency_days,
        frequency=latest.frequency,
        monetary=latest.monetary,
        expected_purchases=latest.expected_purchases,
        clv=latest.clv,
        segment_since=moves[-1].on if moves else history[0][0],
        moves=moves[::-1],
    )


@dataclass(frozen=True, slots=True)
class SegmentRow:
    """One segment on the report's day; changes are against the comparison days (None without one)."""

    segment: str
    customers: int
    share: float
    revenue: float
    revenue_share: float
    average_clv: float | None
    total_clv: float | None
    change_week: int | None
    change_month: int | None


@dataclass(frozen=True, slots=True)
class Move:
    """``customers`` moved from one segment to another between two snapshot days."""

    from_segment: str
    to_segment: str
    customers: int


@dataclass(frozen=True)
class SegmentReport:
    """Segments on ``taken_on`` ranked by average CLV (then revenue), and the moves since a week and a
    month before: the newest snapshot days on or before those dates (None when there is none)."""

    taken_on: dt.date | None
    customers: int
    rows: list[SegmentRow]
    week_on: dt.date | None
    month_on: dt.date | None
    moves_week: list[Move]
    moves_month: list[Move]


def _day_on_or_before(session: Session, day: dt.date) -> dt.date | None:
    newest = select(func.max(RfmSnapshot.taken_on)).where(RfmSnapshot.taken_on <= day)
    value: dt.date | None = session.scalar(newest)
    return value


def _sizes(session: Session, day: dt.date | None) -> dict[str, int]:
    if day is None:
        return {}
    rows = session.execute(
        select(RfmSnapshot.segment, func.count())
        .where(RfmSnapshot.taken_on == day)
        .group_by(RfmSnapshot.segment)
    ).all()
    return {segment: int(n) for segment, n in rows}


def _moves(session: Session, before: dt.date | None, after: dt.date) -> list[Move]:
    """Customers whose segment differs between two days (first snapshots since count as from NEW)."""
    if before is None or before == after:
        return []
    old = aliased(RfmSnapshot)
    new = aliased(RfmSnapshot)
    rows = session.execute(
        select(old.segment, new.segment, func.count())
        .select_from(new)
        .outerjoin(old, (old.customer_id == new.customer_id) & (old.taken_on == before))
        .where(new.taken_on == after, (old.segment.is_(None)) | (old.segment != new.segment))
        .group_by(old.segment, new.segment)
    ).all()
    moves = [Move(src or NEW, dst, int(n)) for src, dst, n in rows]
    return sorted(moves, key=lambda mv: (-mv.customers, mv.from_segment, mv.to_segment))


def segment_report(session: Session, on: dt.date | None = None) -> SegmentReport:
    """Sizes, revenue share and CLV per segment on the newest snapshot day (up to ``on``), and the moves.

    Three grouped queries for the day's figures and two self-joins for the moves: no per-customer SQL.
    """
    if on is None:
        taken_on = session.scalar(select(func.max(RfmSnapshot.taken_on)))
    else:
        taken_on = _day_on_or_before(session, on)
    if taken_on is None:
        return SegmentReport(None, 0, [], None, None, [], [])
    rows = session.execute(
        select(
            RfmSnapshot.segment,
            func.count(),
            func.sum(RfmSnapshot.monetary),
            func.avg(RfmSnapshot.clv),
            func.sum(RfmSnapshot.clv),
        )
        .where(RfmSnapshot.taken_on == taken_on)
        .group_by(RfmSnapshot.segment)
    ).all()
    week_on = _day_on_or_before(session, taken_on - dt.timedelta(days=7))
    month_on = _day_on_or_before(session, taken_on - dt.timedelta(days=30))
    week, month = _sizes(session, week_on), _sizes(session, month_on)
    customers = sum(int(n) for _, n, _, _, _ in rows)
    revenue = sum(float(total or 0) for _, _, total, _, _ in rows)
    out = [
        SegmentRow(
            segment=segment,
            customers=int(n),
            share=int(n) / customers,
            revenue=float(total or 0),
            revenue_share=float(total or 0) / revenue if revenue else 0.0,
            average_clv=None if avg is None else float(avg),
            total_clv=None if clv_sum is None else float(clv_sum),
            change_week=None if week_on is None else int(n) - week.get(segment, 0),
            change_month=None if month_on is None else int(n) - month.get(segment, 0),
        )
        for segment, n, total, avg, clv_sum in rows
    ]
    out.sort(key=lambda row: (-(row.average_clv or 0.0), -row.revenue, row.segment))
    return SegmentReport(
        taken_on=taken_on,
        customers=customers,
        rows=out,
        week_on=week_on,
        month_on=month_on,
        moves_week=_moves(session, week_on, taken_on),
        moves_month=_moves(session, month_on, taken_on),
    )


def segment_sizes(session: Session, days: int = 120) -> tuple[list[dt.date], dict[str, list[int]]]:
    """Segment sizes on each snapshot day of the last ``days`` before the newest one: the days, oldest
    first, and per segment its size on each of them (0 where it had nobody). One grouped query."""
    newest = session.scalar(select(func.max(RfmSnapshot.taken_on)))
    if newest is None:
        return [], {}
    rows = session.execute(
        select(RfmSnapshot.taken_on, RfmSnapshot.segment, func.count())
        .where(RfmSnapshot.taken_on > newest - dt.timedelta(days=days))
        .group_by(RfmSnapshot.taken_on, RfmSnapshot.segment)
    ).all()
    on = sorted({day for day, _, _ in rows})
    at = {day: i for i, day in enumerate(on)}
    sizes: dict[str, list[int]] = {}
    for day, segment, n in rows:
        sizes.setdefault(segment, [0] * len(on))[at[day]] = int(n)
    return on, dict(sorted(sizes.items()))
