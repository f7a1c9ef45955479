"""Interaction rows from orders, returns and events, read in bulk with SQLAlchemy Core.

Rows are keyed by database ids: ``customer_id`` (customers.id) and ``product_id`` (products.id). Kinds:

- ``purchase``: a line of a sale order, or a storefront ``purchase`` event (an event and the order it
  announces both count; the quantity damping keeps the double count small);
- ``return``: a line of a return order: it reduces the purchase of the same cell (see
  :func:`domain.customers.confidence.build_matrix`);
- ``view``, ``cart``, ``click``: storefront events, weighted by ``settings.interactions``.

Guest orders (no customer) and anonymous events belong to nobody: they are left out of the user x item
matrix, but guest sales still count for bestsellers (:func:`load_sales`).
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import (
    BigInteger,
    Select,
    String,
    and_,
    bindparam,
    cast,
    func,
    literal,
    select,
    type_coerce,
    union_all,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import BindParameter, ColumnElement

from domain.models import Event, Order, OrderLine
from domain.origin import real_orders

__all__ = [
    "InteractionRows",
    "SalesRows",
    "SourcedRows",
    "Watermark",
    "activity_watermark",
    "changed_customers",
    "new_activity",
    "load_customer_rows",
    "load_interactions",
    "load_session",
    "load_sales",
]

#: Customer ids per IN (...) list: well under SQLite's and PostgreSQL's parameter limits.
IN_CHUNK = 500


@dataclass(frozen=True)
class InteractionRows:
    """Interaction rows as parallel arrays, one entry per order line or event."""

    customer_ids: np.ndarray  # int64
    product_ids: np.ndarray  # int64
    kinds: np.ndarray  # str: purchase | return | view | cart | click
    quantities: np.ndarray  # float64, > 0
    timestamps: np.ndarray  # datetime64[s], naive UTC

    def __len__(self) -> int:
        return int(self.customer_ids.size)

    @property
    def latest(self) -> dt.datetime | None:
        """Newest timestamp, or None without rows."""
        if not len(self):
            return None
        value: dt.datetime = self.timestamps.max().astype("datetime64[s]").item()
        return value

    def only(self, kinds: Collection[str]) -> InteractionRows:
        """The rows of the given kinds."""
        return self.subset(np.isin(self.kinds, np.asarray(sorted(kinds))))

    def subset(self, keep: np.ndarray) -> InteractionRows:
        """The rows where the boolean mask ``keep`` is true, in their order."""
        return InteractionRows(
            self.customer_ids[keep],
            self.product_ids[keep],
            self.kinds[keep],
            self.quantities[keep],
            self.timestamps[keep],
        )


@dataclass(frozen=True)
class SalesRows:
    """Sale lines for bestsellers: guests included (customer id -1)."""

    customer_ids: np.ndarray  # int64, -1 for guest orders
    product_ids: np.ndarray  # int64
    quantities: np.ndarray  # float64
    timestamps: np.ndarray  # datetime64[s]

    def __len__(self) -> int:
        return int(self.product_ids.size)

    def extended(self, more: SalesRows) -> SalesRows:
        """These rows followed by ``more`` (new arrays; both stay as they are)."""
        if not len(more):
            return self
        return SalesRows(
            np.concatenate([self.customer_ids, more.customer_ids]),
            np.concatenate([self.product_ids, more.product_ids]),
            np.concatenate([self.quantities, more.quantities]),
            np.concatenate([self.timestamps, more.timestamps]),
        )


def _chunks(values: Sequence[int], size: int = IN_CHUNK) -> Iterator[Sequence[int]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _epoch(session: Session, column: Any) -> ColumnElement[Any]:
    """The timestamp in a form numpy converts in bulk: converting datetimes row by row in Python is the
    slowest part of reading a few hundred thousand rows. SQLite: the stored ISO text as is; PostgreSQL:
    seconds since 1970."""
    if session.get_bind().dialect.name == "sqlite":
        return type_coerce(column, String)
    return cast(func.floor(func.extract("epoch", column)), BigInteger)


def _seconds(values: Any, n: int) -> np.ndarray:
    """datetime64[s] from ISO strings or integer seconds."""
    items = list(values)
    if items and isinstance(items[0], str):
        return np.array(items, dtype="datetime64[us]").astype("datetime64[s]")
    return np.fromiter(items, dtype=np.int64, count=n).astype("datetime64[s]")


#: Rows a paced read takes from the driver at a time (see :func:`_fetch`).
FETCH_CHUNK = 2000


def _fetch(
    session: Session,
    statement: Any,
    params: dict[str, Any] | None = None,
    *,
    pause: Callable[[], None] | None = None,
) -> list[Any]:
    """All rows of a Core statement as the driver's plain tuples.

    ``pause``, when given, is called after every ``FETCH_CHUNK`` rows: the driver makes a batch's tuples
    in C without letting go of the GIL, so a serving process that reads everything beside its requests
    (a model swap) takes the rows a few milliseconds' worth at a time, and gives the GIL back between
    (:class:`~domain.serving.rebuild.Pacer`). Read whole, the bundled sample's 65,000 interactions held it
    for tens of milliseconds at once, and every request of the process waited that long.

    The statements here select integers and text only (timestamps as text or epoch seconds, see
    :func:`_epoch`), which neither SQLite's nor psycopg's dialect processes on the way out, so the driver's
    own tuples hold the same values as SQLAlchemy's rows; reading them from the cursor skips building a
    ``Row`` per line (a third of the time spent reading the full UCI file's 536,000 lines).
    """
    with session.connection().execute(statement, params) as result:
        cursor = result.cursor
        if pause is None:
            return list(cursor.fetchall())
        rows: list[Any] = []
        while batch := cursor.fetchmany(FETCH_CHUNK):
            rows.extend(batch)
            pause()
    return rows


def _queries(session: Session, until: dt.datetime | None) -> tuple[Select[Any], Select[Any]]:
    lines = (
        select(
            Order.customer_id.label("customer_id"),
            OrderLine.product_id.label("product_id"),
            Order.kind.label("kind"),
            OrderLine.quantity.label("quantity"),
            _epoch(session, Order.ordered_at).label("at"),
        )
        .join(Order, Order.id == OrderLine.order_id)
        .where(Order.customer_id.is_not(None), real_orders())
    )
    events = select(
        Event.customer_id.label("customer_id"),
        Event.product_id.label("product_id"),
        Event.kind.label("kind"),
        Event.quantity.label("quantity"),
        _epoch(session, Event.occurred_at).label("at"),
    ).where(and_(Event.customer_id.is_not(None), Event.product_id.is_not(None)))
    if until is not None:
        lines = lines.where(Order.ordered_at <= until)
        events = events.where(Event.occurred_at <= until)
    return lines, events


#: :func:`load_customer_rows`'s statement, by dialect name: built once, so that its SQL is compiled once
#: and its cache key computed once (building it again and computing its key took two thirds of the CPU of
#: reading one customer's rows, which a web process does after each write).
_BY_CUSTOMERS: dict[str, Any] = {}


def _by_customers(session: Session) -> Any:
    """The union of :func:`_queries` for the customers of the expanding parameter ``customer_ids``, with
    order ids above ``after_order`` and event ids above ``after_event``, and each row's source (the
    order's id for a line, minus the event's id for an event)."""
    name = session.get_bind().dialect.name
    statement = _BY_CUSTOMERS.get(name)
    if statement is None:
        lines, events = _queries(session, None)
        ids: BindParameter[int] = bindparam("customer_ids", expanding=True)
        statement = _BY_CUSTOMERS[name] = union_all(
            lines.add_columns(Order.id.label("source")).where(
                Order.customer_id.in_(ids), Order.id > bindparam("after_order")
            ),
            events.add_columns((-Event.id).label("source")).where(
                Event.customer_id.in_(ids), Event.id > bindparam("after_event")
            ),
        )
    return statement


def _to_rows(records: list[Any]) -> InteractionRows:
    n = len(records)
    customers = np.fromiter((r[0] for r in records), dtype=np.int64, count=n)
    products = np.fromiter((r[1] for r in records), dtype=np.int64, count=n)
    raw_kinds = np.array([r[2] for r in records], dtype="U8") if n else np.empty(0, dtype="U8")
    # Order kinds are sale/return; a sale line is a purchase.
    kinds = np.where(raw_kinds == "sale", "purchase", raw_kinds).astype("U8")
    quantities = np.fromiter((r[3] for r in records), dtype=np.float64, count=n)
    timestamps = _seconds((r[4] for r in records), n)
    return InteractionRows(customers, products, kinds, quantities, timestamps)


@dataclass(frozen=True)
class SourcedRows:
    """Some customers' rows with the order or event each came from, in one canonical order: by
    customer, their order lines before their events, each by id (lines of one order as read)."""

    rows: InteractionRows
    #: The order's id for an order line, minus the event's id for an event.
    sources: np.ndarray

    def __len__(self) -> int:
        return len(self.rows)

    def upto(self, mark: Watermark) -> SourcedRows:
        """The rows of orders and events with ids at or below ``mark``."""
        s = self.sources
        keep = ((s > 0) & (s <= mark.order_id)) | ((s < 0) & (-s <= mark.event_id))
        if keep.all():
            return self
        return SourcedRows(self.rows.subset(keep), s[keep])

    @staticmethod
    def joined(parts: Sequence[SourcedRows]) -> SourcedRows:
        """The rows of ``parts`` together, in the canonical order."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return _sorted(_to_rows([]), np.empty(0, dtype=np.int64))
        if len(parts) == 1:
            return parts[0]
        fields = [np.concatenate([getattr(p.rows, f) for p in parts]) for f in _ROW_FIELDS]
        return _sorted(InteractionRows(*fields), np.concatenate([p.sources for p in parts]))


