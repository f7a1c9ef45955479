"""Curation: three price tiers, never excluded or unavailable items, diverse categories, deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from recommender.curation import EXPLANATION_KEYS, SOURCES, CurationError, curate, tier_bounds

N = 60


def _items(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "prices": np.round(np.geomspace(2.0, 200.0, N), 2),
        "categories": np.arange(N) % 6,
        "available": np.ones(N, dtype=bool),
        "scores": rng.random(N),
        "sources": rng.integers(0, len(SOURCES), N),
        "delivery_days": np.full(N, 2),
    }


def _curate(items: dict[str, np.ndarray], **kw):  # type: ignore[no-untyped-def]
    args = dict(
        prices=items["prices"],
        categories=items["categories"],
        available=items["available"],
        bounds=tier_bounds(None, catalog_prices=items["prices"]),
    )
    args.update(kw)
    return curate(items["scores"], items["sources"], **args)


def test_three_tiers_ordered_by_price_with_two_or_three_picks():
    picks = _curate(_items())
    tiers = sorted({p.tier for p in picks})
    assert tiers == [0, 1, 2]
    prices = _items()["prices"]
    for t in tiers:
        assert 2 <= sum(p.tier == t for p in picks) <= 3
    for lower, upper in zip(tiers, tiers[1:], strict=False):
        assert max(prices[p.item_idx] for p in picks if p.tier == lower) <= min(
            prices[p.item_idx] for p in picks if p.tier == upper
        )


def test_never_picks_excluded_unavailable_or_late_items():
    items = _items()
    items["available"][::5] = False
    items["delivery_days"][1::7] = 9
    best = np.argsort(-items["scores"])[:10]
    picks = _curate(items, exclude=best, delivery_days=items["delivery_days"], days_until=5)
    chosen = {p.item_idx for p in picks}
    assert chosen
    assert not chosen & set(best.tolist())
    assert all(items["available"][i] for i in chosen)
    assert all(items["delivery_days"][i] <= 5 for i in chosen)


def test_no_two_picks_of_a_category_in_a_tier_when_alternatives_exist():
    items = _items()
    picks = _curate(items)
    for t in range(3):
        cats = [items["categories"][p.item_idx] for p in picks if p.tier == t]
        assert len(cats) == len(set(cats))


def test_a_category_repeats_only_when_nothing_else_is_eligible():
    items = _items()
    items["categories"][:] = 4
    picks = _curate(items)
    assert sum(p.tier == 0 for p in picks) == 3


def test_greedy_diversity_skips_a_better_item_of_a_used_category():
    prices = np.array([10.0, 10.0, 10.0, 10.0])
    scores = np.array([0.9, 0.8, 0.1, 0.05])
    cats = np.array([1, 1, 2, 3])
    picks = curate(
        scores,
        np.zeros(4, dtype=int),
        prices=prices,
        categories=cats,
        available=np.ones(4, dtype=bool),
        bounds=np.array([[5.0, 20.0]]),
        picks_per_tier=3,
    )
    assert [p.item_idx for p in picks] == [0, 2, 3]


def test_ties_are_broken_by_item_position_and_results_repeat():
    items = _items()
    items["scores"][:] = 1.0
    first = _curate(items)
    assert first == _curate(items)
    for t in range(3):
        idx = [p.item_idx for p in first if p.tier == t]
        assert idx == sorted(idx)


def test_each_pick_names_its_source_and_explanation_key():
    items = _items()
    for p in _curate(items):
        assert p.source == SOURCES[items["sources"][p.item_idx]]
        assert p.explanation == EXPLANATION_KEYS[p.source]


def test_a_thin_tier_widens_but_tiers_stay_ordered():
    prices = np.array([5.0, 6.0, 50.0, 55.0, 60.0, 500.0, 600.0])
    picks = curate(
        np.linspace(1, 0, 7),
        np.zeros(7, dtype=int),
        prices=prices,
        categories=np.full(7, -1),
        available=np.ones(7, dtype=bool),
        bounds=np.array([[4.0, 10.0], [10.0, 52.0], [52.0, 700.0]]),
    )
    by_tier = {t: sorted(prices[p.item_idx] for p in picks if p.tier == t) for t in range(3)}
    assert by_tier[0] == [5.0, 6.0]
    assert len(by_tier[1]) >= 2  # widened into the neighbours' halves
    assert max(by_tier[0]) <= min(by_tier[1]) and max(by_tier[1]) <= min(by_tier[2])


def test_tier_bounds_prefer_budget_then_history_then_catalogue():
    budget = tier_bounds([1.0, 2.0, 3.0], budget_min=50, budget_max=200)
    assert budget.basis == "budget"
    assert budget.bounds[0, 0] == pytest.approx(50) and budget.bounds[-1, 1] == pytest.approx(200)
    history = tier_bounds([10, 20, 40, 80, 160], catalog_prices=np.array([1.0, 2.0]))
    assert history.basis == "history"
    assert np.all(np.diff(history.bounds[:, 0]) > 0)
    catalog = tier_bounds([10.0], catalog_prices=np.geomspace(1, 100, 50))
    assert catalog.basis == "catalog"


def test_identical_past_prices_still_give_three_distinct_tiers():
    b = tier_bounds([25.0] * 6)
    assert b.bounds.shape == (3, 2)
    assert np.all(np.diff(b.bounds.ravel()) >= 0)
    assert b.bounds[0, 0] < 25.0 < b.bounds[-1, 1]


def test_bad_input_is_refused():
    with pytest.raises(CurationError, match="budget_max"):
        tier_bounds(None, budget_min=100, budget_max=10)
    with pytest.raises(CurationError, match="no past spending"):
        tier_bounds(None)
    items = _items()
    with pytest.raises(CurationError, match="prices"):
        curate(
            items["scores"],
            items["sources"],
            prices=items["prices"][:-1],
            categories=items["categories"],
            available=items["available"],
            bounds=np.array([[1.0, 2.0]]),
        )
