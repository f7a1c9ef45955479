"""recommender.next_purchase_choice: the served next-purchase ranking is chosen per shop on validation."""

from __future__ import annotations

import numpy as np

from recommender.next_basket import Purchases
from recommender.next_purchase_choice import (
    LEARNED,
    BaselineRanker,
    choose_ranking,
    ranking_candidates,
)

N_POPULAR = 30


def _young_shop(seed: int = 2) -> tuple[Purchases, int]:
    """A shop open 50 days whose customers came twice before the last 20: each visit buys the customer's
    own staple (nobody else buys it) and one of the shop's bestsellers (a fixed Zipf ranking of 30
    items). By construction the best list is the customer's own items, then the bestsellers: personal
    top-frequency. Popularity misses the staple; the learned ranker has too little history before the
    window to learn and then ranks the customer's own items only (two or three), never the bestsellers."""
    rng = np.random.default_rng(seed)
    n_users = 300
    weights = 1.0 / np.arange(1, N_POPULAR + 1) ** 1.2
    weights /= weights.sum()
    u, i, d = [], [], []
    for user in range(n_users):
        visits = np.r_[rng.choice(np.arange(0, 30), size=2, replace=False), rng.integers(30, 50, size=2)]
        for day in visits.tolist():
            for item in (N_POPULAR + user, int(rng.choice(N_POPULAR, p=weights))):
                u.append(user)
                i.append(item)
                d.append(day)
    key, lines = np.unique(np.stack([u, i, d]), axis=1, return_counts=True)
    n_items = N_POPULAR + n_users
    return Purchases(key[0], key[1], key[2], lines.astype(np.int64), n_users, n_items), 49


def test_on_a_shop_where_personal_top_frequency_is_best_by_construction_it_is_chosen() -> None:
    purchases, now = _young_shop()
    simple = ("popularity", "personal top-frequency", LEARNED)
    choice = choose_ranking(purchases, now, validation_days=20, k=10, min_customers=50, candidates=simple)
    assert choice.status == "tuned" and choice.customers >= 250
    assert choice.chosen == "personal top-frequency" == choice.ranking[0][0]
    figures = dict(choice.ranking)
    ours = figures["personal top-frequency"].recall
    # Beyond noise: well ahead of the learned ranker (own items only) and of popularity (no staples).
    assert ours > figures[LEARNED].recall + 0.1, choice.ranking
    assert ours > figures["popularity"].recall + 0.1, choice.ranking
    record = choice.record(10)
    assert record["chosen"] == "personal top-frequency" and record["learned"]["name"] == LEARNED
    # Among every candidate (TIFU-KNN too, which also lists own items then what everyone buys), a
    # baseline still serves, not the learned ranker.
    full = choose_ranking(purchases, now, validation_days=20, k=10, min_customers=50)
    assert {name for name, _ in full.ranking} == set(ranking_candidates())
    assert full.chosen != LEARNED and dict(full.ranking)[full.chosen].recall >= ours


def test_too_few_validation_customers_keep_the_learned_ranker() -> None:
    purchases, now = _young_shop()
    choice = choose_ranking(purchases, now, validation_days=20, k=10, min_customers=10_000)
    assert choice.status == "default" and choice.chosen == LEARNED
    assert "fewer than 10000" in choice.reason


def test_a_baseline_ranks_as_the_endpoint_asks_own_items_first_then_bestsellers() -> None:
    purchases, now = _young_shop()
    ranker = BaselineRanker("personal top-frequency").fit(purchases, now)
    items, scores = ranker.rank(0, 5)
    assert items[0] == N_POPULAR  # customer 0's staple, then the bestsellers
    assert (np.diff(scores) <= 0).all() and scores[0] == 1.0
    allowed = np.ones(purchases.n_items, dtype=bool)
    allowed[N_POPULAR] = False
    kept, _ = ranker.rank(0, 5, allowed=allowed)
    assert N_POPULAR not in kept.tolist() and kept.size == 5
    assert ranker.model.summary is not None  # the endpoint's timing estimates are fitted beside it
