"""Record an order (or a return) sent by the storefront: idempotent by the shop's order id, all-or-nothing;
and its delivery, when the shop posts it (the review-request trigger reads it)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import bindparam, case, delete, exists, insert, literal_column, select, union_all
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, selectinload

from config import Settings
from domain.customers.interactions import WrittenRows
from domain.errors import Conflict, InvalidInput, NotFound
from domain.messaging.attribution import ATTRIBUTABLE_STATUSES, attribute_purchases
from domain.models import ORDER_KINDS, Customer, GiftSelection, Order, OrderLine, Product
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
    """What was stored (or found stored): enough for the API's answer and the serving layer's refresh."""

    order_id: int
    customer_id: int | None
    kind: str
    lines: int
    delivered_at: dt.datetime | None
    created: bool
    customer_created: bool
    #: A new order's interaction rows, as a read of them would give them (the serving layer adds them to
    #: the customer's rows without reading them); None for an order found stored.
    rows: WrittenRows | None = None


def _result(order: Order, *, created: bool, customer_created: bool) -> OrderResult:
    return OrderResult(
        order.id,
        order.customer_id,
        order.kind,
        len(order.lines),
        order.delivered_at,
        created=created,
        customer_created=customer_created,
    )


@dataclass(frozen=True, slots=True)
class _Known:
    """What the database knows of an order's ids, read in one round trip (:func:`_look_up`)."""

    product_ids: dict[str, int]
    customer_id: int | None
    customer_erased: bool
    #: The customer has a selection that attribution could mark or record a gift for.
    reminded: bool
    order_id: int | None


# The statements of a new order, built once (their construction and cache key cost more CPU than running
# them: see domain/customers/events.py), in Core on the tables: no ORM compile step.
_customers = Customer.metadata.tables[Customer.__tablename__]
_products = Product.metadata.tables[Product.__tablename__]
_orders = Order.metadata.tables[Order.__tablename__]
_selections = GiftSelection.metadata.tables[GiftSelection.__tablename__]
_LOOK_UP = union_all(
    select(
        literal_column("'p'"), _products.c.sku, _products.c.id, literal_column("0"), literal_column("0")
    ).where(_products.c.sku.in_(bindparam("skus", expanding=True))),
    select(
        literal_column("'c'"),
        _customers.c.external_id,
        _customers.c.id,
        case((_customers.c.erased_at.is_not(None), 1), else_=0),
        case(
            (
                exists().where(
                    _selections.c.customer_id == _customers.c.id,
                    _selections.c.status.in_((*ATTRIBUTABLE_STATUSES, "purchased")),
                ),
                1,
            ),
            else_=0,
        ),
    ).where(_customers.c.external_id == bindparam("customer_id")),
    select(
        literal_column("'o'"), _orders.c.external_id, _orders.c.id, literal_column("0"), literal_column("0")
    ).where(_orders.c.external_id == bindparam("order_id")),
)
# ON CONFLICT DO NOTHING, by dialect name: a customer or order id that a concurrent request inserted after
# the lookup returns no row instead of failing the statement (see domain/customers/events.py).
_INSERT_CUSTOMER = {
    name: dialect.insert(_customers)
    .on_conflict_do_nothing(index_elements=[_customers.c.external_id])
    .returning(_customers.c.id)
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}
_INSERT_ORDER = {
    name: dialect.insert(_orders)
    .on_conflict_do_nothing(index_elements=[_orders.c.external_id])
    .returning(_orders.c.id)
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}
_UNDO_CUSTOMER = delete(_customers).where(_customers.c.id == bindparam("id"))
_INSERT_LINES = insert(OrderLine.metadata.tables[OrderLine.__tablename__])


