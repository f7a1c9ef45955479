"""A web process keeps the rows of customers it reloaded, and reloads only the orders and events above their
settled watermark (issue 18: an active customer's reload after each write read their whole history)."""

# ruff: noqa: F811  (pytest fixtures imported from tests.domain.serving.fixtures are redefined as arguments)

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from domain.customers import events, orders
from domain.customers.erasure import erase_customer
from domain.customers.interactions import Watermark, load_customer_rows
from domain.models import Customer, Event, Product
from domain.serving import kept_rows
from domain.serving.kept_rows import KEEP_FROM
from domain.serving.model_store import ModelStore, ServingData
from domain.serving.recommendations import customer_erased
from tests.domain.serving.fixtures import (  # noqa: F401
    FakeClock,
    assert_same,
    clock,
    imported,
    imported_rows,
    sample_slice,
    serving,
    settings,
    trained,
)


@dataclass
class Read:
    customer_ids: list[int]
    after: Watermark | None
    rows: int


def _spy(monkeypatch) -> list[Read]:  # type: ignore[no-untyped-def]
    reads: list[Read] = []

    def spied(session: Session, customer_ids, *, after=None):  # type: ignore[no-untyped-def]
        rows = load_customer_rows(session, customer_ids, after=after)
        reads.append(Read(sorted(customer_ids), after, len(rows)))
        return rows

    monkeypatch.setattr(kept_rows, "load_customer_rows", spied)
    return reads


def _active(store: ModelStore, n: int = 1) -> tuple[ServingData, list[int]]:
    """The store's data and its ``n`` customers with the most rows in the model's matrix."""
    data = store.current()
    assert data.user_items is not None
    counts = np.diff(data.user_items.indptr)
    top = np.argsort(-counts, kind="stable")[:n]
    return data, [int(data.users.ids[u]) for u in top]


def _settle(store: ModelStore, clock: FakeClock) -> None:
    """Freshness checks for longer than the overlap (10 s): the store has a watermark seen that long ago."""
    for _ in range(12):
        clock.advance(1.0)
        store.current()


def _view(session: Session, customer_id: int, product_id: int, event_id: int | None = None) -> int:
    event = Event(
        id=event_id,
        customer_id=customer_id,
        product_id=product_id,
        kind="view",
        occurred_at=dt.datetime(2011, 12, 10, 12, 0),
    )
    session.add(event)
    session.flush()
    return int(event.id)


def _column(data: ServingData, product_id: int) -> int:
    assert data.model is not None
    return int(data.model.item_index.index_of([product_id])[0])


def _reload(store: ModelStore, data: ServingData, customer_id: int):  # type: ignore[no-untyped-def]
    store.customer_changed(customer_id)
    return store.customer(data, customer_id)


def test_a_kept_customers_reload_reads_only_what_is_new_and_gives_the_same_rows(
    sessions, serving, trained, clock, monkeypatch
):
    store = serving.store
    data, (customer_id,) = _active(store)
    _settle(store, clock)
    reads = _spy(monkeypatch)

    first = _reload(store, data, customer_id)
    assert reads[-1].after is None and reads[-1].rows >= KEEP_FROM, "the first reload reads them all"
    assert customer_id in data.kept
    product = int(data.model.item_index.ids[-1])
    with sessions.begin() as session:
        _view(session, customer_id, product)
    second = _reload(store, data, customer_id)
    assert reads[-1].after is not None and reads[-1].rows == 1, "only the new view is read"
    assert _column(data, product) in second.row.indices and not second.same_as(first)

    data.kept.forget(customer_id)  # the same customer read whole: the same rows, to the bit
    whole = _reload(store, data, customer_id)
    assert reads[-1].after is None
    assert whole.same_as(second)
    assert_same(whole.row, second.row)


def test_a_row_committed_late_below_the_newest_read_id_is_still_read(sessions, serving, trained, clock):
    """Ids are handed out before commit: a transaction can commit a row with an id below one a reload
    already read. Reading only ids above the newest one read would lose it for good; a reload reads again
    everything above the watermark settled ``freshness_overlap`` seconds ago."""
    store = serving.store
    data, (customer_id,) = _active(store)
    _settle(store, clock)
    _reload(store, data, customer_id)
    assert customer_id in data.kept
    with sessions() as session:
        base = int(session.scalar(select(func.max(Event.id))) or 0) + 100
    products = [int(p) for p in data.model.item_index.ids[-2:]]
    with sessions.begin() as session:
        _view(session, customer_id, products[0], base + 10)
    assert _column(data, products[0]) in _reload(store, data, customer_id).row.indices
    clock.advance(1.0)
    store.current()
    with sessions.begin() as session:  # committed after the read of base + 10, with a lower id
        _view(session, customer_id, products[1], base + 5)
    late = _reload(store, data, customer_id)
    assert {_column(data, p) for p in products} <= set(late.row.indices.tolist())


