"""HybridRecommender: repeat and discovery modes, blend weights, persistence, the Recommender contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.sparse import csr_matrix

from recommender.base import NotFittedError, Recommender
from recommender.hybrid import HybridRecommender
from tests.recommender.conftest import checkerboard


def _model(**params: object) -> HybridRecommender:
    return HybridRecommender(factors=2, regularization=0.01, iterations=15, num_threads=1, **params)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def user_items() -> csr_matrix:
    return checkerboard()


def test_repeat_mode_ranks_the_customers_own_favourites_first(user_items: csr_matrix) -> None:
    model = _model(repeat=True, repeat_weight=1.0, cf_weight=0.1, popularity_weight=0.1).fit(user_items)
    row = user_items[[0]].copy()
    favourite = int(row.indices[0])
    row[0, favourite] = 5.0  # bought five times
    ids, scores = model.recommend(0, row, 3, exclude_seen=False)
    assert ids[0] == favourite
    assert np.all(np.diff(scores) <= 0)


def test_discovery_mode_recommends_unseen_items_of_the_users_kind(user_items: csr_matrix) -> None:
    model = _model(repeat=False, cf_weight=1.0, popularity_weight=0.0).fit(user_items)
    for user in (0, 1):
        ids, _ = model.recommend(user, user_items[[user]], 3)
        assert not set(ids.tolist()) & set(user_items[user].indices.tolist())
        assert all(i % 2 == user % 2 for i in ids), ids  # checkerboard: same parity as the user


def test_popularity_weight_follows_the_given_popularity(user_items: csr_matrix) -> None:
    pop = np.zeros(user_items.shape[1], dtype=np.float32)
    pop[5] = 10.0
    model = _model(repeat=False, cf_weight=0.0, popularity_weight=1.0).fit(user_items, item_popularity=pop)
    empty = csr_matrix((1, user_items.shape[1]), dtype=np.float32)
    ids, _ = model.recommend(-1, empty, 1)
    assert ids.tolist() == [5]
    with pytest.raises(ValueError, match="item_popularity"):
        _model().fit(user_items, item_popularity=np.ones(3))


def test_with_blend_shares_the_fit_and_changes_only_the_weights(user_items: csr_matrix) -> None:
    model = _model(repeat=True).fit(user_items)
    discovery = model.with_blend(repeat=False, popularity_weight=0.0)
    assert discovery.als is model.als and discovery.is_fitted
    assert discovery.params["repeat"] is False and model.params["repeat"] is True
    with pytest.raises(ValueError, match="not blend parameters"):
        model.with_blend(factors=8)


def test_save_and_load_give_the_same_scores(user_items: csr_matrix, tmp_path: Path) -> None:
    model = _model(repeat=True, cf_weight=0.5, popularity_weight=0.2).fit(user_items)
    model.save(tmp_path / "m")
    loaded = Recommender.load(tmp_path / "m")
    assert isinstance(loaded, HybridRecommender)
    rows = user_items[:5]
    a = model.recommend_batch(np.arange(5), rows, 4, exclude_seen=False)
    b = loaded.recommend_batch(np.arange(5), rows, 4, exclude_seen=False)
    assert np.array_equal(a[0], b[0]) and np.allclose(a[1], b[1])


def test_explain_names_the_repeat_item_then_als_contributions(user_items: csr_matrix) -> None:
    model = _model(repeat=True).fit(user_items)
    row = user_items[[0]]
    own = int(row.indices[0])
    reasons = model.explain(0, row, own, n=3)
    assert reasons[0][0] == own and len(reasons) <= 3
    assert all(weight > 0 for _, weight in reasons)


def test_unfitted_model_raises(user_items: csr_matrix) -> None:
    with pytest.raises(NotFittedError):
        _model().recommend(0, user_items[[0]], 3)
    with pytest.raises(ValueError, match="cf_weight"):
        HybridRecommender(cf_weight=-1.0)


def test_a_fresh_process_loads_a_saved_hybrid_without_warnings(tmp_path, user_items):
    """Regression: load_model did not import recommender.hybrid, so a serving process that had not
    imported it failed with "unknown model name 'hybrid'"; loading also has to pin BLAS itself."""
    import subprocess
    import sys

    from recommender.hybrid import HybridRecommender

    model = HybridRecommender(factors=2, iterations=3, num_threads=1).fit(user_items)
    model.save(tmp_path / "hybrid")
    code = (
        "import sys; from pathlib import Path; from recommender.artifacts import load_model; "
        "m = load_model(Path(sys.argv[1])); print(m.name, m.n_items)"
    )
    out = subprocess.run(
        [sys.executable, "-W", "error", "-c", code, str(tmp_path / "hybrid")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["hybrid", str(user_items.shape[1])]


def test_one_term_alone_is_a_baseline_and_the_parts_survive_save_and_load(
    user_items: csr_matrix, tmp_path: Path
) -> None:
    from recommender.hybrid import blend_scores

    n = user_items.shape[1]
    recent, older = np.arange(n, dtype=np.float32), np.arange(n, 0, -1).astype(np.float32)
    model = _model(knn_k=5, popularity_days=7.0).fit(user_items, item_popularity={7.0: recent, 90.0: older})
    users = np.arange(user_items.shape[0])
    # Popularity alone, over either window: every customer gets the window's bestsellers.
    for days, pop in ((7.0, recent), (90.0, older)):
        only = model.with_blend(repeat_weight=0.0, cf_weight=0.0, popularity_weight=1.0, popularity_days=days)
        ids, _ = only.recommend(0, user_items[[0]], 3, exclude_seen=False)
        assert ids.tolist() == np.argsort(-pop, kind="stable")[:3].tolist()
    # item-kNN alone ranks as the kNN part does; blend_scores is what the model scores with.
    knn = model.with_blend(repeat_weight=0.0, cf_weight=0.0, popularity_weight=0.0, knn_weight=1.0)
    terms = model.blend_terms(users, user_items)
    scores = knn._score_users(users, user_items, False)
    np.testing.assert_array_equal(scores, blend_scores(terms, knn.params))
    assert model.knn is not None
    np.testing.assert_allclose(
        terms.knn,
        model.knn._score_users(users, user_items, False)
        / np.maximum(model.knn._score_users(users, user_items, False).max(axis=1, keepdims=True), 1e-12),
    )
    knn.save(tmp_path / "m")
    again = Recommender.load(tmp_path / "m")
    np.testing.assert_array_equal(again._score_users(users, user_items, False), scores)
    assert again.with_blend(popularity_days=90.0).popularity.tolist() == older.tolist()  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="knn_k > 0"):
        _model(knn_weight=0.5)
    with pytest.raises(ValueError, match="popularity_days=30.0"):
        _model().fit(user_items, item_popularity={7.0: recent})