def _look_up(session: Session, data: OrderInput, skus: Sequence[str]) -> _Known:
    """The lines' products, the customer (erased? reminded?) and an order already stored under the id.

    One statement (a UNION ALL of three indexed lookups) instead of three round trips: a one-line order is
    the storefront's commonest write.
    """
    session.flush()  # as an ORM select autoflushes: a Core one on the connection does not
    parameters = {"skus": skus, "customer_id": data.customer_id, "order_id": data.order_id}
    product_ids: dict[str, int] = {}
    customer: tuple[int, bool, bool] | None = None
    order_id = None
    for kind, key, row_id, flag, flag2 in session.connection().execute(_LOOK_UP, parameters):
        if kind == "p":
            product_ids[key] = int(row_id)
        elif kind == "c":
            customer = (int(row_id), bool(flag), bool(flag2))
        else:
            order_id = int(row_id)
    return _Known(
        product_ids,
        None if customer is None else customer[0],
        customer is not None and customer[1],
        customer is not None and customer[2],
        order_id,
    )


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

    A new sale of a customer with a sent, clicked or purchased selection is attributed at once
    (:func:`~domain.messaging.attribution.attribute_purchases` for this customer): a picked product of a
    recent reminder marks its selection purchased. ``settings`` gives the attribution window (default: the
    built-in ``reminders.attribution_days``).

    Statements: one lookup, then (new order) the inserts, and attribution's only for a
    customer who was reminded.
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
    known = _look_up(session, data, skus)
    product_ids = known.product_ids
    for i, line in enumerate(data.lines):
        if line.sku not in product_ids:
            raise InvalidInput(f"lines[{i}].sku", f"unknown product {line.sku!r}")
    if known.customer_erased:
        raise InvalidInput("customer_id", f"customer {data.customer_id!r} was erased")

    if known.order_id is not None:
        existing = session.scalars(
            select(Order).options(selectinload(Order.lines)).where(Order.id == known.order_id)
        ).one()
        if known.customer_id is None or not _same(existing, known.customer_id, data, product_ids):
            raise Conflict(f"order {data.order_id} already exists with other contents")
        if data.delivered_at is not None:  # the same order sent again, now with its delivery
            existing.delivered_at = _check_delivery(existing.kind, existing.ordered_at, data.delivered_at)
        return _result(existing, created=False, customer_created=False)

    ordered_at = data.ordered_at or utcnow()
    ordered_at = naive_utc(ordered_at)
    delivered_at = (
        None if data.delivered_at is None else _check_delivery(data.kind, ordered_at, data.delivered_at)
    )
    customer_id = known.customer_id
    customer_created = customer_id is None
    # Core inserts: the ORM's unit of work cost more CPU than the rest of the request. No savepoint: a
    # concurrent twin makes an insert return no row, and what this call inserted before it is deleted.
    connection = session.connection()
    dialect = connection.dialect.name
    concurrent = f"order {data.order_id} was recorded by a concurrent request; retry"
    if customer_id is None:
        customer_id = connection.execute(
            _INSERT_CUSTOMER[dialect], {"external_id": data.customer_id, "country": data.country}
        ).scalar()
        if customer_id is None:
            raise Conflict(concurrent)
    order_id = connection.execute(
        _INSERT_ORDER[dialect],
        {
            "external_id": data.order_id,
            "customer_id": customer_id,
            "kind": data.kind,
            "ordered_at": ordered_at,
            "delivered_at": delivered_at,
            "country": data.country,
            "currency": data.currency.upper(),
            "source": "api",
        },
    ).scalar()
    if order_id is None:
        if customer_created:
            connection.execute(_UNDO_CUSTOMER, {"id": customer_id})
        raise Conflict(concurrent)
    connection.execute(
        _INSERT_LINES,
        [
            {
                "order_id": order_id,
                "line_no": i + 1,
                "product_id": product_ids[ln.sku],
                "quantity": ln.quantity,
                "unit_price": ln.unit_price.quantize(Decimal("0.01")),
            }
            for i, ln in enumerate(data.lines)
        ],
    )
    # Only a customer with a sent (or clicked, or purchased) selection has anything to attribute: a new
    # customer has no reminders, and most customers never had one.
    if data.kind == "sale" and known.reminded:
        attribute_purchases(
            session,
            settings or Settings(),
            max(utcnow(), ordered_at),
            customer_ids=[customer_id],
            actor=f"order:{data.order_id}"[:100],
        )
    lines = tuple((product_ids[ln.sku], data.kind, ln.quantity, ordered_at, order_id) for ln in data.lines)
    return OrderResult(
        order_id,
        customer_id,
        data.kind,
        len(data.lines),
        delivered_at,
        created=True,
        customer_created=customer_created,
        rows=WrittenRows(customer_id, lines),
    )