def test_a_batch_of_kept_and_new_customers_reloads_to_the_rows_of_a_whole_read(
    sessions, serving, trained, clock, monkeypatch
):
    """The freshness check reloads many customers at once: those with kept rows (each with its own
    settled mark) read what is new in one statement, the others whole in another."""
    store = serving.store
    data, customers = _active(store, 6)
    _settle(store, clock)
    with sessions() as session:
        store._fresh.reload(session, data, customers[:4])
    assert all(c in data.kept for c in customers[:4])
    _settle(store, clock)  # a later settled mark for the next reload's keeps
    product = int(data.model.item_index.ids[-1])
    with sessions.begin() as session:
        for c in customers[::2]:
            _view(session, c, product)
    with sessions() as session:
        store._fresh.reload(session, data, customers[2:])
    with sessions() as session:
        store._fresh.reload(session, data, customers[:2])
    assert all(c in data.kept for c in customers)
    reads = _spy(monkeypatch)
    with sessions() as session:
        store._fresh.reload(session, data, customers)
    assert [r.after is not None for r in reads] == [True], "all kept: one statement for what is new"
    kept = {c: data.fresh[c] for c in customers}

    for c in customers:
        data.kept.forget(c)
    with sessions() as session:
        store._fresh.reload(session, data, customers)
    assert reads[-1].after is None
    for c in customers:
        assert kept[c].same_as(data.fresh[c])
        assert_same(kept[c].row, data.fresh[c].row)
    assert all(_column(data, product) in data.fresh[c].row.indices for c in customers[::2])


def test_a_store_without_a_settled_watermark_keeps_nothing(serving, trained, monkeypatch):
    """Just started (no watermark seen ``freshness_overlap`` seconds ago), a store cannot tell which ids
    have all committed: it reads customers whole and keeps none."""
    store = serving.store
    data, (customer_id,) = _active(store)
    reads = _spy(monkeypatch)
    _reload(store, data, customer_id)
    _reload(store, data, customer_id)
    assert [r.after for r in reads] == [None, None]
    assert len(data.kept) == 0


def test_an_erased_customers_kept_rows_are_dropped_by_every_process(
    settings, sessions, serving, trained, clock
):
    """Nobody's rows outlive their erasure in memory: the process that erased drops them at once, another
    process at its next freshness check."""
    other = ModelStore(settings, sessions, background=False, clock=clock)
    stores = [serving.store, other]
    data, (customer_id,) = _active(serving.store)
    external = next(ext for ext, cid in data.customers.items() if cid == customer_id)
    held = []
    for store in stores:
        _settle(store, clock)
        mine = store.current()
        _reload(store, mine, customer_id)
        assert customer_id in mine.kept
        held.append(mine)
    with sessions.begin() as session:
        erase_customer(session, external, actor="test")
    customer_erased(serving, external)  # what the API does after its commit
    assert customer_id not in held[0].kept
    assert customer_id in held[1].kept
    clock.advance(1.0)
    other.current()
    assert customer_id not in held[1].kept


def test_rows_of_a_store_without_a_model_are_kept_too(sessions, settings, clock, imported):
    """Before any training the rows still reload (for what was bought), by the same rule."""
    store = ModelStore(settings, sessions, background=False, clock=clock)
    data = store.current()
    assert data.model is None
    customer_id = int(data.users.ids[np.argmax(np.diff(data.bought.indptr))])
    _settle(store, clock)
    before = _reload(store, data, customer_id)
    assert customer_id in data.kept
    assert np.array_equal(_reload(store, data, customer_id).bought_product_ids, before.bought_product_ids)


def test_rows_are_kept_up_to_the_bound_and_a_customer_without_rows_reads_empty(
    sessions, serving, trained, clock
):
    """A process keeps at most ``max_rows`` rows: past it, a new customer is read whole every time
    (memory stays bounded); a customer with no row at all reads as nothing, kept or not."""
    from domain.serving.kept_rows import KeptRows

    store = serving.store
    data, customers = _active(store, 2)
    _settle(store, clock)
    with sessions() as session:
        first = len(load_customer_rows(session, [customers[0]]))
        kept = KeptRows(max_rows=first)
        settled = store._fresh.settled()
        kept.read(session, [customers[0]], settled)
        kept.read(session, [customers[1]], settled)
        assert customers[0] in kept and customers[1] not in kept
        assert len(kept.read(session, [10**9], settled)) == 0


