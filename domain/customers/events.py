"""Record a batch of storefront events all-or-nothing, idempotently (a repeated batch adds nothing)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from config import Settings
from domain.errors import Conflict, InvalidInput
from domain.models import EVENT_KINDS, Customer, Event, Product
from domain.models._types import naive_utc, utcnow

#: Events may be stamped slightly ahead of the server clock (client clocks drift), never further.
MAX_CLOCK_SKEW = dt.timedelta(hours=1)
#: IN lists are split so that no statement binds more parameters than SQLite allows.
_CHUNK = 900


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


def _chunks(values: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


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
    customers: dict[str, tuple[int, bool]] = {}
    for chunk in _chunks(customer_ids):
        rows = session.execute(
            select(Customer.external_id, Customer.id, Customer.erased_at).where(
                Customer.external_id.in_(chunk)
            )
        )
        customers.update((ext, (cid, erased is not None)) for ext, cid, erased in rows)
    skus = sorted({ev.sku for ev in events})
    products: dict[str, int] = {}
    for chunk in _chunks(skus):
        found_products = session.execute(select(Product.sku, Product.id).where(Product.sku.in_(chunk)))
        products.update((sku, pid) for sku, pid in found_products)
    for i, ev in enumerate(events):
        if ev.customer_id:
            found = customers.get(ev.customer_id)
            if found is None:
                raise InvalidInput(f"{field}[{i}].customer_id", f"unknown customer {ev.customer_id!r}")
            if found[1]:
                raise InvalidInput(f"{field}[{i}].customer_id", f"customer {ev.customer_id!r} was erased")
        if ev.sku not in products:
            raise InvalidInput(f"{field}[{i}].sku", f"unknown product {ev.sku!r}")

    keys = list(seen)
    existing: set[str] = set()
    for chunk in _chunks(keys):
        existing.update(
            session.scalars(select(Event.idempotency_key).where(Event.idempotency_key.in_(chunk)))
        )
    new = [
        Event(
            idempotency_key=ev.idempotency_key,
            customer_id=customers[ev.customer_id][0] if ev.customer_id else None,
            anonymous_id=ev.anonymous_id,
            product_id=products[ev.sku],
            kind=ev.kind,
            source=ev.source,
            recommendation_id=ev.recommendation_id,
            quantity=ev.quantity,
            occurred_at=naive_utc(ev.occurred_at) if ev.occurred_at else now,
        )
        for ev in events
        if ev.idempotency_key not in existing
    ]
    if new:
        try:
            with session.begin_nested():  # a concurrent twin batch loses cleanly, the session stays usable
                session.add_all(new)
        except IntegrityError:
            raise Conflict(
                "another request recorded events with the same ids at the same time; retry the batch"
            ) from None
    changed = tuple(sorted({e.customer_id for e in new if e.customer_id is not None}))
    return BatchResult(recorded=len(new), duplicates=len(events) - len(new), customer_ids=changed)
