"""recommender.selection: a candidate's validation figure is that of the lists serving shows."""

from __future__ import annotations

import numpy as np
from scipy.sparse import csr_matrix

from recommender.evaluation import ranking_metrics
from recommender.hybrid import HybridRecommender
from recommender.selection import ValidationTruth, candidate_blends, rank_candidates

K = 10


def _fitted(
    n_users: int, n_items: int, prior: np.ndarray, knn_k: int = 0
) -> tuple[HybridRecommender, csr_matrix]:
    rng = np.random.default_rng(3)
    user_items = csr_matrix((rng.random((n_users, n_items)) < 0.1).astype(np.float32))
    model = HybridRecommender(factors=4, iterations=2, num_threads=1, random_state=0, knn_k=knn_k)
    return model.fit(user_items, item_popularity={30.0: prior}), user_items


def test_popularity_ties_at_the_kth_place_break_as_serving_breaks_them() -> None:
    # Regression: the validation lists took the k best of a row with argpartition, which cuts values
    # equal to the k-th best arbitrarily, while serving (`recommender.base.top_k`) keeps the lower item
    # index; a popularity prior counts buyers (integers), so ties at the 10th place are common, and a
    # popularity candidate was scored on lists that serving never shows.
    n_users, n_items = 40, 50
    prior = np.random.default_rng(0).integers(0, 4, size=n_items).astype(np.float32)
    model, user_items = _fitted(n_users, n_items, prior)
    (name, blend) = next(c for c in candidate_blends("discovery", (30.0,)) if c[0].startswith("popularity"))
    served = model.with_blend(**blend)
    users = np.arange(n_users)
    # Each customer bought some items (never shown to them) and buys, in the window, the tied items that
    # serving shows at the end of their list.
    bought = csr_matrix((np.random.default_rng(1).random((n_users, n_items)) < 0.2).astype(np.float32))
    lists = np.full((n_users, K), -1, dtype=np.int64)
    for u in users.tolist():
        ids, scores = served.recommend(
            u, user_items[u], K, allowed=bought[u].toarray().ravel() == 0, exclude_seen=False
        )
        ids = ids[scores > 0]
        lists[u, : ids.size] = ids
    tail = lists[:, K - 3 :]
    relevant = csr_matrix(
        (np.ones(tail.size, dtype=np.float32), (np.repeat(users, 3), tail.ravel())), shape=(n_users, n_items)
    )
    truth = ValidationTruth(users, relevant, np.full(n_users, 3), bought)
    none = ValidationTruth(np.empty(0, np.int64), csr_matrix((0, n_items)), np.empty(0, np.int64))
    ranked = rank_candidates(
        model,
        user_items,
        {"discovery": truth, "next_purchases": none},
        bestsellers=np.zeros(n_items),
        k=K,
        candidates={"discovery": [(name, blend)], "next_purchases": []},
    )
    expected = ranking_metrics(lists, relevant, K, n_items, truth.n_relevant)
    assert expected.recall == 1.0  # the truth is what serving shows
    assert ranked["discovery"][0].metrics.recall == expected.recall


def test_scoring_in_blocks_of_customers_gives_the_figures_of_scoring_all_at_once() -> None:
    # The grid is scored a block of customers at a time (memory bounded by the block, not the
    # catalogue): the block size must not change any candidate's lists.
    rng = np.random.default_rng(4)
    n_users, n_items = 60, 80
    prior = rng.integers(0, 3, size=n_items).astype(np.float32)  # ties at the k-th place
    model, user_items = _fitted(n_users, n_items, prior, knn_k=10)
    users = np.sort(rng.choice(n_users, 45, replace=False))
    bought = rng.random((users.size, n_items)) < 0.08
    bought[:, 1] = True  # everyone bought something in the window
    relevant = csr_matrix(bought.astype(np.float32))
    sizes = np.diff(relevant.indptr)
    truth = {
        "next_purchases": ValidationTruth(users, relevant, sizes),
        "discovery": ValidationTruth(users, relevant, sizes, user_items[users]),
    }
    bestsellers = rng.integers(0, 4, size=n_items).astype(np.float64)
    candidates = {task: candidate_blends(task, (30.0,)) for task in ("next_purchases", "discovery")}

    def figures(block: int | None) -> dict[str, list[tuple[str, dict[str, object], list[float]]]]:
        ranked = rank_candidates(model, user_items, truth, bestsellers, K, candidates, block=block)
        return {
            task: [(s.name, s.blend, list(s.metrics.per_customer_recall)) for s in scored]
            for task, scored in ranked.items()
        }

    whole = figures(None)
    assert len(whole["next_purchases"]) == len(candidates["next_purchases"])
    assert figures(7) == whole
    assert figures(1) == whole
