"""Negative feedback (issue 13): rejected picks subtracted from the confidence matrix; ALS reads a negative
cell as "not wanted"; the simulation of manager edits for offline evaluation."""

from __future__ import annotations

import datetime as dt
import warnings

import numpy as np
import pytest
from scipy.sparse import csr_matrix

from recommender.base import check_user_items
from recommender.collaborative import ALSRecommender, BPRRecommender
from recommender.feedback import positive_part, rejection_amounts, simulate_rejections, subtract_rejections
from recommender.hybrid import HybridRecommender


def test_rejections_are_subtracted_from_their_cells_known_answer():
    m = csr_matrix(np.array([[2.0, 0.0, 1.0], [0.0, 3.0, 0.0]], dtype=np.float32))
    out = subtract_rejections(
        m,
        np.array([0, 0, 1, 1, -1, 0]),
        np.array([0, 1, 1, 1, 2, 5]),  # (0,0) bought twice, (0,1) empty, (1,1) rejected twice; two ignored
        np.array([0.5, 1.0, 1.0, 2.5, 9.0, 9.0]),
    )
    np.testing.assert_allclose(out.toarray(), [[1.5, -1.0, 1.0], [0.0, -0.5, 0.0]])
    assert out.dtype == np.float32 and out.has_canonical_format
    np.testing.assert_allclose(positive_part(out).toarray(), [[1.5, 0.0, 1.0], [0.0, 0.0, 0.0]])
    assert positive_part(out).nnz == 2
    np.testing.assert_array_equal(m.toarray(), [[2.0, 0.0, 1.0], [0.0, 3.0, 0.0]])  # the input unchanged
    with pytest.raises(ValueError, match="differ in length"):
        subtract_rejections(m, np.array([0]), np.array([0, 1]), np.array([1.0]))


def test_a_rejection_decays_like_the_interactions():
    now = dt.datetime(2011, 12, 1)
    ts = np.array(["2011-12-01", "2010-12-01", "2009-12-01", "2012-01-01"], dtype="datetime64[s]")
    np.testing.assert_allclose(rejection_amounts(ts, 2.0, half_life_days=365.0, now=now), [2, 1, 0.5, 2])
    np.testing.assert_allclose(rejection_amounts(ts, 2.0, half_life_days=None, now=now), [2, 2, 2, 2])
    with pytest.raises(ValueError):
        rejection_amounts(ts, -1.0, half_life_days=None, now=now)


def _block() -> csr_matrix:
    """Twenty users who all bought items 0-3, except user 0 who never bought item 3; ten who bought 4-7."""
    dense = np.zeros((30, 8), dtype=np.float32)
    dense[:20, :4] = 1
    dense[0, 3] = 0
    dense[20:, 4:] = 1
    return csr_matrix(dense)


def _als_score(model, user: int, item: int) -> float:
    return float(model.user_factors[user] @ model.item_factors[item])


def test_a_negative_cell_lowers_the_als_score_for_that_item_the_more_the_heavier():
    def fit(weight: float) -> ALSRecommender:
        m = _block()
        if weight:
            m = subtract_rejections(m, np.array([0]), np.array([3]), np.array([weight]))
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a negative cell is feedback here, not input to repair
            return ALSRecommender(factors=2, regularization=0.1, alpha=2.0, iterations=15, num_threads=1).fit(
                m
            )

    scores = [_als_score(fit(w), 0, 3) for w in (0.0, 1.0, 3.0)]
    # measured 0.835, 0.652, 0.461: item 3 (bought by all 19 look-alikes) is user 0's best pick without it
    assert scores[0] > 0.7 and scores[1] < 0.85 * scores[0] and scores[2] < 0.85 * scores[1]
    assert fit(1.0).recommend(0, _block()[0], n=1)[0][0] == 3  # lowered, not forbidden: ranking decides


def test_the_hybrid_passes_negative_feedback_to_its_als():
    def fit(m: csr_matrix) -> HybridRecommender:
        return HybridRecommender(
            factors=2, regularization=0.1, alpha=2.0, iterations=15, num_threads=1, repeat=False
        ).fit(m)

    plain = _block()
    rejected = subtract_rejections(plain, np.array([0]), np.array([3]), np.array([1.0]))
    before, after = fit(plain), fit(rejected)
    assert before.als is not None and after.als is not None
    assert _als_score(after.als, 0, 3) < 0.85 * _als_score(before.als, 0, 3)
    # its popularity default counts buyers, not rejections
    np.testing.assert_array_equal(after.popularity, before.popularity)


def test_models_without_negative_feedback_get_the_cell_clipped_with_a_warning():
    signed = subtract_rejections(_block(), np.array([0]), np.array([3]), np.array([1.0]))
    assert check_user_items(signed, allow_negative=True).min() < 0
    with pytest.warns(UserWarning, match="negative values were clipped"):
        BPRRecommender(factors=2, iterations=5, num_threads=1).fit(signed)


def test_simulated_rejections_are_deterministic_and_among_the_picks_shown():
    picks = np.array([[5, 6, 7], [1, 2, -1], [9, -1, -1], [-1, -1, -1]] * 25)
    keys = np.arange(100) + 1000
    rows, items = simulate_rejections(picks, keys, share=0.5, seed=3)
    again = simulate_rejections(picks, keys, share=0.5, seed=3)
    np.testing.assert_array_equal(rows, again[0])
    np.testing.assert_array_equal(items, again[1])
    assert all(items[j] in picks[rows[j]] for j in range(rows.size))
    assert 25 <= np.unique(rows).size <= 50  # about half of the 75 users with picks, one each
    assert np.unique(rows).size == rows.size
    everyone, _ = simulate_rejections(picks, keys, share=1.0, per_user=2)
    assert everyone.size == 25 * (2 + 2 + 1)
    none, _ = simulate_rejections(picks, keys, share=0.0)
    assert none.size == 0
    with pytest.raises(ValueError):
        simulate_rejections(picks, keys, share=1.5)
