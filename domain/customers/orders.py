"""Record an order (or a return) sent by the storefront: idempotent by the shop's order id, all-or-nothing;
and its delivery, when the shop posts it (the review-request trigger reads it)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from config import Settings
from domain.errors import Conflict, InvalidInput, NotFound
from domain.messaging.attribution import attribute_purchases
from domain.models import ORDER_KINDS, Customer, Order, OrderLine, Product
from domain.models._types import naive_utc, utcnow


@dataclass(frozen=True, slots=True)
class OrderLineInput:
    sku: str
    quantity: int
    unit_price: Decimal


@dataclass(frozen=True, slots=True)
class OrderInput:
    order_id: str
    customer_id: str
    lines: Sequence[OrderLineInput]
    ordered_at: dt.datetime | None = None
    kind: str = "sale"
    currency: str = "GBP"
    country: str | None = None
    delivered_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class OrderResult:
    order: Order
    created: bool
    customer_created: bool


def _same(order: Order, customer_id: int, data: OrderInput, product_ids: dict[str, int]) -> bool:
    mine = sorted((ln.product_id, ln.quantity, ln.unit_price) for ln in order.lines)
    theirs = sorted(
        (product_ids[ln.sku], ln.quantity, ln.unit_price.quantize(Decimal("0.01"))) for ln in data.lines
    )
    return order.customer_id == customer_id and order.kind == data.kind and mine == theirs


#: A delivery stamped this far after the server's clock is refused (clocks differ a little, not by hours).
DELIVERY_CLOCK_SKEW = dt.timedelta(minutes=10)


def _check_delivery(kind: str, ordered_at: dt.datetime, delivered_at: dt.datetime) -> dt.datetime:
    """The delivery time as naive UTC, or InvalidInput naming ``delivered_at``."""
    delivered_at = naive_utc(delivered_at)
    if kind != "sale":
        raise InvalidInput("delivered_at", "a return is not delivered: only a sale has a delivery time")
    if delivered_at < ordered_at:
        raise InvalidInput(
            "delivered_at", f"{delivered_at:%Y-%m-%d %H:%M} is before the order ({ordered_at:%Y-%m-%d %H:%M})"
        )
    if delivered_at > naive_utc(utcnow()) + DELIVERY_CLOCK_SKEW:
        raise InvalidInput("delivered_at", f"{delivered_at:%Y-%m-%d %H:%M} UTC is in the future")
    return delivered_at


def record_delivery(session: Session, order_id: str, delivered_at: dt.datetime) -> Order:
    """The shop says order ``order_id`` arrived at ``delivered_at`` (a correction replaces the time).

    NotFound for an unknown order; InvalidInput (``delivered_at``) for a return, a time before the order
    or in the future. Nothing is changed on error.
    """
    order = session.scalar(select(Order).where(Order.external_id == order_id))
    if order is None:
        raise NotFound("order", order_id)
    order.delivered_at = _check_delivery(order.kind, order.ordered_at, delivered_at)
    session.flush()
    return order


def record_order(session: Session, data: OrderInput, settings: Settings | None = None) -> OrderResult:
    """Store ``data`` as an order of source ``api``.

    A customer id the shop has not sent before creates the customer (their first order); an erased
    customer or an unknown SKU is refused with the field at fault (``lines[i].sku``). Sending the same
    order again returns the stored one (``created`` False); the same order id with other contents is a
    :class:`Conflict`.

    A new sale is attributed at once (:func:`~domain.messaging.attribution.attribute_purchases` for
    this customer): a picked product of a recent reminder marks its selection purchased. ``settings`` gives
    the attribution window (default: the built-in ``reminders.attribution_days``).
    """
    if data.kind not in ORDER_KINDS:
        raise InvalidInput("kind", f"must be one of {', '.join(ORDER_KINDS)}")
    if not data.lines:
        raise InvalidInput("lines", "an order needs at least one line")
    for i, line in enumerate(data.lines):
        if line.quantity < 1:
            raise InvalidInput(f"lines[{i}].quantity", "must be at least 1 (send returns as kind 'return')")
        if line.unit_price.quantize(Decimal("0.01")) <= 0:
            raise InvalidInput(f"lines[{i}].unit_price", "must be greater than 0")
    skus = sorted({ln.sku for ln in data.lines})
    product_ids = dict(
        (sku, pid)
        for sku, pid in session.execute(select(Product.sku, Product.id).where(Product.sku.in_(skus)))
    )
    for i, line in enumerate(data.lines):
        if line.sku not in product_ids:
            raise InvalidInput(f"lines[{i}].sku", f"unknown product {line.sku!r}")

    customer = session.scalar(select(Customer).where(Customer.external_id == data.customer_id))
    customer_created = False
    if customer is not None and customer.erased_at is not None:
        raise InvalidInput("customer_id", f"customer {data.customer_id!r} was erased")

    existing = session.scalar(
        select(Order).options(selectinload(Order.lines)).where(Order.external_id == data.order_id)
    )
    if existing is not None:
        if customer is None or not _same(existing, customer.id, data, product_ids):
            raise Conflict(f"order {data.order_id} already exists with other contents")
        if data.delivered_at is not None:  # the same order sent again, now with its delivery
            existing.delivered_at = _check_delivery(existing.kind, existing.ordered_at, data.delivered_at)
        return OrderResult(existing, created=False, customer_created=False)

    ordered_at = data.ordered_at or utcnow()
    ordered_at = naive_utc(ordered_at)
    delivered_at = (
        None if data.delivered_at is None else _check_delivery(data.kind, ordered_at, data.delivered_at)
    )
    try:
        with session.begin_nested():
            if customer is None:
                customer = Customer(external_id=data.customer_id, country=data.country)
                session.add(customer)
                session.flush()
                customer_created = True
            order = Order(
                external_id=data.order_id,
                customer_id=customer.id,
                kind=data.kind,
                ordered_at=ordered_at,
                delivered_at=delivered_at,
                country=data.country,
                currency=data.currency.upper(),
                source="api",
                lines=[
                    OrderLine(
                        line_no=i + 1,
                        product_id=product_ids[ln.sku],
                        quantity=ln.quantity,
                        unit_price=ln.unit_price.quantize(Decimal("0.01")),
                    )
                    for i, ln in enumerate(data.lines)
                ],
            )
            session.add(order)
            session.flush()
    except IntegrityError:
        raise Conflict(f"order {data.order_id} was recorded by a concurrent request; retry") from None
    if order.kind == "sale" and not customer_created:  # a new customer has no reminders to attribute
        attribute_purchases(
            session,
            settings or Settings(),
            max(utcnow(), ordered_at),
            customer_ids=[customer.id],
            actor=f"order:{data.order_id}"[:100],
        )
    return OrderResult(order, created=True, customer_created=customer_created)
