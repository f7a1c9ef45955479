"""The served next-purchase ranking on hand-made histories: own items only, each feature's direction."""

from __future__ import annotations

import numpy as np
import pytest

from recommender.base import NotFittedError
from recommender.repeat_ranking import FEATURES, WEIGHTS, RepeatRanker

NOW = 400
# (customer, item, day, lines). Customer 0 bought item 0 on five days long ago (two lines each), item 1
# once yesterday, item 2 once a year ago. Customers 1 and 2 repeat item 3 (a customer 0 never bought).
EVENTS = np.array(
    [(0, 0, d, 2) for d in (100, 130, 160, 190, 220)]
    + [(0, 1, NOW - 1, 1), (0, 2, NOW - 365, 1)]
    + [(1, 3, d, 1) for d in (300, 330, 360, 390)]
    + [(2, 3, d, 1) for d in (310, 340, 370)]
    + [(2, 0, 320, 1), (1, 0, 360, 1)]
)


def fitted(**weights: float) -> RepeatRanker:
    ranker = RepeatRanker(weights=weights or None)
    e = EVENTS
    return ranker.fit(e[:, 0], e[:, 1], e[:, 2], e[:, 3], n_users=3, n_items=4, now=NOW)


def test_only_the_customers_own_items_are_ranked() -> None:
    items, scores = fitted().rank(0, 10)
    assert sorted(items.tolist()) == [0, 1, 2]  # item 3 is never served to customer 0
    assert scores.tolist() == sorted(scores.tolist(), reverse=True)


def test_frequency_ranks_the_habit_and_recency_the_latest() -> None:
    assert fitted(lines=1.0).rank(0, 1)[0].tolist() == [0]
    assert fitted(recent=1.0).rank(0, 1)[0].tolist() == [1]
    # two items with equal scores: the lower index first
    assert fitted(trend=1.0).rank(0, 3)[0].tolist() == [0, 1, 2]


def test_allowed_leaves_items_out_and_n_limits() -> None:
    allowed = np.array([False, True, True, True])
    items, _ = fitted().rank(0, 10, allowed=allowed)
    assert 0 not in items.tolist()
    assert fitted().rank(0, 1)[0].size == 1


def test_features_are_scaled_per_customer() -> None:
    items, feats = fitted().features(0)
    assert set(feats) == set(FEATURES)
    for values in feats.values():
        assert values.shape == items.shape and 0 <= values.min() and values.max() <= 1


def test_bad_weights_and_unfitted_use_raise() -> None:
    with pytest.raises(ValueError):
        RepeatRanker(weights={"nonsense": 1.0})
    with pytest.raises(ValueError):
        RepeatRanker(weights={"chance": -1.0})
    with pytest.raises(NotFittedError):
        RepeatRanker().rank(0, 10)
    assert set(WEIGHTS) <= set(FEATURES)
