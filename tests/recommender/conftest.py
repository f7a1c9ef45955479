"""Known-answer matrices and model factories shared by the recommender tests."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from scipy.sparse import csr_matrix

from recommender.base import Recommender
from recommender.collaborative import ALSRecommender, BPRRecommender, ItemItemRecommender
from recommender.hybrid import HybridRecommender
from recommender.popularity import PopularityRecommender

N_USERS = 60
N_ITEMS = 24
ITEMS_PER_USER = 6


def checkerboard(
    n_users: int = N_USERS, n_items: int = N_ITEMS, per_user: int = ITEMS_PER_USER
) -> csr_matrix:
    """implicit's checkerboard idea, sparsified: even users bought `per_user` random even items, odd users
    odd items. A personal model must recommend each user unseen items of the user's own parity."""
    rng = np.random.default_rng(7)
    rows, cols = [], []
    for u in range(n_users):
        rows += [u] * per_user
        cols += rng.choice(np.arange(u % 2, n_items, 2), per_user, replace=False).tolist()
    data = np.ones(len(rows), dtype=np.float32)
    return csr_matrix((data, (rows, cols)), shape=(n_users, n_items))


# name -> (factory, is_personal). Small, single-threaded, seeded models: deterministic and fast.
MODEL_FACTORIES: dict[str, tuple[Callable[[], Recommender], bool]] = {
    "als": (lambda: ALSRecommender(factors=2, regularization=0.01, iterations=15, num_threads=1), True),
    "bpr": (lambda: BPRRecommender(factors=2, learning_rate=0.05, iterations=200, num_threads=1), True),
    "item_item_bm25": (lambda: ItemItemRecommender(kind="bm25", K=50, num_threads=1), True),
    "item_item_cosine": (lambda: ItemItemRecommender(kind="cosine", K=50, num_threads=1), True),
    "popularity": (lambda: PopularityRecommender(window_days=None, count="buyers"), False),
    "hybrid": (lambda: HybridRecommender(factors=2, regularization=0.01, iterations=15, num_threads=1), True),
}


@pytest.fixture(scope="session")
def user_items() -> csr_matrix:
    return checkerboard()


@pytest.fixture(params=sorted(MODEL_FACTORIES))
def model_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def unfitted(model_name: str) -> Recommender:
    return MODEL_FACTORIES[model_name][0]()


@pytest.fixture
def fitted(model_name: str, user_items: csr_matrix) -> Recommender:
    return MODEL_FACTORIES[model_name][0]().fit(user_items)


@pytest.fixture
def is_personal(model_name: str) -> bool:
    return MODEL_FACTORIES[model_name][1]
