"""Rankings precomputed when a model is loaded: the same as a request's, and never used once stale."""

# ruff: noqa: F811  (pytest fixtures imported from tests.domain.serving.fixtures are redefined as arguments)

from __future__ import annotations

import dataclasses
import threading

import numpy as np

from domain.serving import model_store
from domain.serving.model_store import ModelStore
from domain.serving.precomputed import fill, rank_customer
from domain.serving.ranked import EXPLAIN_N, EXPLAINED, PrecomputedRankings
from domain.serving.recommendations import Serving, customer_changed, recommend_for_customer
from tests.domain.serving.fixtures import (  # noqa: F401
    FakeClock,
    add_order,
    clock,
    imported,
    imported_rows,
    sample_slice,
    serving,
    settings,
    trained,
)


def _serving(serving: Serving, **api: int) -> Serving:
    settings = dataclasses.replace(serving.settings, api=dataclasses.replace(serving.settings.api, **api))
    return Serving(settings, ModelStore(settings, serving.store.sessions, background=False), serving.catalog)


def _shown(items: list) -> list[tuple]:
    return [(i.sku, i.score, i.source, i.explanation) for i in items]


def test_the_most_active_customers_are_ranked_as_a_request_ranks_them(serving, trained):
    data = serving.store.current()
    ahead = data.precomputed
    model = data.model
    assert ahead is not None and model is not None and data.user_items is not None
    assert ahead.user_items is data.user_items
    nnz = np.diff(data.user_items.indptr)
    assert ahead.ranked_count == len(ahead) == int((nnz > 0).sum())
    busiest = int(data.users.ids[int(nnz.argmax())])
    for customer_id in [busiest, *data.users.ids[::97][:8].tolist()]:
        rows = serving.store.customer(data, customer_id)
        made = rank_customer(model, rows)
        kept = ahead.ranked(customer_id, rows)
        if made is None or kept is None:
            assert made is None and kept is None
            continue
        ids, scores = made
        np.testing.assert_array_equal(kept.items, ids)
        np.testing.assert_array_equal(kept.scores, np.round(scores.astype(np.float64), 6))
        assert kept.reasons.shape == (min(ids.size, EXPLAINED), EXPLAIN_N)
        if rows.row is not None and rows.row.nnz:
            reasons = model.discovery.explain_many(rows.user_idx, rows.row, ids[:EXPLAINED], EXPLAIN_N)
            expected = [[i for i, _ in r] + [-1] * (EXPLAIN_N - len(r)) for r in reasons]
            assert kept.reasons.tolist() == expected


def test_only_the_chosen_number_of_customers_is_ranked_most_interactions_first(serving, trained):
    few = _serving(serving, precomputed_customers=5)
    data = few.store.current()
    assert data.precomputed is not None and data.user_items is not None
    nnz = np.diff(data.user_items.indptr)
    chosen = {c for c in data.users.ids.tolist() if data.precomputed._slot(c) >= 0}
    assert len(chosen) == 5
    least_chosen = min(int(nnz[data.users.index_of(c)[0]]) for c in chosen)
    assert int(np.sort(nnz)[-5]) == least_chosen
    assert _serving(serving, precomputed_customers=0).store.current().precomputed is None


def test_a_customer_who_buys_is_ranked_again_not_from_the_precomputed_ranking(sessions, serving, trained):
    """New activity reaches a customer's picks at once (docs/performance.md "Live data"): their rows are
    reloaded, and the ranking made when the model was loaded no longer answers for them."""
    first_request = _serving(serving, picks_cache_customers=0)
    nothing_ahead = _serving(serving, picks_cache_customers=0, precomputed_customers=0)
    data = first_request.store.current()
    assert data.precomputed is not None
    customer = next(ext for ext in sorted(data.customers) if data.precomputed._slot(data.customers[ext]) >= 0)
    before = recommend_for_customer(first_request, customer, 5)
    assert before[0].source == "collaborative"
    assert _shown(before) == _shown(recommend_for_customer(nothing_ahead, customer, 5))
    with sessions.begin() as session:
        add_order(session, customer, [before[0].sku], order_id="API-AHEAD-1")
    for each in (first_request, nothing_ahead):
        customer_changed(each, data.customers[customer])
    after = recommend_for_customer(first_request, customer, 5)
    assert before[0].sku not in {i.sku for i in after}
    assert _shown(after) == _shown(recommend_for_customer(nothing_ahead, customer, 5))
    assert data.customers[customer] in first_request.store.current().fresh


