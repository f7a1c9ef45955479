"""Lifecycle tables: the daily RFM snapshot of every customer who has bought, and trigger assignments."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
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
from domain.models._types import CreatedAt, UTCDateTime, one_of

#: Who gets a trigger's email: the treated; the per-trigger control and the global holdout never do.
ARMS = ("treatment", "control", "holdout")


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


class TriggerAssignment(Base):
    """A customer became eligible for a trigger in one window, and the arm they were drawn into.

    Recorded whether or not an email follows (intention to treat): the campaign report compares the arms
    as assigned. One row per (customer, trigger, window): the trigger fires at most once per window.
    """

    __tablename__ = "trigger_assignments"
    __table_args__ = (
        UniqueConstraint("customer_id", "trigger", "window_key"),
        one_of("arm", ARMS, "arm"),
        Index("ix_trigger_assignments_trigger_eligible_on", "trigger", "eligible_on"),
        Index("ix_trigger_assignments_customer_id_trigger", "customer_id", "trigger"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    trigger: Mapped[str] = mapped_column(String(30), comment="replacement, running_out, winback...")
    window_key: Mapped[str] = mapped_column(
        String(80), comment="what fired it: category and last purchase day, moved-on day, cart day..."
    )
    eligible_on: Mapped[dt.date] = mapped_column(Date)
    eligible_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), comment="outcomes are counted from here")
    period: Mapped[str] = mapped_column(String(10), comment="the hash's period: the quarter, e.g. 2011Q4")
    arm: Mapped[str] = mapped_column(String(10), comment="treatment | control | holdout")
    selection_id: Mapped[int | None] = mapped_column(
        ForeignKey("gift_selections.id", ondelete="SET NULL"), comment="the email's selection (treatment)"
    )
    reason: Mapped[str | None] = mapped_column(String(300), comment="why a treated customer got no email")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, comment="the products that fired it")
    created_at: Mapped[CreatedAt]
