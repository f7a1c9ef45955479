"""The confidence matrix: few rows take their own path, which gives the general path's matrix bit for bit."""

# ruff: noqa: F811  (pytest fixtures imported from tests.domain.serving.fixtures are redefined as arguments)

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.sparse import csr_matrix
from sqlalchemy.orm import Session, sessionmaker

from config import Settings
from domain.customers import interactions
from domain.customers.confidence import build_matrix
from domain.customers.interactions import load_interactions
from domain.serving.data import bought_matrix
from recommender.interactions import IdIndex
from tests.domain.serving.fixtures import (  # noqa: F401
    add_events,
    assert_same,
    imported,
    imported_rows,
    sample_slice,
    settings,
    sorted_rows,
    take_path,
)

#: Interaction settings the paths are compared under: the defaults (lines, 365-day half-life) and
#: variations of each rule they share.
CASES = {
    "defaults": {},
    "no decay": {"half_life_days": 0.0},
    "a week's half-life": {"half_life_days": 7.0},
    "purchases weigh nothing": {"weight_purchase": 0.0},
    "uneven weights": {"weight_view": 0.3, "weight_cart": 0.7, "weight_click": 0.05},
}


def groups_of(customers: np.ndarray) -> list[np.ndarray]:
    """Every customer alone (a request's reload after a write), then seeded random batches of 2 to 40 (the
    freshness check's)."""
    rng = np.random.default_rng(3)
    batches = [rng.choice(customers, size=int(rng.integers(2, 41)), replace=False) for _ in range(12)]
    return [customers[i : i + 1] for i in range(customers.size)] + [np.sort(b) for b in batches]


@pytest.mark.parametrize("case", list(CASES))
def test_few_rows_give_the_general_path_s_matrix_bit_for_bit(
    case: str,
    sessions: sessionmaker[Session],
    settings: Settings,
    imported: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    add_events(sessions)
    interactions = dataclasses.replace(settings.interactions, **CASES[case])
    with sessions() as session:
        rows = load_interactions(session)
    customers = np.unique(rows.customer_ids)
    # A model's items: most products, not all (rows of the others are dropped, yet count for the decay).
    products = np.unique(rows.product_ids)
    items = IdIndex(products[np.random.default_rng(5).random(products.size) < 0.9])
    assert customers.size > 100 and {"return", "view", "cart", "click"} <= set(rows.kinds.tolist())

    few: list[tuple[csr_matrix, csr_matrix]] = []
    take_path(monkeypatch, few=True)
    for group in groups_of(customers):
        part = rows.subset(np.isin(rows.customer_ids, group))
        users = IdIndex(group)
        few.append(
            (
                build_matrix(part, interactions, user_index=users, item_index=items)[0],
                bought_matrix(part, users),
            )
        )
    take_path(monkeypatch, few=False)
    for group, (matrix, bought) in zip(groups_of(customers), few, strict=True):
        part = rows.subset(np.isin(rows.customer_ids, group))
        users = IdIndex(group)
        assert_same(matrix, build_matrix(part, interactions, user_index=users, item_index=items)[0])
        assert_same(bought, bought_matrix(part, users))


def test_the_rows_of_given_customers_are_those_of_a_full_read(
    sessions: sessionmaker[Session], imported: None
) -> None:
    add_events(sessions, every=3)
    with sessions() as session:
        everything = load_interactions(session)
        customers = np.unique(everything.customer_ids)
        for group in (customers[:1], customers[5:6], customers[::7]):
            rows = load_interactions(session, customer_ids=group.tolist())
            expected = everything.subset(np.isin(everything.customer_ids, group))
            assert sorted_rows(rows) == sorted_rows(expected)
            assert len(rows) == len(expected) > 0


def test_a_paced_bulk_read_gives_the_same_rows_and_lets_go_between_batches(
    sessions: sessionmaker[Session], imported: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A swap reads every interaction beside the process's requests: in batches, with a pause after each
    (where the model store's pacer gives the GIL back), and the very rows a whole read gives."""
    add_events(sessions)
    monkeypatch.setattr(interactions, "FETCH_CHUNK", 500)
    pauses: list[int] = []
    with sessions() as session:
        whole = load_interactions(session)
        paced = load_interactions(session, pause=lambda: pauses.append(1))
    assert len(whole) > 2_000 and len(pauses) == -(-len(whole) // 500)
    for name in ("customer_ids", "product_ids", "kinds", "quantities", "timestamps"):
        np.testing.assert_array_equal(getattr(paced, name), getattr(whole, name))
