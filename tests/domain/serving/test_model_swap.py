"""A new model in a serving process: the old one serves until the new one is ready, and serves as a fresh
load of it would."""

# ruff: noqa: F811  (pytest fixtures imported from tests.domain.serving.fixtures are redefined as arguments)

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator

import numpy as np
import pytest

from domain.catalog.snapshot import CatalogSnapshot
from domain.customers import interactions
from domain.customers.erasure import erase_customer
from domain.customers.interactions import load_interactions, load_sales
from domain.serving import model_store, rebuild
from domain.serving.model_store import ModelStore
from domain.serving.recommendations import Serving, bestsellers, recommend_for_customer
from tests.domain.serving.fixtures import (  # noqa: F401
    FakeClock,
    add_order,
    clock,
    imported,
    imported_rows,
    sample_slice,
    settings,
    trained,
)
from tests.domain.serving.test_model_store import _train


def _shown(items: list) -> list[tuple]:
    return [(i.sku, i.score, i.source, i.explanation) for i in items]


class Gate:
    """Holds the ranking of a new model's customers (the real one runs once the test opens it)."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.opened = threading.Event()

    def open(self) -> None:
        self.opened.set()


@pytest.fixture
def gate() -> Iterator[Gate]:
    held = Gate()
    yield held
    held.open()  # a test that failed early leaves no thread waiting


def _hold(monkeypatch: pytest.MonkeyPatch, gate: Gate) -> None:
    real = rebuild.fill_ahead

    def gated(*args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        gate.started.set()
        assert gate.opened.wait(30), "the test never opened the gate"
        real(*args, **kwargs)

    monkeypatch.setattr(rebuild, "fill_ahead", gated)


def test_the_old_model_serves_until_the_new_one_has_its_customers_ranked(
    sessions, settings, trained, clock, gate, monkeypatch
):
    """Regression: the new model's data used to serve as soon as it was read, while its customers were
    still being ranked, so their first requests ranked on the request beside that work."""
    store = ModelStore(settings, sessions, background=True, clock=clock)
    old = store.current().model
    store.wait()
    assert old is not None
    new_version = _train(sessions, settings).version
    _hold(monkeypatch, gate)
    clock.advance(settings.model.reload_interval + 1)
    store.current()  # the check is due: a background thread loads the new model
    assert gate.started.wait(30)
    assert store.current().model is old
    assert store.status()["version"] == old.version
    gate.open()
    store.wait()
    data = store.current()
    assert data.model is not None and data.model.version == new_version
    assert data.precomputed is not None and data.precomputed.ranked_count > 0


def test_a_customer_reloaded_while_a_new_model_is_made_ready_is_reloaded_on_it(
    sessions, settings, trained, clock, gate, monkeypatch
):
    store = ModelStore(settings, sessions, background=True, clock=clock)
    data = store.current()
    store.wait()
    customer = sorted(data.customers)[0]
    cid = data.customers[customer]
    _train(sessions, settings)
    _hold(monkeypatch, gate)
    clock.advance(settings.model.reload_interval + 1)
    store.current()
    assert gate.started.wait(30)
    with sessions.begin() as session:  # after the new model's data was read
        order = add_order(session, customer, ["85123A"], order_id="API-SWAP-1")
        product_id = order.lines[0].product_id
    store.customer_changed(cid)
    assert product_id in store.customer(store.current(), cid).bought_product_ids  # the old data's
    gate.open()
    store.wait()
    new = store.current()
    assert new is not data
    assert product_id in store.customer(new, cid).bought_product_ids


def test_a_swapped_model_serves_what_a_fresh_load_of_it_serves(sessions, settings, trained, clock):
    """The swap keeps the old data's sales (with the orders since) and ranks ahead: what requests get is
    what a process that starts with the new model serves."""
    swapped = Serving(
        settings, ModelStore(settings, sessions, background=True, clock=clock), CatalogSnapshot(sessions)
    )
    first = swapped.store.current()
    swapped.store.wait()
    with sessions.begin() as session:
        add_order(session, sorted(first.customers)[1], ["85123A", "22423"], order_id="API-SWAP-2")
        add_order(session, "NEWCOMER-SWAP", ["22423"], order_id="API-SWAP-3")
    new_version = _train(sessions, settings).version
    data = swapped.store.refresh()
    assert data.model is not None and data.model.version == new_version
    fresh = Serving(settings, ModelStore(settings, sessions, background=False), CatalogSnapshot(sessions))
    loaded = fresh.store.current()
    assert loaded.model is not None and loaded.model.version == new_version

    def sales(rows):  # type: ignore[no-untyped-def]
        return sorted(
            zip(
                rows.customer_ids.tolist(),
                rows.product_ids.tolist(),
                rows.quantities.tolist(),
                rows.timestamps.tolist(),
                strict=True,
            )
        )

    assert sales(data.sales) == sales(loaded.sales)
    assert data.precomputed is not None and loaded.precomputed is not None
    assert data.precomputed.ranked_count == loaded.precomputed.ranked_count > 0
    np.testing.assert_array_equal(data.precomputed.customer_ids, loaded.precomputed.customer_ids)
    assert _shown(bestsellers(swapped)) == _shown(bestsellers(fresh))
    customers = sorted(loaded.customers)[2::7][:15]
    for customer in customers:
        assert _shown(recommend_for_customer(swapped, customer, 8)) == _shown(
            recommend_for_customer(fresh, customer, 8)
        )


def test_a_swap_reads_the_sales_again_after_an_erasure(sessions, settings, trained, clock):
    """An erasure detaches the customer's orders (they stay for the shop's totals, as a guest's): the sales
    the old data kept still name the customer, so the swap reads them again."""
    store = ModelStore(settings, sessions, background=False, clock=clock)
    first = store.current()
    customer = sorted(first.customers)[3]
    cid = first.customers[customer]
    assert cid in first.sales.customer_ids.tolist()
    with sessions.begin() as session:
        erase_customer(session, customer, actor="test")
    store.customer_erased(customer)
    _train(sessions, settings)
    data = store.refresh()
    assert data is not first and data.model is not None and data.model.run_id != first.model.run_id
    assert cid not in data.sales.customer_ids.tolist()
    with sessions() as session:
        assert sorted(data.sales.customer_ids.tolist()) == sorted(load_sales(session).customer_ids.tolist())


def test_a_swap_whose_data_cannot_be_read_is_tried_again(sessions, settings, trained, clock, monkeypatch):
    store = ModelStore(settings, sessions, background=False, clock=clock)
    old = store.current().model
    new_version = _train(sessions, settings).version
    real = rebuild.load_interactions

    def unreadable(session, **kwargs):  # type: ignore[no-untyped-def]
        if kwargs.get("customer_ids") is None and kwargs.get("until") is None:  # the full read of the swap
            raise RuntimeError("the database went away")
        return real(session, **kwargs)

    monkeypatch.setattr(rebuild, "load_interactions", unreadable)
    clock.advance(settings.model.reload_interval + 1)
    assert store.current().model is old
    assert "the database went away" in (store.error or "")
    assert store._fresh._reloaded is None and store._pending is None  # nothing waits to take over
    monkeypatch.setattr(rebuild, "load_interactions", real)
    clock.advance(settings.model.reload_interval + 1)
    store.current()
    loaded = store.current().model
    assert loaded is not None and loaded.version == new_version


class _Cpu:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_pacer_sleeps_so_that_the_work_takes_its_share_of_a_core():
    cpu, slept = _Cpu(), []
    pause = rebuild.Pacer(0.25, cpu=cpu, sleep=slept.append)
    cpu.now = 0.002  # 2 ms of work since it was made: 6 ms of sleep make it a quarter of 8 ms
    pause()
    cpu.now = 0.003  # 1 ms since the last call (the sleep itself used none)
    pause()
    pause()  # nothing since
    assert slept == pytest.approx([0.006, 0.003, 0.0])


def test_the_pacer_at_a_whole_core_only_yields():
    cpu, slept = _Cpu(), []
    pause = rebuild.Pacer(1.0, cpu=cpu, sleep=slept.append)
    cpu.now = 0.5
    pause()
    assert slept == [0.0]  # a sleep all the same: it releases the GIL to a waiting request
    with pytest.raises(ValueError):
        rebuild.Pacer(0.0)


def test_a_swap_ranks_the_new_models_customers_at_the_configured_share_of_a_core(
    sessions, settings, trained, clock, monkeypatch
):
    """Regression: the ranking ran as fast as it could, a burst of a core's work beside the requests of
    every web process at about the same moment (the deployment benchmark's p99 near a swap)."""
    settings = dataclasses.replace(settings, model=dataclasses.replace(settings.model, swap_cpu_share=0.5))
    made: list[float] = []
    pacers: list[list[float]] = []  # each pacer's sleeps

    class Recorded(rebuild.Pacer):
        def __init__(self, share: float) -> None:
            made.append(share)
            pacers.append(slept := [])
            super().__init__(share, sleep=slept.append)

    monkeypatch.setattr(model_store, "Pacer", Recorded)
    store = ModelStore(settings, sessions, background=True, clock=clock)
    store.current()
    store.wait()
    assert made == []  # the first load serves at once: nothing to pace it against
    new_version = _train(sessions, settings).version
    clock.advance(settings.model.reload_interval + 1)
    store.current()
    store.wait()
    data = store.current()
    assert data.model is not None and data.model.version == new_version
    assert made == [0.5, 0.5]  # the bulk read's pacer, then the ranking's
    read, ranking = pacers
    with sessions() as session:
        rows = len(load_interactions(session))
    assert len(read) == -(-rows // interactions.FETCH_CHUNK)  # after every batch of rows read
    assert data.precomputed is not None
    assert len(ranking) == data.precomputed.customer_ids.size - 1  # between every two customers
    # Each pause sleeps as long as the work since the last one took (share 0.5): not a bare yield.
    assert sum(ranking) > 0 and sum(read) > 0
