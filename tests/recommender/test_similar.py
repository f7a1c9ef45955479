"""SimilarItems: co-occurrence and factor neighbours, persistence; BLAS pinning."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.sparse import csr_matrix

from recommender.base import ArtifactError, NotFittedError
from recommender.collaborative import ALSRecommender, ItemItemRecommender
from recommender.popularity import PopularityRecommender
from recommender.similar import SimilarItems
from recommender.threads import blas_thread_counts, pin_blas_threads
from tests.recommender.conftest import N_ITEMS, checkerboard


@pytest.fixture(scope="module", params=["cooccurrence", "factors", "item_item"])
def similar(request: pytest.FixtureRequest) -> SimilarItems:
    user_items = checkerboard()
    if request.param == "cooccurrence":
        return SimilarItems(K=10, num_threads=1).fit(user_items)
    if request.param == "factors":
        return SimilarItems.from_model(ALSRecommender(factors=2, num_threads=1).fit(user_items))
    return SimilarItems.from_model(ItemItemRecommender(kind="cosine", num_threads=1).fit(user_items))


def test_neighbours_share_the_parity_and_exclude_the_anchor(similar: SimilarItems) -> None:
    for item in range(N_ITEMS):
        ids, scores = similar.similar(item, 5)
        assert item not in ids.tolist() and ids.size == 5
        assert np.all(ids % 2 == item % 2) and np.all(scores > 0) and np.all(np.diff(scores) <= 0)


def test_allowed_mask_and_basket(similar: SimilarItems) -> None:
    allowed = np.arange(N_ITEMS) >= 12
    ids, _ = similar.similar(2, N_ITEMS, allowed=allowed)
    assert ids.size and allowed[ids].all()
    ids, _ = similar.similar_to_many([2, 4], 6, allowed=allowed)
    assert ids.size and allowed[ids].all() and not {2, 4} & set(ids.tolist())
    assert np.all(ids % 2 == 0)
    with pytest.raises(ValueError, match="allowed"):
        similar.similar(2, 3, allowed=np.ones(3, dtype=bool))
    with pytest.raises(IndexError):
        similar.similar(N_ITEMS, 3)


def test_save_load_round_trip(similar: SimilarItems, tmp_path: Path) -> None:
    similar.save(tmp_path / "similar.npz")
    again = SimilarItems.load(tmp_path / "similar.npz")
    assert again.kind == similar.kind
    for item in (0, 5, 13):
        assert np.array_equal(again.similar(item, 5)[0], similar.similar(item, 5)[0])
    (tmp_path / "similar.npz").write_bytes(b"garbage")
    with pytest.raises(ArtifactError):
        SimilarItems.load(tmp_path / "similar.npz")


def test_unfitted_and_unsupported_models() -> None:
    with pytest.raises(NotFittedError):
        SimilarItems().similar(0, 3)
    with pytest.raises(TypeError, match="neither"):
        SimilarItems.from_model(PopularityRecommender().fit(csr_matrix(np.eye(3, dtype=np.float32))))
    with pytest.raises(ValueError, match="2-D"):
        SimilarItems.from_factors(np.ones(4))


def test_blas_is_pinned_to_one_thread_after_fit() -> None:
    ALSRecommender(factors=2, iterations=1, num_threads=1).fit(checkerboard())
    pin_blas_threads()  # idempotent
    counts = blas_thread_counts()
    assert counts and set(counts.values()) == {1}
