"""Bestsellers over a window, new arrivals, and the per-category / price-band helpers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse import csr_matrix

from recommender.popularity import NewArrivals, PopularityRecommender, group_top, price_bands, quantile_edges

DAY = np.timedelta64(1, "D")
NOW = np.datetime64("2011-12-09T00:00:00", "s")


def test_fit_counts_unique_buyers_or_summed_weight() -> None:
    # item 0: two buyers, small weights; item 1: one buyer who bought a lot.
    m = csr_matrix(np.array([[1.0, 9.0, 0], [1.0, 0, 0], [0, 0, 0]], dtype=np.float32))
    buyers = PopularityRecommender(count="buyers").fit(m)
    weight = PopularityRecommender(count="weight").fit(m)
    assert buyers.top(5)[0].tolist() == [0, 1]
    assert weight.top(5)[0].tolist() == [1, 0]
    assert buyers.top(5)[1].tolist() == [2.0, 1.0]


def test_fit_events_counts_only_the_window() -> None:
    users = np.array([0, 1, 2, 0, 0, 3])
    items = np.array([0, 0, 0, 1, 1, 2])
    ts = np.array(
        [NOW - 100 * DAY, NOW - 95 * DAY, NOW - 91 * DAY, NOW - 5 * DAY, NOW - 4 * DAY, NOW - 1 * DAY]
    )
    model = PopularityRecommender(window_days=90, count="buyers").fit_events(
        users, items, ts, n_items=4, now=NOW
    )
    ids, scores = model.top(10)
    assert ids.tolist() == [1, 2] and scores.tolist() == [1.0, 1.0]
    weighted = PopularityRecommender(window_days=90, count="weight").fit_events(
        users, items, ts, n_items=4, now=NOW, weights=np.array([1, 1, 1, 3, 2, 1.0])
    )
    assert weighted.top(10)[0].tolist() == [1, 2] and weighted.top(10)[1].tolist() == [5.0, 1.0]
    everything = PopularityRecommender(window_days=None).fit_events(users, items, ts, n_items=4)
    assert everything.top(10)[0].tolist() == [0, 1, 2]


def test_guest_purchases_count_as_distinct_buyers() -> None:
    model = PopularityRecommender(window_days=None).fit_events(
        np.array([-1, -1, 0, 0]), np.array([1, 1, 0, 0]), np.array([NOW] * 4), n_items=2
    )
    assert model.top(2)[0].tolist() == [1, 0]


def test_top_never_returns_unsold_or_disallowed_items() -> None:
    m = csr_matrix(np.array([[1, 1, 0, 1], [1, 0, 0, 0]], dtype=np.float32))
    model = PopularityRecommender().fit(m)
    allowed = np.array([False, True, True, True])
    ids, _ = model.top(10, allowed=allowed)
    assert ids.tolist() == [1, 3], "ties broken by item position; item 2 never sold"


def test_fit_events_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="equal lengths"):
        PopularityRecommender().fit_events(np.array([0]), np.array([0, 1]), np.array([NOW]), n_items=2)
    with pytest.raises(ValueError, match="out of range"):
        PopularityRecommender().fit_events(np.array([0]), np.array([5]), np.array([NOW]), n_items=2)
    with pytest.raises(ValueError, match="window_days"):
        PopularityRecommender(window_days=0)


def test_bestsellers_per_category_and_price_band() -> None:
    m = csr_matrix(np.array([[1, 1, 1, 0, 1], [1, 0, 1, 0, 0], [0, 0, 1, 0, 0]], dtype=np.float32))
    model = PopularityRecommender().fit(m)
    categories = np.array(["a", "b", "a", "b", "b"])
    per = model.top_per_group(categories, 5)
    assert per["a"][0].tolist() == [2, 0] and per["b"][0].tolist() == [1, 4]
    prices = np.array([5.0, 15.0, 25.0, 35.0, np.nan])
    bands = price_bands(prices, np.array([10.0, 30.0]))
    assert bands.tolist() == [0, 1, 1, 2, -1]
    per_band = model.top_per_group(bands, 1)
    assert {k: v[0].tolist() for k, v in per_band.items()} == {-1: [4], 0: [0], 1: [2], 2: []}


def test_quantile_edges_split_prices_evenly() -> None:
    edges = quantile_edges(np.array([1, 2, 3, 4, 5, 6, np.nan]), 3)
    assert edges.shape == (2,)
    bands = price_bands(np.array([1, 2, 3, 4, 5, 6.0]), edges)
    assert np.bincount(bands).tolist() == [2, 2, 2]
    assert quantile_edges(np.array([np.nan]), 3).size == 0


def test_group_top_respects_allowed_and_drops_nan() -> None:
    scores = np.array([3.0, np.nan, 2.0, 5.0])
    out = group_top(scores, np.array([0, 0, 1, 1]), 5, allowed=np.array([True, True, True, False]))
    assert out[0][0].tolist() == [0] and out[1][0].tolist() == [2]


def test_new_arrivals_rank_newest_first_and_skip_unknown_dates() -> None:
    first_seen = np.array(
        [NOW - 30 * DAY, NOW - DAY, np.datetime64("NaT"), NOW - 10 * DAY], dtype="datetime64[s]"
    )
    arrivals = NewArrivals(first_seen)
    ids, scores = arrivals.top(10)
    assert ids.tolist() == [1, 3, 0] and np.all(np.diff(scores) < 0)
    assert arrivals.top(10, since=NOW - 15 * DAY)[0].tolist() == [1, 3]
    assert arrivals.top(10, allowed=np.array([True, False, True, True]))[0].tolist() == [3, 0]
    per = arrivals.top_per_group(np.array(["x", "y", "x", "x"]), 1)
    assert per["x"][0].tolist() == [3] and per["y"][0].tolist() == [1]
    with pytest.raises(ValueError, match="allowed"):
        arrivals.top(3, allowed=np.ones(3, dtype=bool))
