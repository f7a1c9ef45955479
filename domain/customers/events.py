"""Record a batch of storefront events all-or-nothing, idempotently (a repeated batch adds nothing)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, case, delete, literal_column, select, union_all
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from config import Settings
from domain.customers.interactions import WrittenRows
from domain.errors import Conflict, InvalidInput
from domain.models import EVENT_KINDS, Customer, Event, Product
from domain.models._types import naive_utc, utcnow

#: Events may be stamped slightly ahead of the server clock (client clocks drift), never further.
MAX_CLOCK_SKEW = dt.timedelta(hours=1)
#: IN lists are split so that no statement binds more parameters than SQLite allows (999 before 3.32):
#: a lookup binds three lists.
_CHUNK = 300

# The statements of a write, built once: building a statement (its operators' coercions) and generating its
# cache key, at every call, cost more CPU than running it (SQLAlchemy memoizes a statement's cache key on the
# statement object, so a module-level statement is keyed once). Core on the tables, not the ORM entities:
# no ORM compile step. Empty IN lists are fine (an expanding parameter renders an empty set).
_customers = Customer.metadata.tables[Customer.__tablename__]
_products = Product.metadata.tables[Product.__tablename__]
_events = Event.metadata.tables[Event.__tablename__]
_LOOK_UP = union_all(
    select(
        literal_column("'c'"),
        _customers.c.external_id,
        _customers.c.id,
        case((_customers.c.erased_at.is_not(None), 1), else_=0),
    ).where(_customers.c.external_id.in_(bindparam("customer_ids", expanding=True))),
    select(literal_column("'p'"), _products.c.sku, _products.c.id, literal_column("0")).where(
        _products.c.sku.in_(bindparam("skus", expanding=True))
    ),
    select(literal_column("'e'"), _events.c.idempotency_key, _events.c.id, literal_column("0")).where(
        _events.c.idempotency_key.in_(bindparam("keys", expanding=True))
    ),
)
# One INSERT of every row (the ORM's unit of work cost more than the rest of the call; its bulk insert
# would split the rows by which columns are NULL), by dialect name. ON CONFLICT DO NOTHING rather than a
# savepoint around a plain INSERT: a concurrent twin's rows are skipped instead of failing the statement
# (which, on PostgreSQL, would abort the request's transaction), so the write needs no SAVEPOINT and
# RELEASE round trips; a skipped row is told by the rows RETURNING gives back.
_INSERT = {
    name: dialect.insert(_events)
    .on_conflict_do_nothing(index_elements=[_events.c.idempotency_key])
    .returning(_events.c.id, _events.c.customer_id, _events.c.idempotency_key)
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}
_UNDO = delete(_events).where(_events.c.id.in_(bindparam("ids", expanding=True)))


class BatchTooLarge(InvalidInput):
    """More events than ``api.max_batch`` in one call: nothing is recorded."""

    status = 413


@dataclass(frozen=True, slots=True)
class EventInput:
    """One event as a client sent it; ``customer_id`` and ``sku`` are the shop's own ids."""

    idempotency_key: str
    kind: str
    sku: str
    customer_id: str | None = None
    anonymous_id: str | None = None
    recommendation_id: str | None = None
    quantity: int = 1
    occurred_at: dt.datetime | None = None
    source: str = "api"


@dataclass(frozen=True, slots=True)
class BatchResult:
    recorded: int
    duplicates: int
    #: Database ids of the customers with new events (for the serving layer to refresh).
    customer_ids: tuple[int, ...] = ()
    #: The new events' ids by customer (the serving layer's freshness check need not read them again).
    event_ids: dict[int, tuple[int, ...]] = field(default_factory=dict)
    #: The new events' interaction rows by customer, as a read of them would give them (the serving layer
    #: adds them to the customer's rows without reading them).
    rows: dict[int, WrittenRows] = field(default_factory=dict)


