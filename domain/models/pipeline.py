"""Model runs, curated gift selections and their picks, the email outbox."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from domain.db import Base
from domain.models._types import CreatedAt, UTCDateTime, one_of, utcnow

MODEL_RUN_STATUSES = ("running", "succeeded", "failed")
SELECTION_STATUSES = (
    "planned",
    "ready",
    "awaiting_review",
    "approved",
    "sent",
    "clicked",
    "purchased",
    "skipped",
    "failed",
)
EMAIL_STATUSES = ("queued", "sending", "sent", "failed", "unknown", "cancelled")


class ModelRun(Base):
    """One training: its artifact, parameters and offline metrics."""

    __tablename__ = "model_runs"
    __table_args__ = (one_of("status", MODEL_RUN_STATUSES, "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[str] = mapped_column(String(40), unique=True, comment="artifact folder name")
    algorithm: Mapped[str] = mapped_column(String(30))
    status: Mapped[str] = mapped_column(String(10), default="running")
    artifact_path: Mapped[str | None] = mapped_column(String(500))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    n_users: Mapped[int] = mapped_column(Integer, default=0)
    n_items: Mapped[int] = mapped_column(Integer, default=0)
    n_interactions: Mapped[int] = mapped_column(Integer, default=0)
    data_until: Mapped[dt.datetime | None] = mapped_column(
        UTCDateTime(), comment="newest interaction the model saw"
    )
    is_rolled_back: Mapped[bool] = mapped_column(
        Boolean, default=False, comment="set by `model rollback`: never served again"
    )
    is_pinned: Mapped[bool] = mapped_column(
        Boolean,
        default=False,
        server_default=false(),
        comment="set by `model rollback`/`promote`: served ahead of newer runs until `model unpin`",
    )
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[CreatedAt]
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class NextPurchaseRun(Base):
    """One training of the learned next-purchase ranker (`giftrec train --next-purchase`): its artifact,
    stored with the model artifacts (``model_artifact_chunks``), and its figures."""

    __tablename__ = "next_purchase_runs"
    __table_args__ = (one_of("status", MODEL_RUN_STATUSES, "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[str] = mapped_column(String(40), unique=True, comment="artifact name")
    status: Mapped[str] = mapped_column(String(10), default="running")
    artifact_path: Mapped[str | None] = mapped_column(String(500))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    n_customers: Mapped[int] = mapped_column(Integer, default=0)
    n_items: Mapped[int] = mapped_column(Integer, default=0)
    data_until: Mapped[dt.datetime | None] = mapped_column(
        UTCDateTime(), comment="newest order the ranker saw"
    )
    is_rolled_back: Mapped[bool] = mapped_column(
        Boolean,
        default=False,
        server_default=false(),
        comment="set by `model rollback --next-purchase`: never served again",
    )
    is_pinned: Mapped[bool] = mapped_column(
        Boolean,
        default=False,
        server_default=false(),
        comment="set by `model rollback`/`promote`: served ahead of newer runs until `model unpin`",
    )
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[CreatedAt]
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class ModelArtifactChunk(Base):
    """One piece of a file of a model artifact: artifacts live in the database, which every host reads."""

    __tablename__ = "model_artifact_chunks"

    version: Mapped[str] = mapped_column(String(40), primary_key=True, comment="the model run's version")
    path: Mapped[str] = mapped_column(String(200), primary_key=True, comment="file inside the artifact")
    seq: Mapped[int] = mapped_column(
        Integer, primary_key=True, comment="0, 1, ...: the file's pieces in order"
    )
    data: Mapped[bytes] = mapped_column(LargeBinary)


class GiftSelection(Base):
    """Curated picks for one customer, recipient, occasion and year."""

    __tablename__ = "gift_selections"
    __table_args__ = (
        UniqueConstraint("customer_id", "occasion_key", "year"),
        one_of("status", SELECTION_STATUSES, "status"),
        Index("ix_gift_selections_status_occasion_on", "status", "occasion_on"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    recipient_id: Mapped[int | None] = mapped_column(ForeignKey("recipients.id", ondelete="CASCADE"))
    important_date_id: Mapped[int | None] = mapped_column(
        ForeignKey("important_dates.id", ondelete="CASCADE")
    )
    occasion_key: Mapped[str] = mapped_column(
        String(80), comment="date:<important_date_id> or occasion:<calendar code>"
    )
    occasion_code: Mapped[str] = mapped_column(String(50), comment="birthday, new_year, march_8...")
    occasion_on: Mapped[dt.date] = mapped_column(Date)
    year: Mapped[int] = mapped_column(SmallInteger)
    status: Mapped[str] = mapped_column(String(20), default="planned")
    status_reason: Mapped[str | None] = mapped_column(String(300))
    model_run_id: Mapped[int | None] = mapped_column(ForeignKey("model_runs.id", ondelete="SET NULL"))
    tier_bounds: Mapped[list[Any]] = mapped_column(JSON, default=list, comment="[[low, high], ...] per tier")
    review_cutoff_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    reviewed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    reviewed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(
        Integer, default=1, server_default="1", comment="raised by every edit: approvals and saves name one"
    )
    approved_version: Mapped[int | None] = mapped_column(
        Integer, comment="the version last approved; the email is rendered from it"
    )
    note: Mapped[str | None] = mapped_column(Text, comment="the account manager's personal note in the email")
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    picks: Mapped[list[SelectionPick]] = relationship(
        back_populates="selection", cascade="all, delete-orphan", order_by="SelectionPick.position"
    )


class SelectionPick(Base):
    """One product in a selection, in a price tier, with why it was picked."""

    __tablename__ = "selection_picks"
    __table_args__ = (UniqueConstraint("selection_id", "product_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    selection_id: Mapped[int] = mapped_column(ForeignKey("gift_selections.id", ondelete="CASCADE"))
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"))
    tier: Mapped[int] = mapped_column(SmallInteger, comment="1 = lowest price tier")
    position: Mapped[int] = mapped_column(SmallInteger)
    score: Mapped[float] = mapped_column(Float, default=0.0)
    source: Mapped[str] = mapped_column(String(30), comment="collaborative, profile, seasonal, manual...")
    explanation: Mapped[str] = mapped_column(String(300), default="")
    price_at_pick: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    is_manual: Mapped[bool] = mapped_column(Boolean, default=False, comment="added by an account manager")

    selection: Mapped[GiftSelection] = relationship(back_populates="picks")


class OutboundEmail(Base):
    """The outbox: claimed before sending, marked sent only after the SMTP server accepted it."""

    __tablename__ = "outbound_emails"
    __table_args__ = (
        one_of("status", EMAIL_STATUSES, "status"),
        Index("ix_outbound_emails_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(120), unique=True, comment="one message per key, ever")
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id", ondelete="SET NULL"))
    selection_id: Mapped[int | None] = mapped_column(
        ForeignKey("gift_selections.id", ondelete="SET NULL"), index=True
    )
    kind: Mapped[str] = mapped_column(String(30), comment="reminder, winback, replacement...")
    to_address: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(300))
    body_text: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(10), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    claimed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    message_id: Mapped[str | None] = mapped_column(String(200))
    last_error: Mapped[str | None] = mapped_column(Text)
    deadline_at: Mapped[dt.datetime | None] = mapped_column(
        UTCDateTime(), comment="never sent from then on (the occasion minus mail.deadline_margin_hours)"
    )
    counted_at: Mapped[dt.datetime | None] = mapped_column(
        UTCDateTime(),
        comment="business time of its latest claim, for the frequency cap (differs from "
        "claimed_at only in runs with --today)",
    )
    created_at: Mapped[CreatedAt]
