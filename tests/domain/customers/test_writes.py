"""The storefront's writes cost few round trips: one lookup, then the inserts (statements counted)."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from decimal import Decimal

import pytest
from sqlalchemy import event, func, insert, select

from domain.customers.events import _CHUNK, EventInput, record_events
from domain.customers.orders import OrderInput, OrderLineInput, record_order
from domain.errors import Conflict, InvalidInput
from domain.models import Customer, Event, Order, OrderLine
from tests.delivery_fixtures import make_customer, make_product, make_selection


@contextlib.contextmanager
def _statements(session) -> Iterator[list[str]]:  # type: ignore[no-untyped-def]
    """The first word of every statement the session sends (SAVEPOINT and RELEASE included, if any)."""
    seen: list[str] = []

    def count(conn, cursor, statement, *args) -> None:  # type: ignore[no-untyped-def]
        seen.append(statement.split(None, 1)[0].upper())

    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


def _order(customer: str, sku: str, order_id: str = "W-1") -> OrderInput:
    return OrderInput(
        order_id=order_id,
        customer_id=customer,
        lines=[OrderLineInput(sku, 2, Decimal("4.95"))],
        ordered_at=dt.datetime(2011, 12, 4, 9, 0, tzinfo=dt.UTC),
    )


def test_an_order_of_a_customer_never_reminded_is_one_lookup_and_its_inserts(session, settings):
    """Before: four SELECTs (product, customer, existing order, attribution's five-table join) and the ORM's
    flush; attribution now runs only for a customer with a sent, clicked or purchased selection."""
    customer, product = make_customer(session), make_product(session, "4.95")
    make_selection(session, customer)  # planned, never sent: nothing to attribute
    session.flush()
    with _statements(session) as seen:
        result = record_order(session, _order(customer.external_id, product.sku), settings)
    assert seen == ["SELECT", "INSERT", "INSERT"]
    assert (result.created, result.customer_created, result.kind, result.lines) == (True, False, "sale", 1)
    stored = session.scalars(select(Order).where(Order.id == result.order_id)).one()
    assert (stored.external_id, stored.customer_id, stored.source, stored.currency) == (
        "W-1",
        customer.id,
        "api",
        "GBP",
    )
    assert stored.ordered_at == dt.datetime(2011, 12, 4, 9, 0) and stored.created_at is not None
    line = session.scalars(select(OrderLine).where(OrderLine.order_id == stored.id)).one()
    assert (line.line_no, line.product_id, line.quantity, line.unit_price) == (
        1,
        product.id,
        2,
        Decimal("4.95"),
    )


def test_a_new_customer_is_created_by_the_insert_and_a_repeat_returns_the_stored_order(session, settings):
    product = make_product(session, "4.95")
    session.flush()
    first = record_order(session, _order("NEW-1", product.sku), settings)
    assert first.created and first.customer_created and first.customer_id is not None
    again = record_order(session, _order("NEW-1", product.sku), settings)
    assert (again.created, again.customer_created, again.order_id) == (False, False, first.order_id)
    other = OrderInput("W-1", "NEW-1", [OrderLineInput(product.sku, 3, Decimal("4.95"))])
    with pytest.raises(Conflict):
        record_order(session, other, settings)
    with pytest.raises(InvalidInput) as refused:
        record_order(session, _order("NEW-1", "NOPE", "W-2"), settings)
    assert refused.value.field == "lines[0].sku"
    assert session.scalar(select(func.count(Order.id))) == 1


def test_an_erased_customer_is_refused_before_an_existing_order_is_compared(session, settings):
    customer, product = make_customer(session), make_product(session, "4.95")
    session.flush()
    record_order(session, _order(customer.external_id, product.sku), settings)
    customer.erased_at = dt.datetime(2011, 12, 5)
    session.flush()
    for order_id in ("W-1", "W-2"):
        with pytest.raises(InvalidInput) as refused:
            record_order(session, _order(customer.external_id, product.sku, order_id), settings)
        assert refused.value.field == "customer_id"
    with pytest.raises(InvalidInput) as refused_event:
        record_events(session, settings, [EventInput("e-1", "view", product.sku, customer.external_id)])
    assert refused_event.value.field == "events[0].customer_id"


def test_an_event_batch_is_one_lookup_and_one_insert_and_returns_the_written_ids(session, settings):
    """Before: three SELECTs (customers, products, ids already recorded) and the ORM's flush."""
    a, b, product = make_customer(session), make_customer(session), make_product(session, "4.95")
    session.flush()
    batch = [
        EventInput("e-1", "view", product.sku, a.external_id),
        EventInput("e-2", "cart", product.sku, b.external_id),
        EventInput("e-3", "view", product.sku, anonymous_id="anon-1"),
    ]
    with _statements(session) as seen:
        result = record_events(session, settings, batch)
    assert seen == ["SELECT", "INSERT"]
    assert (result.recorded, result.duplicates, result.customer_ids) == (3, 0, tuple(sorted((a.id, b.id))))
    rows = dict(session.execute(select(Event.idempotency_key, Event.id)).all())
    assert result.event_ids == {a.id: (rows["e-1"],), b.id: (rows["e-2"],)}
    with _statements(session) as seen:
        again = record_events(
            session, settings, [*batch, EventInput("e-4", "view", product.sku, a.external_id)]
        )
    assert (again.recorded, again.duplicates, again.customer_ids) == (1, 3, (a.id,))
    assert seen == ["SELECT", "INSERT"]
    with _statements(session) as seen:
        assert record_events(session, settings, batch).recorded == 0
    assert seen == ["SELECT"]


def test_a_batch_longer_than_one_lookup_chunk_is_recorded_and_found_again(session, settings):
    """The lookup is one prebuilt statement per chunk of ids: a chunk past the customers and products
    binds empty lists for them, and must still find the ids already recorded."""
    customer, product = make_customer(session), make_product(session, "4.95")
    session.flush()
    batch = [EventInput(f"e-{i}", "view", product.sku, customer.external_id) for i in range(_CHUNK + 5)]
    first = record_events(session, settings, batch)
    assert (first.recorded, first.duplicates, first.customer_ids) == (_CHUNK + 5, 0, (customer.id,))
    with _statements(session) as seen:
        again = record_events(session, settings, batch)
    assert (again.recorded, again.duplicates) == (0, _CHUNK + 5)
    assert seen == ["SELECT", "SELECT"]


@contextlib.contextmanager
def _twin_after_lookup(session, table, row: dict[str, object]) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """A concurrent twin, deterministically: ``row`` is inserted on the session's connection after the
    write's lookup, before its first other statement, so the lookup missed it and the write collides."""
    done: list[bool] = []

    def twin(conn, cursor, statement, *args) -> None:  # type: ignore[no-untyped-def]
        if not done and not statement.lstrip().upper().startswith("SELECT"):
            done.append(True)
            conn.execute(insert(table), row)

    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", twin)
    try:
        yield
    finally:
        event.remove(engine, "before_cursor_execute", twin)
    assert done, "the write sent nothing after its lookup"


def test_an_event_batch_that_loses_to_a_concurrent_twin_is_a_conflict_and_writes_nothing(session, settings):
    customer, product = make_customer(session), make_product(session, "4.95")
    session.flush()
    twin = {
        "idempotency_key": "e-2",
        "customer_id": customer.id,
        "product_id": product.id,
        "kind": "view",
        "occurred_at": dt.datetime(2011, 12, 4, 9, 0),
    }
    batch = [EventInput(k, "view", product.sku, customer.external_id) for k in ("e-1", "e-2")]
    with _twin_after_lookup(session, Event.__table__, twin), pytest.raises(Conflict):
        record_events(session, settings, batch)
    # The session is still usable (the failed insert was undone alone) and holds the twin only.
    assert session.scalars(select(Event.idempotency_key)).all() == ["e-2"]


def test_an_order_that_loses_to_a_concurrent_twin_is_a_conflict_and_writes_nothing(session, settings):
    product = make_product(session, "4.95")
    session.flush()
    twin = {
        "external_id": "W-1",
        "kind": "sale",
        "ordered_at": dt.datetime(2011, 12, 4, 9, 0),
        "currency": "GBP",
        "source": "api",
    }
    with _twin_after_lookup(session, Order.__table__, twin), pytest.raises(Conflict) as refused:
        record_order(session, _order("NEW-1", product.sku), settings)
    assert "concurrent" in refused.value.message
    # Neither the new customer nor a line was kept; the session is usable.
    assert session.scalar(select(func.count(Customer.id))) == 0
    assert session.scalar(select(func.count(OrderLine.id))) == 0
    assert session.scalars(select(Order.external_id)).all() == ["W-1"]


def test_a_new_customer_created_by_a_concurrent_request_is_a_conflict_and_writes_nothing(session, settings):
    product = make_product(session, "4.95")
    session.flush()
    twin = {"external_id": "NEW-1", "locale": "en", "time_zone": "UTC"}
    with _twin_after_lookup(session, Customer.__table__, twin), pytest.raises(Conflict):
        record_order(session, _order("NEW-1", product.sku), settings)
    assert session.scalar(select(func.count(Order.id))) == 0
    assert session.scalars(select(Customer.external_id)).all() == ["NEW-1"]
