"""NextBasketRanker: the learned next-purchase ranking over own and new candidate items."""

from __future__ import annotations

import numpy as np
import pytest

from recommender.base import NotFittedError
from recommender.next_basket import FEATURES, NextBasketRanker, Purchases, candidate_features

N_USERS, N_ITEMS, NOW = 400, 40, 239
GROUPS = 10  # customer c follows trigger item 2 * (c % 10) with item 2 * (c % 10) + 1
FILLERS = np.arange(20, 40)


def planted() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Purchases where a trigger item is followed 5 to 25 days later by its partner, plus filler items
    bought once at random; returns (users, items, days, lines, the customers waiting for the partner)."""
    rng = np.random.default_rng(7)
    u: list[int] = []
    i: list[int] = []
    d: list[int] = []
    waiting = []
    for c in range(N_USERS):
        trigger = 2 * (c % GROUPS)
        start = int(rng.integers(0, NOW + 1))
        follow = start + int(rng.integers(5, 26))
        u.append(c), i.append(trigger), d.append(start)
        if follow <= NOW:
            u.append(c), i.append(trigger + 1), d.append(follow)
        elif start > NOW - 5:
            waiting.append(c)
        for item in rng.choice(FILLERS, size=3, replace=False).tolist():
            u.append(c), i.append(item), d.append(int(rng.integers(0, NOW + 1)))
    key = np.unique(np.array([u, i, d]), axis=1)  # distinct (customer, item, day)
    return key[0], key[1], key[2], np.ones(key.shape[1], np.int64), np.array(waiting)


def test_the_ranker_learns_a_planted_follow_up_item_new_to_the_customer():
    u, i, d, lines, waiting = planted()
    ranker = NextBasketRanker(params={"training_windows": 4, "max_iter": 100}).fit(
        Purchases(u, i, d, lines, N_USERS, N_ITEMS), NOW
    )
    assert ranker.classifier is not None and ranker.note is None
    assert waiting.size >= 3
    for c in waiting.tolist():
        partner = 2 * (c % GROUPS) + 1
        items, scores = ranker.rank(c, 3)
        assert items[0] == partner, (c, items, scores)
        assert not ranker.is_own(c, items[:1])[0]  # never bought: found by the collaborative candidates
        assert scores[0] > 2 * scores[1]  # far ahead of the customer's own filler items, not a near tie


def test_without_enough_history_it_ranks_own_items_by_the_fixed_blend():
    u, i, d, lines, _ = planted()
    keep = d > NOW - 20  # 20 days: no label window has history before it
    ranker = NextBasketRanker().fit(Purchases(u[keep], i[keep], d[keep], lines[keep], N_USERS, N_ITEMS), NOW)
    assert ranker.classifier is None and "too little history" in (ranker.note or "")
    for c in np.unique(u[keep]).tolist():
        items, _ = ranker.rank(c, 10)
        assert ranker.is_own(c, items).all()


def test_rank_honours_allowed_and_n():
    u, i, d, lines, waiting = planted()
    ranker = NextBasketRanker(params={"training_windows": 4, "max_iter": 100}).fit(
        Purchases(u, i, d, lines, N_USERS, N_ITEMS), NOW
    )
    c = int(waiting[0])
    allowed = np.ones(N_ITEMS, dtype=bool)
    allowed[2 * (c % GROUPS) + 1] = False
    items, _ = ranker.rank(c, 2, allowed=allowed)
    assert items.size == 2 and allowed[items].all()


def test_candidate_features_read_nothing_after_the_cut():
    u, i, d, lines, _ = planted()
    cut = NOW - 30
    every = Purchases(u, i, d, lines, N_USERS, N_ITEMS)
    a, _ = candidate_features(every, cut, horizon=30, new_per_source=5)
    seen = d <= cut
    before = Purchases(u[seen], i[seen], d[seen], lines[seen], N_USERS, N_ITEMS)
    b, _ = candidate_features(before, cut, horizon=30, new_per_source=5)
    assert np.array_equal(a.users, b.users) and np.array_equal(a.items, b.items)
    assert np.array_equal(a.X, b.X) and a.X.shape[1] == len(FEATURES)


def test_the_als_features_put_the_planted_partner_first_among_new_candidates():
    """ALS (fitted as of the cut on the customers' order lines) learns that trigger buyers buy the partner:
    for a customer still waiting for it, the partner has the highest ALS score of the new candidates, far
    ahead of the next one, and a better ALS rank than every other new candidate."""
    u, i, d, lines, waiting = planted()
    cands, _ = candidate_features(
        Purchases(u, i, d, lines, N_USERS, N_ITEMS), NOW, horizon=30, new_per_source=5
    )
    als, rank = cands.X[:, FEATURES.index("als")], cands.X[:, FEATURES.index("als_rank")]
    new = cands.X[:, FEATURES.index("is_own")] == 0
    assert waiting.size >= 3
    for c in waiting.tolist():
        partner = 2 * (c % GROUPS) + 1
        mine = (cands.users == c) & new
        at = mine & (cands.items == partner)
        assert at.sum() == 1, (c, cands.items[mine])
        others = mine & ~at
        assert als[at][0] > 3 * als[others].max(), (c, als[at], als[others])
        assert rank[at][0] < rank[others].min()


def test_week_buyers_count_distinct_customers_of_the_last_seven_days():
    u, i, d, lines, _ = planted()
    u, i, d, lines = (
        np.r_[a, extra]
        for a, extra in zip((u, i, d, lines), ([0, 0], [21, 21], [NOW, NOW - 1], [1, 1]), strict=True)
    )
    cands, _ = candidate_features(
        Purchases(u, i, d, lines, N_USERS, N_ITEMS), NOW, horizon=30, new_per_source=5
    )
    week = cands.X[:, FEATURES.index("buyers_7")]
    for item in np.unique(cands.items).tolist():
        expected = len({c for c, it, day in zip(u, i, d, strict=True) if it == item and day > NOW - 7})
        assert set(week[cands.items == item].tolist()) == {float(expected)}, item


def test_unknown_parameters_and_unfitted_use_raise():
    with pytest.raises(ValueError, match="unknown ranker parameters"):
        NextBasketRanker(params={"nonsense": 1})
    with pytest.raises(NotFittedError):
        NextBasketRanker().rank(0, 10)


def _whole_cooccurrence(bought, keep):  # type: ignore[no-untyped-def]
    """The co-purchase similarity of one whole ``bought.T @ bought`` (the code before issue 17's blocks)."""
    from scipy.sparse import csr_matrix

    b = bought.copy()
    b.data[:] = 1.0
    co = (b.T @ b).tocsr()
    co.setdiag(0.0)
    co.eliminate_zeros()
    deg = np.sqrt(np.asarray(b.sum(axis=0)).ravel())
    co = co.tocoo()
    vals = co.data / np.maximum(deg[co.row] * deg[co.col], 1e-12)
    order = np.lexsort((co.col, -vals, co.row))
    row, col, vals = co.row[order], co.col[order], vals[order]
    starts = np.r_[0, np.flatnonzero(np.diff(row)) + 1]
    rank = np.arange(row.size) - np.repeat(starts, np.diff(np.r_[starts, row.size]))
    ok = rank < keep
    n = bought.shape[1]
    return csr_matrix((vals[ok], (row[ok], col[ok])), shape=(n, n))


@pytest.mark.parametrize("block_cells", [1, 37, 5_000, None])
def test_cooccurrence_in_item_blocks_equals_the_whole_product(block_cells):
    # issue 17: the whole items x items product held 10 GiB on The Complete Journey; blocks of item rows
    # (down to one item at a time) must give the same neighbours and values
    from scipy.sparse import random as sparse_random

    from recommender.next_basket import _cooccurrence_similarity

    bought = sparse_random(300, 120, density=0.08, format="csr", random_state=3)
    bought.data = np.ceil(bought.data * 4)  # days bought: 1 to 4
    bought.data[bought.indices == 7] = 0.0  # an item nobody bought
    bought.eliminate_zeros()
    whole = _whole_cooccurrence(bought, 5)
    blocked = _cooccurrence_similarity(bought, 5, block_cells)
    assert (whole != blocked).nnz == 0
    np.testing.assert_array_equal(whole.indptr, blocked.indptr)
    np.testing.assert_array_equal(whole.indices, blocked.indices)
    np.testing.assert_array_equal(whole.data, blocked.data)


def test_cooccurrence_memory_is_bounded_by_the_block_not_the_product(monkeypatch):
    # issue 17: 2,467 households buying hundreds of items each made ``bought.T @ bought`` hold hundreds
    # of millions of item pairs (10.1 GiB resident); with a budget of cells per block the peak is the
    # block's, here a fraction of the whole product's
    import tracemalloc

    from scipy.sparse import random as sparse_random

    import recommender.next_basket as nb

    bought = sparse_random(60, 1500, density=0.3, format="csr", random_state=5)
    bought.data[:] = 1.0
    pairs = (bought.T @ bought).nnz  # about 1.5M item pairs, 12 bytes or more each
    monkeypatch.setattr(nb, "_COOCCURRENCE_CELLS", 40_000, raising=False)
    tracemalloc.start()
    try:
        nb._cooccurrence_similarity(bought, 5)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 12 * pairs / 4


def test_candidate_features_do_not_depend_on_the_customer_batch(monkeypatch):
    # issue 17: on a large catalogue the customers are taken in smaller batches of dense rows; the
    # candidates and their features must be those of one batch (the ALS scores, a matrix product, up to
    # the last bits: BLAS sums a row differently at another position of the batch)
    import recommender.evaluation as ev

    u, i, d, lines, _ = planted()
    p = Purchases(u, i, d, lines, N_USERS, N_ITEMS)
    whole, _ = candidate_features(p, NOW, horizon=30.0, new_per_source=5)
    monkeypatch.setattr(ev, "BLOCK_CELLS", 7 * N_ITEMS)  # 7 customers per batch
    small, _ = candidate_features(p, NOW, horizon=30.0, new_per_source=5)
    np.testing.assert_array_equal(whole.users, small.users)
    np.testing.assert_array_equal(whole.items, small.items)
    np.testing.assert_allclose(whole.X, small.X, rtol=1e-9, atol=1e-15)