_ROW_FIELDS = ("customer_ids", "product_ids", "kinds", "quantities", "timestamps")


def _sorted(rows: InteractionRows, sources: np.ndarray) -> SourcedRows:
    """``rows`` in the canonical order of :class:`SourcedRows` (a stable sort)."""
    order = np.lexsort((np.abs(sources), sources < 0, rows.customer_ids))
    return SourcedRows(rows.subset(order), sources[order])


@dataclass(frozen=True)
class WrittenRows:
    """What a write just stored for one customer, enough to make the rows a read of it would give
    (:func:`load_customer_rows`) without reading them: ``lines`` are (product id, order or event kind,
    quantity, naive UTC time, source: the order's id, or minus the event's id), of real orders and of
    events with a product. Made into rows only when used (:meth:`sourced`)."""

    customer_id: int
    lines: tuple[tuple[int, str, float, dt.datetime, int], ...]

    def sourced(self) -> SourcedRows:
        records = [
            (self.customer_id, p, kind, q, calendar.timegm(at.timetuple()))
            for p, kind, q, at, _ in self.lines
        ]
        sources = np.fromiter((line[4] for line in self.lines), dtype=np.int64, count=len(self.lines))
        return _sorted(_to_rows(records), sources)


def load_customer_rows(
    session: Session, customer_ids: Collection[int], *, after: Watermark | None = None
) -> SourcedRows:
    """Every interaction of the given customers (only those of orders and events with ids above
    ``after`` if given), with their sources: one query per 500 customers."""
    records: list[Any] = []
    statement = _by_customers(session)
    since = after or Watermark()
    for chunk in _chunks(sorted({int(c) for c in customer_ids})):
        params = {"customer_ids": list(chunk), "after_order": since.order_id, "after_event": since.event_id}
        records.extend(_fetch(session, statement, params))
    sources = np.fromiter((r[5] for r in records), dtype=np.int64, count=len(records))
    return _sorted(_to_rows(records), sources)


