"""ALS's one-row normal equations, shared by a fold-in and the explanations of the same row."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse import csr_matrix

from recommender.collaborative import ALSRecommender
from tests.recommender.conftest import N_ITEMS, checkerboard


@pytest.fixture(scope="module")
def als() -> ALSRecommender:
    return ALSRecommender(factors=8, regularization=0.05, alpha=2.0, iterations=10, num_threads=1).fit(
        checkerboard()
    )


def _row(cols: list[int], values: list[float]) -> csr_matrix:
    return csr_matrix(
        (np.asarray(values, dtype=np.float32), ([0] * len(cols), cols)), shape=(1, N_ITEMS), dtype=np.float32
    )


ROWS = {
    "weighted": _row([0, 2, 4, 9, 14], [1.0, 0.3, 2.5, 0.1, 1.0]),
    "other items": _row([1, 3, 6, 7, 11], [1.0, 2.0, 1.5, 0.4, 1.0]),
    "one item": _row([5], [1.0]),
}
#: A rejected item: a negative cell counts by its size in A and not in b (implicit's least squares).
REJECTION = _row([1, 3, 6, 7, 11], [1.0, 2.0, -1.5, 0.4, 1.0])


@pytest.mark.parametrize("name", [*sorted(ROWS), "with a rejection"])
def test_a_one_row_fold_in_solves_what_implicit_solves(als: ALSRecommender, name: str) -> None:
    row = ROWS.get(name, REJECTION)
    ours = als._fold_in(row)
    implicit = als._solo.recalculate_user(np.arange(1), row)  # implicit's float32 least squares
    assert ours.shape == (1, als.item_factors.shape[1]) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, np.asarray(implicit).reshape(1, -1), rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("name", sorted(ROWS))
def test_explanations_agree_with_implicits_explain(als: ALSRecommender, name: str) -> None:
    row = ROWS[name]
    items = np.arange(N_ITEMS)
    many = als.explain_many(0, row, items, n=3)
    for item, reasons in zip(items.tolist(), many, strict=True):
        single = als.explain(0, row, item, n=3)
        assert [i for i, _ in reasons] == [i for i, _ in single]
        np.testing.assert_allclose([c for _, c in reasons], [c for _, c in single], rtol=1e-4, atol=1e-7)


def test_a_thread_reuses_its_last_system_only_for_the_same_row_and_model(als: ALSRecommender) -> None:
    a, b = ROWS["weighted"], ROWS["other items"]
    everything = np.arange(N_ITEMS)
    expected_b = als.explain_many(0, b, everything, n=2)
    expected_a = als._fold_in(a)
    als._fold_in(a)  # the thread's last system is now a's
    assert als.explain_many(0, b, everything, n=2) == expected_b
    same_content = _row(a.indices.tolist(), a.data.tolist())  # another object, an equal row: reused
    assert als._system(same_content) is als._system(a)
    changed = _row(a.indices.tolist(), [*a.data.tolist()[:-1], 3.0])
    assert not np.allclose(als._fold_in(changed), expected_a)
    # Another model (the same factor count, another A): its system never answers for this one.
    other = ALSRecommender(factors=8, regularization=5.0, alpha=2.0, iterations=10, num_threads=1).fit(
        checkerboard()
    )
    other._fold_in(a)
    np.testing.assert_array_equal(als._fold_in(a), expected_a)


def test_explain_ids_agree_with_explain_many_on_a_long_row_with_ties() -> None:
    # Above 256 past items the top contributions are found after a partition; equal weights and repeated
    # factor rows make ties, which go to the lower item id in both forms.
    rng = np.random.default_rng(3)
    n_items = 600
    user_items = csr_matrix((rng.random((80, n_items)) < 0.05).astype(np.float32))
    model = ALSRecommender(factors=4, iterations=5, num_threads=1).fit(user_items)
    model.item_factors[300:310] = model.item_factors[200]  # equal contributions
    model._adopt(model)
    cols = np.sort(rng.choice(n_items, 320, replace=False))
    row = csr_matrix((np.ones(cols.size, dtype=np.float32), ([0] * cols.size, cols)), shape=(1, n_items))
    items = np.arange(0, n_items, 7)
    expected = [[i for i, _ in reasons] for reasons in model.explain_many(0, row, items, n=3)]
    got = model.explain_ids(0, row, items, n=3)
    assert [[i for i in r if i >= 0] for r in got.tolist()] == expected
