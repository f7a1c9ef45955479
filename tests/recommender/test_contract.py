"""One contract suite run against every Recommender (after implicit's RecommenderBaseTestMixin)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.sparse import csr_matrix

from recommender.artifacts import load_model
from recommender.base import ArtifactError, NotFittedError, Recommender, check_user_items
from recommender.collaborative import ALSRecommender, ItemItemRecommender
from tests.ranking import assert_same_ranking
from tests.recommender.conftest import N_ITEMS, N_USERS


def _row(user_items: csr_matrix, u: int) -> csr_matrix:
    return user_items[u : u + 1]


def test_every_model_is_registered_under_its_name(fitted: Recommender, tmp_path: Path) -> None:
    fitted.save(tmp_path)
    assert type(load_model(tmp_path)) is type(fitted)
    assert fitted.name


def test_unfitted_model_raises_not_fitted(unfitted: Recommender, user_items: csr_matrix) -> None:
    with pytest.raises(NotFittedError):
        unfitted.recommend(0, _row(user_items, 0), 5)
    with pytest.raises(NotFittedError):
        unfitted.recommend_batch([0, 1], user_items[:2], 5)
    with pytest.raises(NotFittedError):
        unfitted.similar_items(0, 5)
    with pytest.raises(NotFittedError):
        unfitted.score_row(_row(user_items, 0))
    with pytest.raises(NotFittedError):
        unfitted.explain(0, _row(user_items, 0), 1)
    with pytest.raises(NotFittedError):
        unfitted.recalculate_user(_row(user_items, 0))
    with pytest.raises(NotFittedError):
        unfitted.save(Path("never-written"))
    assert not Path("never-written").exists()


def test_recommend_never_returns_seen_items(fitted: Recommender, user_items: csr_matrix) -> None:
    for u in range(N_USERS):
        row = _row(user_items, u)
        ids, scores = fitted.recommend(u, row, N_ITEMS)
        assert not set(ids.tolist()) & set(row.indices.tolist())
        assert ids.size == N_ITEMS - row.nnz
        assert ids.dtype == np.int32 and scores.dtype == np.float32
        assert np.all(np.diff(scores) <= 0), "best first"


def test_recommend_can_include_seen_items(fitted: Recommender, user_items: csr_matrix) -> None:
    ids, _ = fitted.recommend(0, _row(user_items, 0), N_ITEMS, exclude_seen=False)
    assert sorted(ids.tolist()) == list(range(N_ITEMS))


def test_personal_models_recommend_the_users_parity(
    fitted: Recommender, is_personal: bool, user_items: csr_matrix
) -> None:
    if not is_personal:
        # The non-personal baseline must be identical for everyone instead.
        first = fitted.recommend(0, _row(user_items, 0), 4, exclude_seen=False)[0]
        assert np.array_equal(first, fitted.recommend(1, _row(user_items, 1), 4, exclude_seen=False)[0])
        return
    for u in range(N_USERS):
        ids, _ = fitted.recommend(u, _row(user_items, u), 4)
        assert ids.size == 4
        assert np.all(ids % 2 == u % 2), f"user {u} got {ids}"


def test_folded_in_user_gets_the_parity_of_the_row(
    fitted: Recommender, is_personal: bool, user_items: csr_matrix
) -> None:
    # A new customer who bought three odd items, unknown to the model (-1).
    row = csr_matrix((np.ones(3, np.float32), ([0, 0, 0], [1, 5, 9])), shape=(1, N_ITEMS))
    ids, _ = fitted.recommend(-1, row, 4)
    if not is_personal:
        known, _ = fitted.recommend(0, row, 4)
        assert ids.size == 4 and np.array_equal(ids, known), "the same list for new and known users"
        return
    assert np.all(ids % 2 == 1)
    # A known user whose row changed since training is folded in on request.
    even_user = 0
    ids, _ = fitted.recommend(even_user, row, 4, recalculate_user=True)
    assert np.all(ids % 2 == 1)


def test_allowed_mask_is_respected(fitted: Recommender, user_items: csr_matrix) -> None:
    rng = np.random.default_rng(3)
    allowed = rng.random(N_ITEMS) < 0.5
    for u in range(0, N_USERS, 7):
        row = _row(user_items, u)
        ids, _ = fitted.recommend(u, row, N_ITEMS, allowed=allowed)
        assert allowed[ids].all()
        expected = allowed.copy()
        expected[row.indices] = False
        assert set(ids.tolist()) == set(np.flatnonzero(expected).tolist())
    nothing = np.zeros(N_ITEMS, dtype=bool)
    ids, scores = fitted.recommend(0, _row(user_items, 0), 5, allowed=nothing)
    assert ids.size == 0 and scores.size == 0


def test_bad_allowed_mask_is_rejected(fitted: Recommender, user_items: csr_matrix) -> None:
    with pytest.raises(ValueError, match="allowed"):
        fitted.recommend(0, _row(user_items, 0), 5, allowed=np.ones(N_ITEMS - 1, dtype=bool))
    with pytest.raises(ValueError, match="allowed"):
        fitted.recommend(0, _row(user_items, 0), 5, allowed=np.ones(N_ITEMS, dtype=np.int64))


def test_row_of_the_wrong_width_is_rejected(fitted: Recommender) -> None:
    with pytest.raises(ValueError, match="item columns"):
        fitted.recommend(0, csr_matrix((1, N_ITEMS + 1), dtype=np.float32), 5)


@pytest.mark.parametrize("n", [0, 1, 3, 10])
def test_n_is_honoured(fitted: Recommender, user_items: csr_matrix, n: int) -> None:
    ids, scores = fitted.recommend(2, _row(user_items, 2), n)
    assert ids.size == scores.size == n
    assert len(set(ids.tolist())) == n


def test_batch_equals_single(fitted: Recommender, user_items: csr_matrix) -> None:
    users = np.array([5, 0, 17, -1, 33])
    rows = user_items[[5, 0, 17, 8, 33]]
    allowed = np.ones(N_ITEMS, dtype=bool)
    allowed[[3, 4]] = False
    ids, scores = fitted.recommend_batch(users, rows, 8, allowed=allowed)
    assert ids.shape == scores.shape == (5, 8)
    for k, u in enumerate(users):
        single_ids, single_scores = fitted.recommend(int(u), rows[k], 8, allowed=allowed)
        n = single_ids.size
        # The batch (matrix-matrix) and single (matrix-vector) products round differently: near-ties may swap.
        assert_same_ranking(ids[k, :n], scores[k, :n], single_ids, single_scores, rtol=1e-5, atol=1e-6)
        assert (ids[k, n:] == -1).all() and np.isneginf(scores[k, n:]).all()


def test_batch_pads_short_rows(fitted: Recommender, user_items: csr_matrix) -> None:
    ids, scores = fitted.recommend_batch([0, 1], user_items[:2], N_ITEMS + 5)
    for k in range(2):
        short = N_ITEMS - user_items[k].nnz
        assert (ids[k, :short] >= 0).all()
        assert (ids[k, short:] == -1).all() and np.isneginf(scores[k, short:]).all()


def test_score_row_matches_recommend_for_a_new_user(fitted: Recommender, user_items: csr_matrix) -> None:
    row = _row(user_items, 11)
    scores = fitted.score_row(row)
    assert scores.shape == (N_ITEMS,) and scores.dtype == np.float32
    ids, rec_scores = fitted.recommend(-1, row, 5)
    masked = scores.copy()
    masked[row.indices] = -np.inf
    np.testing.assert_allclose(masked[ids], rec_scores, rtol=1e-5, atol=1e-6)
    assert rec_scores[-1] >= np.sort(masked)[::-1][4] - 1e-6


def test_save_load_round_trip_gives_identical_recommendations(
    fitted: Recommender, user_items: csr_matrix, tmp_path: Path
) -> None:
    fitted.save(tmp_path / "m")
    loaded = type(fitted).load(tmp_path / "m")
    assert loaded.params == fitted.params
    assert (loaded.n_users, loaded.n_items) == (fitted.n_users, fitted.n_items)
    users = np.arange(N_USERS)
    a = fitted.recommend_batch(users, user_items, 6)
    b = loaded.recommend_batch(users, user_items, 6)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    new = csr_matrix((np.ones(2, np.float32), ([0, 0], [2, 4])), shape=(1, N_ITEMS))
    assert np.array_equal(fitted.score_row(new), loaded.score_row(new))
    assert np.array_equal(fitted.similar_items(3, 5)[0], loaded.similar_items(3, 5)[0])


def test_load_of_another_model_class_is_refused(fitted: Recommender, tmp_path: Path) -> None:
    fitted.save(tmp_path)
    other = ItemItemRecommender if not isinstance(fitted, ItemItemRecommender) else ALSRecommender
    with pytest.raises(ArtifactError, match="holds"):
        other.load(tmp_path)


def test_load_of_corrupt_state_raises_artifact_error(fitted: Recommender, tmp_path: Path) -> None:
    fitted.save(tmp_path)
    (tmp_path / "model.npz").write_bytes(b"not a zip file")
    with pytest.raises(ArtifactError):
        Recommender.load(tmp_path)
    (tmp_path / "model.npz").unlink()
    with pytest.raises(ArtifactError, match="missing"):
        Recommender.load(tmp_path)


def test_params_rebuild_an_equivalent_model(fitted: Recommender, user_items: csr_matrix) -> None:
    again = type(fitted)(**fitted.params).fit(user_items)
    a = fitted.recommend_batch(np.arange(10), user_items[:10], 5)
    b = again.recommend_batch(np.arange(10), user_items[:10], 5)
    assert np.array_equal(a[0], b[0]), "seeded and single-threaded: deterministic"


def test_similar_items_exclude_the_item_itself(
    fitted: Recommender, is_personal: bool, user_items: csr_matrix
) -> None:
    for item in range(N_ITEMS):
        ids, scores = fitted.similar_items(item, 5)
        assert item not in ids.tolist()
        assert ids.size == 5 and np.all(np.diff(scores) <= 0)
        if is_personal:
            assert np.all(ids % 2 == item % 2), f"item {item}: {ids}"
    allowed = np.arange(N_ITEMS) < 10
    ids, _ = fitted.similar_items(12, N_ITEMS, allowed=allowed)
    assert allowed[ids].all() and 12 not in ids.tolist()
    with pytest.raises(IndexError):
        fitted.similar_items(N_ITEMS, 5)


def test_explain_names_past_items_of_the_row(
    fitted: Recommender, is_personal: bool, user_items: csr_matrix
) -> None:
    row = _row(user_items, 4)
    ids, _ = fitted.recommend(4, row, 3)
    reasons = fitted.explain(4, row, int(ids[0]), n=3)
    if not is_personal:
        assert reasons == []
        return
    assert 1 <= len(reasons) <= 3
    assert {i for i, _ in reasons} <= set(row.indices.tolist())
    contributions = [c for _, c in reasons]
    assert all(c > 0 for c in contributions) and contributions == sorted(contributions, reverse=True)
    assert fitted.explain(4, csr_matrix((1, N_ITEMS), dtype=np.float32), int(ids[0])) == []


def test_explain_many_agrees_with_explain(fitted: Recommender, user_items: csr_matrix) -> None:
    # For ALS this checks the vectorised decomposition against implicit's own explain().
    # Weights other than 1 so that ALS's (C - I) term matters.
    row = csr_matrix(_row(user_items, 7).multiply(np.arange(1, N_ITEMS + 1, dtype=np.float32)))
    ids, _ = fitted.recommend(7, row, 6)
    many = fitted.explain_many(7, row, ids, n=4)
    assert len(many) == ids.size
    for item, reasons in zip(ids.tolist(), many, strict=True):
        single = fitted.explain(7, row, item, n=4)
        assert_same_ranking(
            [i for i, _ in reasons],
            [c for _, c in reasons],
            [i for i, _ in single],
            [c for _, c in single],
            rtol=1e-4,
            atol=1e-7,
        )


@pytest.mark.parametrize("n", [0, 1, 3, 8])
def test_explain_ids_are_explain_manys_items_in_one_array(
    fitted: Recommender, user_items: csr_matrix, n: int
) -> None:
    row = csr_matrix(_row(user_items, 7).multiply(np.arange(1, N_ITEMS + 1, dtype=np.float32)))
    ids = np.arange(N_ITEMS)
    expected = [[i for i, _ in reasons] for reasons in fitted.explain_many(7, row, ids, n=n)]
    got = fitted.explain_ids(7, row, ids, n=n)
    assert got.shape == (N_ITEMS, n) and got.dtype == np.int64
    assert [[i for i in r if i >= 0] for r in got.tolist()] == expected
    assert all(r == sorted(r, key=lambda i: i < 0) for r in got.tolist())  # padding only at the end
    empty = csr_matrix((1, N_ITEMS), dtype=np.float32)
    assert (fitted.explain_ids(7, empty, ids[:2], n=n) == -1).all()


def test_recalculate_user_gives_a_finite_representation(
    fitted: Recommender, is_personal: bool, user_items: csr_matrix
) -> None:
    vec = fitted.recalculate_user(_row(user_items, 9))
    assert vec.ndim == 1 and np.isfinite(vec).all()
    if is_personal:
        assert np.abs(vec).sum() > 0


def test_fit_repairs_duplicates_and_negative_values_with_warnings(unfitted: Recommender) -> None:
    cols = np.array([1, 1, 2, 3, 0, 4])
    vals = np.array([1.0, 2.0, 1.0, -1.0, 1.0, 1.0], dtype=np.float32)
    # Build a CSR matrix that really holds the duplicate entry.
    dup = csr_matrix((vals, cols, np.array([0, 2, 3, 4, 6])), shape=(4, 5))
    with pytest.warns(UserWarning) as record:
        checked = check_user_items(dup)
    messages = " ".join(str(w.message) for w in record)
    assert "duplicate" in messages and "negative" in messages
    assert checked[0, 1] == pytest.approx(3.0) and checked[2, 3] == 0 and checked.nnz == 4
    with pytest.warns(UserWarning) as record:
        unfitted.fit(dup)
    words = {w for r in record for w in str(r.message).split()}
    # a model that accepts negative feedback (ALS, the hybrid) keeps the negative cell: no warning for it
    assert "duplicate" in words and ("negative" in words) != unfitted.accepts_negative
    assert unfitted.n_items == 5


def test_fit_rejects_bad_input(unfitted: Recommender) -> None:
    with pytest.raises(TypeError, match="sparse"):
        unfitted.fit(np.ones((3, 3)))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        unfitted.fit(csr_matrix((0, 5), dtype=np.float32))
    bad = csr_matrix(np.array([[1.0, np.nan]], dtype=np.float32))
    with pytest.raises(ValueError, match="NaN"):
        unfitted.fit(bad)


def test_explain_many_refuses_an_item_out_of_range(fitted: Recommender, user_items: csr_matrix) -> None:
    row = _row(user_items, 7)
    for bad in ([0, N_ITEMS], [-1, 2]):
        with pytest.raises(IndexError):
            fitted.explain_many(7, row, bad, n=3)
    assert fitted.explain_many(7, row, [], n=3) == []