def _settled(serving, clock: FakeClock) -> tuple[ModelStore, ServingData, int]:  # type: ignore[no-untyped-def]
    """The store, its data and its most active customer, with a settled watermark."""
    data, (customer_id,) = _active(serving.store)
    _settle(serving.store, clock)
    return serving.store, data, customer_id


def _written_by_the_api(sessions, settings, store: ModelStore, customer_id: int, product_id: int) -> None:  # type: ignore[no-untyped-def]
    """A view and a two-line order for the customer, recorded as the API records them (the order's two
    lines of one product), and the store told with the rows written."""
    with sessions.begin() as session:
        external = session.get(Customer, customer_id).external_id
        sku = session.get(Product, product_id).sku
        result = events.record_events(
            session,
            settings,
            [
                events.EventInput(
                    uuid.uuid4().hex,
                    "view",
                    sku,
                    external,
                    occurred_at=dt.datetime(2011, 12, 11, 9, 30, 15, 123456),
                )
            ],
        )
        order = orders.record_order(
            session,
            orders.OrderInput(
                f"O-{uuid.uuid4().hex[:8]}",
                external,
                [
                    orders.OrderLineInput(sku, 2, Decimal("3.50")),
                    orders.OrderLineInput(sku, 1, Decimal("3.50")),
                ],
                ordered_at=dt.datetime(2011, 12, 11, 10, 0, 59, 999999),
            ),
        )
    store.customer_changed(
        customer_id, event_ids=result.event_ids[customer_id], rows=result.rows[customer_id]
    )
    store.customer_changed(customer_id, order_ids=(order.order_id,), rows=order.rows)


def test_a_kept_customers_own_writes_are_added_without_a_read_and_give_the_rows_of_a_read(
    sessions, settings, serving, trained, clock, monkeypatch
):
    store, data, customer_id = _settled(serving, clock)
    reads = _spy(monkeypatch)
    first = _reload(store, data, customer_id)
    assert customer_id in data.kept
    product = int(data.model.item_index.ids[-1])
    _written_by_the_api(sessions, settings, store, customer_id, product)

    before = len(reads)
    added = store.customer(data, customer_id)
    assert len(reads) == before, "the written rows were added, not read"
    assert _column(data, product) in added.row.indices and not added.same_as(first)
    assert product in added.bought_product_ids.tolist()

    data.kept.forget(customer_id)  # the same customer read whole: the same rows, to the bit
    whole = _reload(store, data, customer_id)
    assert len(reads) == before + 1 and reads[-1].after is None
    assert whole.same_as(added)
    assert_same(whole.row, added.row)


def test_written_rows_a_reload_read_first_are_not_added_twice(
    sessions, settings, serving, trained, clock, monkeypatch
):
    store, data, customer_id = _settled(serving, clock)
    _reload(store, data, customer_id)
    product = int(data.model.item_index.ids[-1])
    _written_by_the_api(sessions, settings, store, customer_id, product)
    with sessions() as session:  # another reload (the freshness check's, say) reads them first
        data.kept.read(session, [customer_id], store._fresh.settled())
    added = store.customer(data, customer_id)
    data.kept.forget(customer_id)
    whole = _reload(store, data, customer_id)
    assert whole.same_as(added)


def test_a_customer_whose_rows_are_not_kept_or_a_write_without_its_rows_is_read(
    sessions, settings, serving, trained, clock, monkeypatch
):
    store, data, customer_id = _settled(serving, clock)
    reads = _spy(monkeypatch)
    product = int(data.model.item_index.ids[-1])
    _written_by_the_api(sessions, settings, store, customer_id, product)  # not kept yet: read
    store.customer(data, customer_id)
    assert reads and reads[-1].customer_ids == [customer_id]
    assert customer_id in data.kept
    _written_by_the_api(sessions, settings, store, customer_id, product)
    store.customer_changed(customer_id)  # a change without its rows (an erasure's, a return's): read
    before = len(reads)
    store.customer(data, customer_id)
    assert len(reads) == before + 1


def test_an_erased_customers_written_rows_are_dropped_with_the_kept_ones(
    sessions, settings, serving, trained, clock
):
    store, data, customer_id = _settled(serving, clock)
    _reload(store, data, customer_id)
    _written_by_the_api(sessions, settings, store, customer_id, int(data.model.item_index.ids[-1]))
    assert customer_id in store._fresh._written
    external = next(ext for ext, cid in data.customers.items() if cid == customer_id)
    with sessions.begin() as session:
        erase_customer(session, external, actor="test")
    customer_erased(serving, external)
    assert customer_id not in store._fresh._written and customer_id not in data.kept
