"""Products, orders with their lines and returns, behavioural events, import runs."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from domain.db import Base
from domain.models._types import CreatedAt, UTCDateTime, one_of, utcnow

ORDER_KINDS = ("sale", "return")
EVENT_KINDS = ("view", "cart", "purchase", "click")


class Product(Base):
    """A catalog item. ``is_active``/``in_stock`` hide it from every recommendation at once."""

    __tablename__ = "products"

    id: Mapped[int] = mapped_column(primary_key=True)
    sku: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str | None] = mapped_column(Text)
    category: Mapped[str | None] = mapped_column(String(100), index=True)
    brand: Mapped[str | None] = mapped_column(String(100))
    price: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    currency: Mapped[str] = mapped_column(String(3), default="GBP")
    url: Mapped[str | None] = mapped_column(String(500))
    image_url: Mapped[str | None] = mapped_column(String(500))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    in_stock: Mapped[bool] = mapped_column(Boolean, default=True)
    delivery_days: Mapped[int] = mapped_column(
        SmallInteger, default=3, comment="days to deliver; a pick must arrive before the date"
    )
    tags: Mapped[list[str]] = mapped_column(JSON, default=list, comment="e.g. for-her, for-kids, 18+")
    created_at: Mapped[CreatedAt] = mapped_column(comment="first seen: drives new arrivals")
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class ImportRun(Base):
    """One execution of `giftrec import`: what file, what came of it."""

    __tablename__ = "import_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    source_name: Mapped[str] = mapped_column(String(300), comment="file name, without its folder")
    format: Mapped[str] = mapped_column(String(30))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    started_at: Mapped[CreatedAt]
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class Order(Base):
    """An order, or a return (a UCI cancellation invoice 'C…' is an order of kind 'return')."""

    __tablename__ = "orders"
    __table_args__ = (
        one_of("kind", ORDER_KINDS, "kind"),
        Index("ix_orders_customer_id_ordered_at", "customer_id", "ordered_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    external_id: Mapped[str] = mapped_column(String(64), unique=True)
    customer_id: Mapped[int | None] = mapped_column(
        ForeignKey("customers.id", ondelete="SET NULL"), comment="NULL for guest orders"
    )
    kind: Mapped[str] = mapped_column(String(10), default="sale")
    ordered_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(
        UTCDateTime(), index=True, comment="when the order arrived, as the shop posted it; NULL = not known"
    )
    country: Mapped[str | None] = mapped_column(String(64))
    currency: Mapped[str] = mapped_column(String(3), default="GBP")
    source: Mapped[str] = mapped_column(String(30), default="import", comment="import | api")
    import_run_id: Mapped[int | None] = mapped_column(ForeignKey("import_runs.id", ondelete="SET NULL"))
    recipient_id: Mapped[int | None] = mapped_column(
        ForeignKey("recipients.id", ondelete="SET NULL"), comment="whom the order was a gift for"
    )
    created_at: Mapped[CreatedAt]

    lines: Mapped[list[OrderLine]] = relationship(back_populates="order", cascade="all, delete-orphan")


class OrderLine(Base):
    """One product line of an order; quantities are positive, the order's kind says sale or return."""

    __tablename__ = "order_lines"
    __table_args__ = (
        UniqueConstraint("order_id", "line_no"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("unit_price > 0", name="unit_price_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    line_no: Mapped[int] = mapped_column(Integer, comment="position within the order")
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), index=True)
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[Decimal] = mapped_column(Numeric(12, 2))

    order: Mapped[Order] = relationship(back_populates="lines")


class Event(Base):
    """A behavioural event from the storefront, an email or the API."""

    __tablename__ = "events"
    __table_args__ = (
        one_of("kind", EVENT_KINDS, "kind"),
        Index("ix_events_customer_id_occurred_at", "customer_id", "occurred_at"),
        Index("ix_events_anonymous_id", "anonymous_id"),  # a session's picks read its events
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    idempotency_key: Mapped[str | None] = mapped_column(
        String(100), unique=True, comment="client-chosen id: a repeated batch adds nothing"
    )
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    anonymous_id: Mapped[str | None] = mapped_column(String(100), comment="browser id before sign-in")
    product_id: Mapped[int | None] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(10))
    source: Mapped[str] = mapped_column(String(30), default="api", comment="widget, email, api, import")
    recommendation_id: Mapped[str | None] = mapped_column(
        String(64), index=True, comment="the recommendation a click cites"
    )
    quantity: Mapped[int] = mapped_column(Integer, default=1)
    occurred_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[CreatedAt]
