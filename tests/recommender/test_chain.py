"""The fallback chain: order of sources, labels, explanations, filters and de-duplication."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse import csr_matrix

from recommender.chain import SOURCES, Pick, recommend_with_fallback
from recommender.collaborative import ALSRecommender, ItemItemRecommender
from recommender.popularity import NewArrivals, PopularityRecommender
from recommender.similar import SimilarItems
from tests.recommender.conftest import N_ITEMS, N_USERS, checkerboard

NOW = np.datetime64("2011-12-09T00:00:00", "s")
DAY = np.timedelta64(1, "D")


@pytest.fixture(scope="module")
def parts() -> dict[str, object]:
    user_items = checkerboard()
    model = ALSRecommender(factors=2, num_threads=1).fit(user_items)
    # Bestsellers in the last 30 days: only items 7 (two buyers) and 2 (one buyer) sold.
    bestsellers = PopularityRecommender(window_days=30).fit_events(
        np.array([0, 1, 2, 3]),
        np.array([7, 7, 2, 5]),
        np.array([NOW - DAY, NOW - 2 * DAY, NOW - 3 * DAY, NOW - 60 * DAY]),
        n_items=N_ITEMS,
        now=NOW,
    )
    # New arrivals: item k arrived k days ago, so lower positions are newer.
    arrivals = NewArrivals(NOW - np.arange(N_ITEMS) * DAY)
    return {
        "user_items": user_items,
        "model": model,
        "similar": SimilarItems.from_model(model),
        "bestsellers": bestsellers,
        "arrivals": arrivals,
    }


def _sources(picks: list[Pick]) -> list[str]:
    return [p.source for p in picks]


def _assert_chain_order(picks: list[Pick]) -> None:
    order = [SOURCES.index(p.source) for p in picks]
    assert order == sorted(order)
    items = [p.item_idx for p in picks]
    assert len(items) == len(set(items)), "no item twice"


def test_known_user_gets_collaborative_picks_explained_by_past_items(parts: dict) -> None:  # type: ignore[type-arg]
    user_items = parts["user_items"]
    row = user_items[6:7]
    picks = recommend_with_fallback(
        4, model=parts["model"], user_idx=6, user_items_row=row, similar=parts["similar"],
        bestsellers=parts["bestsellers"], new_arrivals=parts["arrivals"],
    )  # fmt: skip
    assert _sources(picks) == ["collaborative"] * 4
    for pick in picks:
        assert pick.item_idx % 2 == 0 and pick.item_idx not in row.indices
        assert 1 <= len(pick.because) <= 3 and set(pick.because) <= set(row.indices.tolist())
        assert pick.window_days is None


def test_unknown_customer_falls_back_to_bestsellers_then_new_arrivals(parts: dict) -> None:  # type: ignore[type-arg]
    picks = recommend_with_fallback(
        5, model=parts["model"], user_idx=-1, similar=parts["similar"],
        bestsellers=parts["bestsellers"], new_arrivals=parts["arrivals"],
    )  # fmt: skip
    assert _sources(picks) == ["bestsellers", "bestsellers", "new_arrivals", "new_arrivals", "new_arrivals"]
    assert [p.item_idx for p in picks] == [7, 2, 0, 1, 3], "item 5 sold outside the 30-day window"
    assert picks[0].window_days == 30 and picks[0].because == ()
    _assert_chain_order(picks)


def test_new_customer_with_purchases_is_folded_in(parts: dict) -> None:  # type: ignore[type-arg]
    row = csr_matrix((np.ones(2, np.float32), ([0, 0], [3, 9])), shape=(1, N_ITEMS))
    picks = recommend_with_fallback(3, model=parts["model"], user_idx=-1, user_items_row=row)
    assert _sources(picks) == ["collaborative"] * 3
    assert all(p.item_idx % 2 == 1 and p.item_idx not in (3, 9) for p in picks)
    assert all(set(p.because) <= {3, 9} and p.because for p in picks)


def test_similar_items_of_recent_purchases_fill_in_without_a_model(parts: dict) -> None:  # type: ignore[type-arg]
    row = csr_matrix((np.array([1.0, 3.0], np.float32), ([0, 0], [4, 11])), shape=(1, N_ITEMS))
    picks = recommend_with_fallback(
        4, user_items_row=row, similar=parts["similar"], bestsellers=parts["bestsellers"]
    )
    assert _sources(picks) == ["similar"] * 4
    # Anchors by decreasing weight (11 first), then round-robin between them.
    assert [p.because for p in picks] == [(11,), (4,), (11,), (4,)]
    assert all(p.item_idx % 2 == p.because[0] % 2 for p in picks)
    explicit = recommend_with_fallback(2, user_items_row=row, similar=parts["similar"], recent_items=[4])
    assert [p.because for p in explicit] == [(4,), (4,)]


def test_short_results_fill_along_the_chain_and_respect_filters(parts: dict) -> None:  # type: ignore[type-arg]
    user_items = parts["user_items"]
    row = user_items[10:11]
    allowed = np.ones(N_ITEMS, dtype=bool)
    allowed[[0, 12, 20]] = False
    # The user's unseen even items, except two, are forbidden: collaborative can give at most two.
    unseen_even = [i for i in range(0, N_ITEMS, 2) if i not in row.indices and allowed[i]]
    allowed[unseen_even[2:]] = False
    # Item-item cosine gives opposite-parity items no score at all, so collaborative and similar run dry.
    model = ItemItemRecommender(kind="cosine", num_threads=1).fit(user_items)
    similar = SimilarItems(num_threads=1).fit(user_items)
    picks = recommend_with_fallback(
        10, model=model, user_idx=10, user_items_row=row, similar=similar,
        bestsellers=parts["bestsellers"], new_arrivals=parts["arrivals"], allowed=allowed,
    )  # fmt: skip
    _assert_chain_order(picks)
    assert len(picks) == 10
    assert all(allowed[p.item_idx] and p.item_idx not in row.indices for p in picks)
    assert _sources(picks) == ["collaborative"] * 2 + ["bestsellers"] + ["new_arrivals"] * 7
    assert picks[2].item_idx == 7
    assert [p.item_idx for p in picks[:2]] == sorted(unseen_even[:2], key=lambda i: -model.score_row(row)[i])


def test_chain_returns_fewer_when_everything_is_filtered(parts: dict) -> None:  # type: ignore[type-arg]
    allowed = np.zeros(N_ITEMS, dtype=bool)
    allowed[[7, 13]] = True
    picks = recommend_with_fallback(
        5, model=parts["model"], user_idx=1, user_items_row=parts["user_items"][1:2],
        bestsellers=parts["bestsellers"], new_arrivals=parts["arrivals"], allowed=allowed,
    )  # fmt: skip
    assert sorted(p.item_idx for p in picks) == [7, 13] or [p.item_idx for p in picks] == [7]
    assert recommend_with_fallback(0, bestsellers=parts["bestsellers"]) == []


def test_inputs_of_different_sizes_are_rejected(parts: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValueError, match="number of items"):
        recommend_with_fallback(3, bestsellers=parts["bestsellers"], allowed=np.ones(N_ITEMS + 1, dtype=bool))
    with pytest.raises(ValueError, match="number of items"):
        recommend_with_fallback(3)


def test_pick_is_frozen() -> None:
    pick = Pick(1, 0.5, "bestsellers", (), 90.0)
    with pytest.raises(AttributeError):
        pick.score = 1.0  # type: ignore[misc]
    assert N_USERS > 0
