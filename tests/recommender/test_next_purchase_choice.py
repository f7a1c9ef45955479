"""recommender.next_purchase_choice: the served next-purchase ranking is chosen per shop on validation."""

from __future__ import annotations

import numpy as np
import pytest

from recommender.evaluation import Metrics
from recommender.next_basket import Purchases
from recommender.next_purchase_choice import (
    LEARNED,
    BaselineRanker,
    choose_among,
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
    # ... so the learned ranker is far behind it (beyond noise) on the validation customers.
    assert choice.lead is not None and choice.lead.high < -0.1, choice.lead
    record = choice.record(10)
    assert record["chosen"] == "personal top-frequency" and record["learned"]["name"] == LEARNED
    assert not record["lead"]["beyond_noise"] and record["lead"]["name"] == LEARNED
    assert record["lead"]["over"] == "personal top-frequency"
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


def _figures(hits: np.ndarray) -> Metrics:
    """Validation figures of a candidate from its per-customer recall (0 or 1 per customer)."""
    recall = float(hits.mean())
    return Metrics(recall, recall / 10, recall, recall, recall, 0.1, hits.size, per_customer_recall=hits)


def _scored(baseline_only: int, learned_only: int, n: int = 400) -> list[tuple[str, Metrics]]:
    """Three candidates on `n` customers: the learned ranker hits the first half; personal top-frequency
    hits the same customers but `learned_only` of them, plus `baseline_only` others; popularity a quarter."""
    learned = np.zeros(n)
    learned[: n // 2] = 1.0
    baseline = learned.copy()
    baseline[:learned_only] = 0.0
    baseline[n // 2 : n // 2 + baseline_only] = 1.0
    popularity = np.zeros(n)
    popularity[: n // 4] = 1.0
    return [
        ("popularity", _figures(popularity)),
        ("personal top-frequency", _figures(baseline)),
        (LEARNED, _figures(learned)),
    ]


def test_a_learned_ranker_leading_within_noise_leaves_the_best_baseline_serving() -> None:
    # Issue 17 ("never worse than a simple baseline"): on the weekly shop the learned ranker and personal
    # top-frequency were within noise of each other on validation, and on the luxury shop a validation
    # lead of the learned ranker did not hold on the next window. The burden of proof is on the learned
    # ranker. Here it leads by 4 customers of 400 (+0.01; 12 gained, 8 lost): within noise.
    choice = choose_among(_scored(baseline_only=8, learned_only=12), 400)
    assert choice.ranking[0][0] == LEARNED  # the best on validation ...
    assert choice.lead is not None and choice.lead.mean == pytest.approx(0.01)
    assert choice.lead.low < 0 < choice.lead.high  # ... within noise
    assert choice.chosen == "personal top-frequency" and "not lead personal top-frequency" in choice.reason
    record = choice.record(10)
    assert record["chosen"] == "personal top-frequency" and record["best"]["name"] == LEARNED
    assert record["lead"]["beyond_noise"] is False and record["lead"]["over"] == "personal top-frequency"


def test_a_baseline_leading_within_noise_serves() -> None:
    # The mirror case: the baseline is best on validation by a margin within noise; it serves.
    choice = choose_among(_scored(baseline_only=12, learned_only=8), 400)
    assert choice.ranking[0][0] == "personal top-frequency" and choice.chosen == "personal top-frequency"
    assert choice.lead is not None and choice.lead.low < 0 < choice.lead.high


def test_a_learned_ranker_leading_beyond_noise_serves() -> None:
    # 120 customers gained, 10 lost of 400: +0.275, far beyond noise.
    choice = choose_among(_scored(baseline_only=10, learned_only=120), 400)
    assert choice.lead is not None and choice.lead.low > 0.2
    assert choice.chosen == LEARNED and "beyond noise" in choice.reason
    assert choice.record(10)["lead"]["beyond_noise"] is True


def test_the_same_window_one_year_earlier_joins_the_validation_when_the_data_covers_it() -> None:
    # Two years of the young shop: its 50 days, then again 345 days later. The 20 days ahead of `now`
    # one year earlier are the first year's last 20 (days 30 to 49), with 30 days of history before them.
    one, _ = _young_shop()
    purchases = Purchases(
        np.r_[one.u, one.u],
        np.r_[one.i, one.i],
        np.r_[one.d, one.d + 345],
        np.r_[one.lines, one.lines],
        one.n_users,
        one.n_items,
    )
    now = 49 + 345
    simple = ("popularity", "personal top-frequency", LEARNED)
    recent = choose_ranking(
        purchases, now, validation_days=20, k=10, min_customers=50, candidates=simple, year_earlier=False
    )
    both = choose_ranking(purchases, now, validation_days=20, k=10, min_customers=50, candidates=simple)
    assert recent.year_earlier == 0 and both.year_earlier == 300  # every customer came back in both
    assert both.customers == recent.customers + 300 and both.record(10)["year_earlier"] == 300
    assert both.chosen == "personal top-frequency"  # best by construction in either year
    # The young shop alone (50 days) does not cover a year earlier: nothing is added.
    young, day = _young_shop()
    assert (
        choose_ranking(young, day, validation_days=20, k=10, min_customers=50, candidates=simple).year_earlier
        == 0
    )