def record_events(
    session: Session,
    settings: Settings,
    events: Sequence[EventInput],
    *,
    allowed_kinds: Iterable[str] = EVENT_KINDS,
    field: str = "events",
) -> BatchResult:
    """Validate the whole batch, then insert the events not seen before; nothing is written on any error.

    Raises :class:`BatchTooLarge` (413) above ``settings.api.max_batch`` events, :class:`InvalidInput`
    (422) naming ``events[i].<field>`` for the first item at fault (unknown or erased customer, unknown
    SKU, a kind this caller may not send, an id repeated within the batch, a time in the future) and
    :class:`Conflict` (409) when a concurrent request recorded one of the same ids first.
    """
    if len(events) > settings.api.max_batch:
        raise BatchTooLarge(field, f"{len(events)} events; at most {settings.api.max_batch} per batch")
    if not events:
        raise InvalidInput(field, "at least one event is required")
    allowed = set(allowed_kinds)
    now = utcnow()
    seen: dict[str, int] = {}
    for i, ev in enumerate(events):
        at = f"{field}[{i}]"
        if ev.kind not in EVENT_KINDS:
            raise InvalidInput(f"{at}.type", f"must be one of {', '.join(EVENT_KINDS)}")
        if ev.kind not in allowed:
            raise InvalidInput(f"{at}.type", f"this key may only send {', '.join(sorted(allowed))} events")
        if ev.idempotency_key in seen:
            raise InvalidInput(f"{at}.id", f"repeats the id of {field}[{seen[ev.idempotency_key]}]")
        seen[ev.idempotency_key] = i
        if not ev.customer_id and not ev.anonymous_id:
            raise InvalidInput(f"{at}.customer_id", "either customer_id or anonymous_id is required")
        if ev.quantity < 1:
            raise InvalidInput(f"{at}.quantity", "must be at least 1")
        if ev.occurred_at is not None and naive_utc(ev.occurred_at) > now + MAX_CLOCK_SKEW:
            raise InvalidInput(f"{at}.occurred_at", "is in the future")

    customer_ids = sorted({ev.customer_id for ev in events if ev.customer_id})
    skus = sorted({ev.sku for ev in events})
    keys = list(seen)
    customers, products, existing = _look_up(session, customer_ids, skus, keys)
    for i, ev in enumerate(events):
        if ev.customer_id:
            found = customers.get(ev.customer_id)
            if found is None:
                raise InvalidInput(f"{field}[{i}].customer_id", f"unknown customer {ev.customer_id!r}")
            if found[1]:
                raise InvalidInput(f"{field}[{i}].customer_id", f"customer {ev.customer_id!r} was erased")
        if ev.sku not in products:
            raise InvalidInput(f"{field}[{i}].sku", f"unknown product {ev.sku!r}")

    new: list[dict[str, Any]] = [
        {
            "idempotency_key": ev.idempotency_key,
            "customer_id": customers[ev.customer_id][0] if ev.customer_id else None,
            "anonymous_id": ev.anonymous_id,
            "product_id": products[ev.sku],
            "kind": ev.kind,
            "source": ev.source,
            "recommendation_id": ev.recommendation_id,
            "quantity": ev.quantity,
            "occurred_at": naive_utc(ev.occurred_at) if ev.occurred_at else now,
        }
        for ev in events
        if ev.idempotency_key not in existing
    ]
    if new:
        connection = session.connection()
        written = connection.execute(_INSERT[connection.dialect.name], new).all()
        if len(written) < len(new):
            # A concurrent request recorded some of these ids after the lookup: its rows were skipped, and
            # this batch's own are taken back (all-or-nothing), which leaves the session usable.
            ids = [row[0] for row in written]
            for start in range(0, len(ids), _CHUNK):
                connection.execute(_UNDO, {"ids": ids[start : start + _CHUNK]})
            raise Conflict(
                "another request recorded events with the same ids at the same time; retry the batch"
            )
    else:
        written = []
    by_customer: dict[int, list[int]] = {}
    lines: dict[int, list[tuple[int, str, float, dt.datetime, int]]] = {}
    values = {row["idempotency_key"]: row for row in new}
    for event_id, customer_id, key in written:
        if customer_id is not None:
            by_customer.setdefault(int(customer_id), []).append(int(event_id))
            row = values[key]
            lines.setdefault(int(customer_id), []).append(
                (row["product_id"], row["kind"], row["quantity"], row["occurred_at"], -int(event_id))
            )
    return BatchResult(
        recorded=len(new),
        duplicates=len(events) - len(new),
        customer_ids=tuple(sorted(by_customer)),
        event_ids={c: tuple(sorted(ids)) for c, ids in by_customer.items()},
        rows={c: WrittenRows(c, tuple(found)) for c, found in lines.items()},
    )


def _look_up(
    session: Session, customer_ids: Sequence[str], skus: Sequence[str], keys: Sequence[str]
) -> tuple[dict[str, tuple[int, bool]], dict[str, int], set[str]]:
    """The named customers (database id, erased?), the products by SKU and the ids already recorded.

    One statement per chunk (a UNION ALL of the three indexed lookups): a batch of a few events, the
    storefront's commonest write, costs one round trip instead of three.
    """
    customers: dict[str, tuple[int, bool]] = {}
    products: dict[str, int] = {}
    existing: set[str] = set()
    session.flush()  # as an ORM select autoflushes: a Core one on the connection does not
    connection = session.connection()
    for start in range(0, max(len(customer_ids), len(skus), len(keys)), _CHUNK):
        chunks = {
            "customer_ids": customer_ids[start : start + _CHUNK],
            "skus": skus[start : start + _CHUNK],
            "keys": keys[start : start + _CHUNK],
        }
        for kind, key, row_id, flag in connection.execute(_LOOK_UP, chunks):
            if kind == "c":
                customers[key] = (int(row_id), bool(flag))
            elif kind == "p":
                products[key] = int(row_id)
            else:
                existing.add(key)
    return customers, products, existing
