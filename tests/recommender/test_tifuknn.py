"""TIFU-KNN on a hand-computed case: basket groups, both decays, the neighbour blend."""

from __future__ import annotations

import numpy as np
import pytest

from recommender.base import NotFittedError
from recommender.tifuknn import PUBLISHED_PARAMS, TIFUKNN

# (customer, item, day). Customer 0: baskets {0} on day 1, {0, 1} on day 2 (item 0 on two lines), {2} on
# day 3. Customer 1: {3}. Customer 2: {1} on day 1, {1, 3} on day 5.
EVENTS = np.array(
    [(0, 0, 1), (0, 0, 2), (0, 0, 2), (0, 1, 2), (0, 2, 3), (1, 3, 4), (2, 1, 1), (2, 1, 5), (2, 3, 5)]
)


def fitted(**params: float) -> TIFUKNN:
    model = TIFUKNN(
        **{"k": 1, "within_decay": 0.5, "group_decay": 0.5, "alpha": 0.5, "group_count": 2, **params}
    )
    return model.fit(EVENTS[:, 0], EVENTS[:, 1], EVENTS[:, 2], n_users=3, n_items=4)


def test_pif_vectors_decay_within_and_between_groups() -> None:
    # Customer 0: 3 baskets in 2 groups, the later one longer: [b1], [b2, b3].
    #   b1: 0.5**0 / 1 * 0.5**1 / 2 = 0.25; b2: 0.5**1 / 2 * 0.5**0 / 2 = 0.125; b3: 0.5**0 / 2 / 2 = 0.25
    # Customer 2: 2 baskets, one per group: 0.5 / 2 = 0.25 and 1 / 2 = 0.5. A repeated line counts once.
    pif = fitted().pif
    assert pif is not None
    np.testing.assert_allclose(
        pif.toarray(), [[0.375, 0.125, 0.25, 0.0], [0.0, 0.0, 0.0, 1.0], [0.0, 0.75, 0.0, 0.5]]
    )


def test_scores_blend_own_vector_with_the_nearest_other_customer() -> None:
    # Squared distances from customer 0: to 1, 1.21875; to 2, 0.84375 -> the neighbour is customer 2.
    scores = fitted().scores([0])
    np.testing.assert_allclose(scores, [[0.1875, 0.4375, 0.125, 0.25]])
    # alpha = 1 is the customer's own vector alone; alpha = 0 the neighbour's alone.
    np.testing.assert_allclose(fitted(alpha=1.0).scores([0]), [[0.375, 0.125, 0.25, 0.0]])
    np.testing.assert_allclose(fitted(alpha=0.0).scores([0]), [[0.0, 0.75, 0.0, 0.5]])


def test_fewer_baskets_than_groups_makes_each_basket_a_group() -> None:
    # 3 baskets and 7 groups: groups [b1], [b2], [b3] with group decay 0.5**2, 0.5, 1, divided by 3.
    pif = fitted(group_count=7).pif
    assert pif is not None
    np.testing.assert_allclose(pif.toarray()[0], [(0.25 + 0.5) / 3, 0.5 / 3, 1 / 3, 0.0])


def test_bad_parameters_and_unfitted_use_raise() -> None:
    with pytest.raises(ValueError):
        TIFUKNN(within_decay=0.0)
    with pytest.raises(ValueError):
        TIFUKNN(alpha=1.5)
    with pytest.raises(NotFittedError):
        TIFUKNN().scores([0])


def test_published_parameters_are_the_papers() -> None:
    assert PUBLISHED_PARAMS["tafeng"] == {
        "k": 300,
        "within_decay": 0.9,
        "group_decay": 0.7,
        "alpha": 0.7,
        "group_count": 7,
    }
    assert PUBLISHED_PARAMS["dunnhumby"]["alpha"] == 0.2
