"""Drafting trigger emails: the picks when only the offered items are scored are today's picks."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
from sqlalchemy import select

from domain.lifecycle.trigger_runs import run_triggers
from domain.models import GiftSelection, TriggerAssignment
from domain.serving.candidates import CandidateRows, Candidates, Catalog, default_candidates
from tests.delivery_fixtures import make_customer, make_product, make_snapshot
from tests.domain.lifecycle.test_triggers import NOW, buy, only


def _drafted(session, settings, candidates_fn) -> list[tuple]:
    """Every pick the run drafts, in a savepoint that is rolled back afterwards."""
    savepoint = session.begin_nested()
    run_triggers(session, settings, NOW, candidates_fn=candidates_fn)
    out = []
    for a in session.scalars(select(TriggerAssignment).where(TriggerAssignment.selection_id.is_not(None))):
        for pk in session.get(GiftSelection, a.selection_id).picks:
            out.append((a.trigger, a.customer_id, pk.tier, pk.position, pk.product_id, pk.score, pk.source))
    savepoint.rollback()
    assert session.scalars(select(TriggerAssignment)).first() is None  # the next run starts afresh
    return sorted(out)


def test_scoring_only_the_offered_items_drafts_the_same_picks_as_the_whole_catalogue(session, settings):
    """New arrivals offer the new products and replacement one category: the run scores those columns
    only (a third of the nightly run's time went into blending all 10,000 items for every batch)."""
    s = only(
        settings, "replacement", "new_arrivals", replacement_lifetimes="bags: 540-720", new_arrivals_days=14
    )
    old = NOW - dt.timedelta(days=400)
    bags = [
        make_product(session, p, category="bags", title=f"Bag {p}", created_at=old)
        for p in range(40, 280, 20)
    ]
    others = [make_product(session, "25.00", created_at=old) for _ in range(8)]
    new = [
        make_product(session, f"{10 + 7 * i}.00", title=f"New {i}", created_at=NOW - dt.timedelta(days=3))
        for i in range(10)
    ]
    customers = [make_customer(session) for _ in range(6)]
    for k, customer in enumerate(customers):
        make_snapshot(session, customer.id, NOW.date(), "champions" if k % 2 else "loyal")
        buy(session, customer, others[k], NOW - dt.timedelta(days=20 + k))  # the bestsellers
        buy(session, customer, new[k % 3], NOW - dt.timedelta(days=2))
        buy(session, customer, others[k + 1], dt.datetime(2010, 11, 20 + k))  # last year's season
    for customer in customers[:3]:
        buy(session, customer, bags[4], NOW - dt.timedelta(days=600), "120.00")
    products = np.array([p.id for p in (*bags, *others, *new)], dtype=np.int64)

    def known(customer_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A fixed ranking of every product per customer (a trained model's answer, known in advance)."""
        order = np.array([np.roll(products, int(c) % products.size) for c in customer_ids])
        return order, np.tile(np.linspace(1.0, 0.1, products.size, dtype=np.float32), (customer_ids.size, 1))

    blended = dataclasses.replace(
        default_candidates(session, s, now=NOW, catalog=Catalog.load(session)), collaborative=known
    )
    columns: list[int | None] = []

    def offered(catalog: Catalog, rows: CandidateRows) -> Candidates:
        columns.append(None if rows.items is None else int(rows.items.size))
        return blended(catalog, rows)

    def whole(catalog: Catalog, rows: CandidateRows) -> Candidates:
        return blended(catalog, dataclasses.replace(rows, items=None))

    few = _drafted(session, s, offered)
    assert few == _drafted(session, s, whole)
    assert {t for t, *_ in few} == {"replacement", "new_arrivals"}
    assert columns == [len(bags), len(new)]  # one batch per trigger, its offered items only
