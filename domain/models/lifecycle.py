"""Lifecycle tables: the daily RFM snapshot of every customer who has bought."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import (
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    SmallInteger,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from domain.db import Base


class RfmSnapshot(Base):
    """A customer's RFM scores, segment and value on one day: one row per customer per day the lifecycle
    job ran, so that moves between segments can be followed."""

    __tablename__ = "rfm_snapshots"
    __table_args__ = (
        UniqueConstraint("customer_id", "taken_on"),
        Index("ix_rfm_snapshots_taken_on_segment", "taken_on", "segment"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    taken_on: Mapped[dt.date] = mapped_column(Date, comment="the day the lifecycle job ran for")
    as_of: Mapped[dt.date] = mapped_column(
        Date, comment="the data's clock: taken_on, or the newest order's day if earlier (historical data)"
    )
    r_score: Mapped[int] = mapped_column(SmallInteger, comment="1-5, 5 = most recent")
    f_score: Mapped[int] = mapped_column(SmallInteger, comment="1-5, 5 = most purchase days")
    m_score: Mapped[int] = mapped_column(SmallInteger, comment="1-5, 5 = highest spend")
    segment: Mapped[str] = mapped_column(String(40), comment="first matching rule of rfm.segments, or others")
    recency_days: Mapped[int] = mapped_column(Integer, comment="days from the last purchase day to as_of")
    frequency: Mapped[int] = mapped_column(Integer, comment="purchase days (same-day orders count once)")
    monetary: Mapped[Decimal] = mapped_column(Numeric(12, 2), comment="net spend: sales minus returns")
    expected_purchases: Mapped[float | None] = mapped_column(
        Float, comment="BG/NBD purchase days within rfm.clv_horizon_days; NULL when the model cannot fit"
    )
    clv: Mapped[Decimal | None] = mapped_column(
        Numeric(12, 2), comment="discounted expected purchases x Gamma-Gamma spend; NULL when unfitted"
    )