def load_interactions(
    session: Session,
    *,
    until: dt.datetime | None = None,
    customer_ids: Collection[int] | None = None,
    pause: Callable[[], None] | None = None,
) -> InteractionRows:
    """Every interaction of customers (optionally only some), up to ``until`` inclusive.

    One query per table (per chunk of 500 customers when ``customer_ids`` is given), streamed;
    ``pause`` is called between batches of rows (see :func:`_fetch`).
    """
    if customer_ids is not None and until is None:
        return load_customer_rows(session, customer_ids).rows
    records: list[Any] = []
    lines, events = _queries(session, until)
    statements: list[Select[Any]] = []
    if customer_ids is None:
        statements = [union_all(lines, events)]  # type: ignore[list-item]
    else:
        ids = sorted({int(c) for c in customer_ids})
        for chunk in _chunks(ids):
            statements.append(
                union_all(  # type: ignore[arg-type]
                    lines.where(Order.customer_id.in_(chunk)), events.where(Event.customer_id.in_(chunk))
                )
            )
    for statement in statements:
        records.extend(_fetch(session, statement, pause=pause))
    return _to_rows(records)


#: Events of one anonymous session read for its picks: the newest, enough for a visit or several.
SESSION_EVENTS = 200


def load_session(session: Session, anonymous_id: str) -> InteractionRows:
    """The newest events of one anonymous browser session (no customer), as interaction rows whose
    customer id is -1. One indexed query."""
    statement = (
        select(
            literal(-1).label("customer_id"),
            Event.product_id,
            Event.kind,
            Event.quantity,
            _epoch(session, Event.occurred_at).label("at"),
        )
        .where(Event.anonymous_id == anonymous_id, Event.customer_id.is_(None), Event.product_id.is_not(None))
        .order_by(Event.id.desc())
        .limit(SESSION_EVENTS)
    )
    return _to_rows(_fetch(session, statement))