def test_a_cancelled_precomputation_stops(serving, trained):
    """A newer model (or a full re-read of the data) cancels the ranking of the data it replaces."""
    data = serving.store.current()
    assert data.model is not None and data.user_items is not None
    ahead = PrecomputedRankings.most_active(data.user_items, data.users.ids, data.model.n_items, 10)
    ahead.cancel()
    fill(ahead, data.model, lambda customer_id: serving.store.customer(data, customer_id))
    assert ahead.ranked_count == 0


def _held_rankings(monkeypatch) -> threading.Event:
    """Hold every background ranking until the returned event is set."""
    gate = threading.Event()
    real = model_store.fill_rankings

    def held(*args, **kwargs):
        assert gate.wait(60)
        real(*args, **kwargs)

    monkeypatch.setattr(model_store, "fill_rankings", held)
    return gate


def _background_store(serving: Serving, clock: FakeClock, warm_up_seconds: float) -> ModelStore:
    settings = serving.settings
    settings = dataclasses.replace(
        settings, api=dataclasses.replace(settings.api, warm_up_seconds=warm_up_seconds)
    )
    return ModelStore(settings, serving.store.sessions, clock=clock)


def test_a_new_serving_process_is_not_ready_until_its_rankings_are_made(serving, trained, clock, monkeypatch):
    """/health/ready's model check says "warming" (not ready) while the first load's rankings are made,
    so that a load balancer sends no requests to a process whose every first request would rank beside
    them; ready once they are made."""
    gate = _held_rankings(monkeypatch)
    store = _background_store(serving, clock, warm_up_seconds=60)
    try:
        data = store.current()  # the first load (a serving process's start() makes it in a thread)
        assert data.model is not None and data.precomputed is not None
        status = store.status()
        assert status["ok"] is False and status["version"] == data.model.version
        assert status["warming"] == {"ranked": 0, "customers": len(data.precomputed), "seconds_left": 60.0}
    finally:
        gate.set()
        store.wait()
    status = store.status()
    assert status["ok"] is True and "warming" not in status
    assert status["precomputed"]["ranked"] == data.precomputed.ranked_count > 0


def test_a_serving_process_is_ready_after_the_warm_up_bound_even_while_it_still_ranks(
    serving, trained, clock, monkeypatch
):
    """A shop with many customers does not keep a new process out of service for longer than
    ``api.warm_up_seconds``; 0 makes it ready at once."""
    gate = _held_rankings(monkeypatch)
    bounded, at_once = _background_store(serving, clock, 30), _background_store(serving, clock, 0)
    try:
        bounded.current()
        at_once.current()
        assert bounded.status()["ok"] is False
        assert at_once.status()["ok"] is True and "warming" not in at_once.status()
        clock.advance(29.9)
        assert bounded.status()["warming"]["seconds_left"] == 0.1
        clock.advance(0.1)
        assert bounded.status()["ok"] is True and "warming" not in bounded.status()
        assert bounded.current().precomputed.ranked_count == 0  # still ranking
    finally:
        gate.set()
        bounded.wait()
        at_once.wait()


def test_a_later_load_never_makes_a_serving_process_unready(serving, trained, clock, monkeypatch):
    """Only a process's first load warms up: a full re-read of the data or a new model later ranks in
    the background while the process stays in service (a swap serves the old model until then)."""
    store = _background_store(serving, clock, warm_up_seconds=60)
    store.current()
    store.wait()
    assert store.status()["ok"] is True
    gate = _held_rankings(monkeypatch)
    try:
        with store.sessions() as session:
            data = store.current()
            rebuilt, since = store._build(session, data.model)
        store._install(rebuilt, since)  # as a full re-read does
        assert store.status()["ok"] is True and "warming" not in store.status()
    finally:
        gate.set()
        store.wait()