def load_sales(
    session: Session,
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    order_ids: tuple[int, int] | None = None,
) -> SalesRows:
    """Sale order lines (guests included, returns not) from ``since`` to ``until``, both inclusive, for
    bestsellers. Training reads only the bestsellers' window (``since``) instead of every sale; the model
    store adds only those of orders with ids above ``order_ids[0]`` and up to ``order_ids[1]``."""
    statement = (
        select(
            func.coalesce(Order.customer_id, literal(-1)),
            OrderLine.product_id,
            OrderLine.quantity,
            _epoch(session, Order.ordered_at),
        )
        .join(Order, Order.id == OrderLine.order_id)
        .where(Order.kind == "sale", real_orders())
    )
    if since is not None:
        statement = statement.where(Order.ordered_at >= since)
    if until is not None:
        statement = statement.where(Order.ordered_at <= until)
    if order_ids is not None:
        statement = statement.where(Order.id > order_ids[0], Order.id <= order_ids[1])
    records = _fetch(session, statement)
    n = len(records)
    return SalesRows(
        customer_ids=np.fromiter((r[0] for r in records), dtype=np.int64, count=n),
        product_ids=np.fromiter((r[1] for r in records), dtype=np.int64, count=n),
        quantities=np.fromiter((r[2] for r in records), dtype=np.float64, count=n),
        timestamps=_seconds((r[3] for r in records), n),
    )


@dataclass(frozen=True)
class Watermark:
    """Largest order and event ids at one moment: how far a reader has seen the activity tables."""

    order_id: int = 0
    event_id: int = 0

    def covers(self, other: Watermark) -> bool:
        return self.order_id >= other.order_id and self.event_id >= other.event_id


def activity_watermark(session: Session, *, until: dt.datetime | None = None) -> Watermark:
    """The newest order id and event id (optionally among rows dated up to ``until``).

    Simulated orders are not activity: nothing that reads the watermark (``train --if-stale``, the web
    processes' look for customers with new rows) reads them."""
    orders = select(func.max(Order.id)).where(real_orders())
    events = select(func.max(Event.id))
    if until is not None:
        orders = orders.where(Order.ordered_at <= until)
        events = events.where(Event.occurred_at <= until)
    return Watermark(int(session.scalar(orders) or 0), int(session.scalar(events) or 0))


def changed_customers(session: Session, since: Watermark) -> dict[int, Watermark]:
    """Customers with an order or event newer than ``since``, with the newest ids of each."""
    out: dict[int, Watermark] = {}
    orders = session.execute(
        select(Order.customer_id, func.max(Order.id))
        .where(Order.id > since.order_id, Order.customer_id.is_not(None), real_orders())
        .group_by(Order.customer_id)
    )
    for customer_id, order_id in orders:
        out[int(customer_id or 0)] = Watermark(int(order_id), 0)
    events = session.execute(
        select(Event.customer_id, func.max(Event.id))
        .where(Event.id > since.event_id, Event.customer_id.is_not(None))
        .group_by(Event.customer_id)
    )
    for customer_id, event_id in events:
        key = int(customer_id or 0)  # never NULL: filtered above
        out[key] = Watermark(out.get(key, Watermark()).order_id, int(event_id))
    return out


def new_activity(session: Session, since: Watermark) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """The (customer id, order id) pairs of orders and (customer id, event id) pairs of events with ids
    above ``since`` that belong to a customer: each row, so that a reader can tell which it has read.
    Simulated orders are not activity (as for :func:`changed_customers`)."""
    orders = session.execute(
        select(Order.customer_id, Order.id).where(
            Order.id > since.order_id, Order.customer_id.is_not(None), real_orders()
        )
    )
    events = session.execute(
        select(Event.customer_id, Event.id).where(Event.id > since.event_id, Event.customer_id.is_not(None))
    )
    return [(int(c or 0), int(i)) for c, i in orders], [(int(c or 0), int(i)) for c, i in events]
