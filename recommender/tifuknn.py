"""TIFU-KNN: personalized item frequency with time decay, blended with the nearest customers' vectors.

Hu, He, Gao & Zhang (2020), "Modeling Personalized Item Frequency Information for Next-basket
Recommendation", SIGIR 2020. A customer's baskets (here: the distinct items of each purchase day) are cut,
oldest first, into ``group_count`` groups of consecutive baskets of (nearly) equal size. Within a group of
``s`` baskets the j-th (1-based) counts ``within_decay ** (s - j)`` and the group vector is their mean; the
customer vector (the *PIF*, personalized item frequency) is the mean over the ``g`` groups of the i-th
group's vector times ``group_decay ** (g - i)``. With fewer baskets than groups every basket is a group.
The prediction for a customer is ``alpha * own PIF + (1 - alpha) * mean PIF of the k nearest other
customers`` (Euclidean distance between PIF vectors), and the top items of it are recommended.

When groups do not divide evenly the later groups get one basket more (as the authors' code does). The
paper publishes one parameter set per data set (`PUBLISHED_PARAMS`) and no single default.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.sparse import csr_matrix

from recommender.base import NotFittedError
from recommender.next_purchase import distinct_purchases

if TYPE_CHECKING:  # imported where used: scikit-learn is a second of CPU to import
    from sklearn.neighbors import NearestNeighbors

__all__ = ["PUBLISHED_PARAMS", "TIFUKNN", "basket_positions"]

#: The parameters the paper reports per data set: neighbours k, within-group decay r_b, group decay r_g,
#: alpha and the number of groups m.
PUBLISHED_PARAMS: dict[str, dict[str, Any]] = {
    "tafeng": {"k": 300, "within_decay": 0.9, "group_decay": 0.7, "alpha": 0.7, "group_count": 7},
    "dunnhumby": {"k": 900, "within_decay": 0.9, "group_decay": 0.6, "alpha": 0.2, "group_count": 3},
    "instacart": {"k": 900, "within_decay": 0.9, "group_decay": 0.7, "alpha": 0.9, "group_count": 3},
    "valuedshopper": {"k": 300, "within_decay": 1.0, "group_decay": 0.6, "alpha": 0.7, "group_count": 7},
}


def basket_positions(basket_user: np.ndarray, n_users: int) -> tuple[np.ndarray, np.ndarray]:
    """Each basket's 0-based position in its customer's history and the customer's basket count.

    Parameters
    ----------
    basket_user : ndarray of int, shape (n_baskets,)
        Customer row of each basket, sorted so that a customer's baskets are adjacent and oldest first.
    n_users : int

    Returns
    -------
    position : ndarray int64, shape (n_baskets,)
    count : ndarray int64, shape (n_baskets,), the basket's customer's number of baskets
    """
    u = np.asarray(basket_user, dtype=np.int64)
    counts = np.bincount(u, minlength=n_users)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    return np.arange(u.size) - starts[u], counts[u]


def _basket_weights(position: np.ndarray, count: np.ndarray, m: int, rb: float, rg: float) -> np.ndarray:
    """Weight of every basket in its customer's PIF vector (module docstring), shape (n_baskets,)."""
    g = np.minimum(count, m)  # groups
    base = count // g  # baskets in a short group
    extra = count - base * g  # groups with one basket more: the last ones
    short = g - extra
    in_short = position < short * base
    group = np.where(in_short, position // base, short + (position - short * base) // (base + 1))
    size = np.where(in_short, base, base + 1)
    start = np.where(in_short, group * base, short * base + (group - short) * (base + 1))
    j = position - start  # 0-based within the group
    return rb ** (size - 1 - j).astype(np.float64) / size * rg ** (g - 1 - group).astype(np.float64) / g


class TIFUKNN:
    """TIFU-KNN (module docstring).

    Parameters
    ----------
    k : int
        Nearest customers (other than the customer) whose PIF vectors are averaged.
    within_decay, group_decay : float in (0, 1]
        r_b and r_g of the paper.
    alpha : float in [0, 1]
        Weight of the customer's own PIF vector against the neighbours'.
    group_count : int
        m, the number of basket groups.
    """

    def __init__(
        self,
        k: int = 300,
        within_decay: float = 0.9,
        group_decay: float = 0.7,
        alpha: float = 0.7,
        group_count: int = 7,
    ) -> None:
        if k < 1 or group_count < 1:
            raise ValueError("k and group_count must be >= 1")
        if not (0 < within_decay <= 1 and 0 < group_decay <= 1 and 0 <= alpha <= 1):
            raise ValueError("decays must be in (0, 1] and alpha in [0, 1]")
        self.params: dict[str, Any] = {
            "k": int(k),
            "within_decay": float(within_decay),
            "group_decay": float(group_decay),
            "alpha": float(alpha),
            "group_count": int(group_count),
        }
        self.pif: csr_matrix | None = None
        self._nn: NearestNeighbors | None = None

    def fit(self, user_idxs: Any, item_idxs: Any, days: Any, n_users: int, n_items: int) -> TIFUKNN:
        """Build every customer's PIF vector from purchases; returns self.

        `user_idxs`, `item_idxs` and `days` (int arrays of shape (n_events,)) give the customer row, item
        column and day number of each purchase; a customer's purchases of one day are one basket, in
        which an item counts once. Rows are in [0, n_users), columns in [0, n_items).
        """
        p = self.params
        # distinct (user, item, day) -> sorted by user, day, item
        u, i, d = distinct_purchases(user_idxs, item_idxs, days, n_users, n_items)
        order = np.lexsort((i, d, u))
        u, i, d = u[order], i[order], d[order]
        new_basket = np.r_[True, (u[1:] != u[:-1]) | (d[1:] != d[:-1])] if u.size else u > 0
        basket = np.cumsum(new_basket) - 1
        position, count = basket_positions(u[new_basket], n_users)
        weight = _basket_weights(position, count, p["group_count"], p["within_decay"], p["group_decay"])
        pif = csr_matrix((weight[basket], (u, i)), shape=(n_users, n_items))
        pif.sum_duplicates()
        self.pif = pif
        from sklearn.neighbors import NearestNeighbors

        self._nn = NearestNeighbors(n_neighbors=min(p["k"] + 1, max(n_users, 1)), algorithm="brute")
        self._nn.fit(pif)
        return self

    def neighbour_scores(self, user_idxs: Any) -> np.ndarray:
        """Mean PIF vector of each customer's k nearest other customers, shape (n, n_items)."""
        if self.pif is None or self._nn is None:
            raise NotFittedError("TIFUKNN is not fitted: call fit() first")
        users = np.asarray(user_idxs, dtype=np.int64).reshape(-1)
        out = np.zeros((users.size, self.pif.shape[1]))
        if users.size == 0 or self.pif.shape[0] < 2:
            return out
        _, idx = self._nn.kneighbors(self.pif[users])
        k = self.params["k"]
        for r, (row, user) in enumerate(zip(idx, users.tolist(), strict=True)):
            # the customer is their own nearest neighbour unless another one has the same vector
            others = row[row != user][:k]
            out[r] = np.asarray(self.pif[others].sum(axis=0)).ravel() / others.size
        return out

    def scores(self, user_idxs: Any) -> np.ndarray:
        """``alpha * own PIF + (1 - alpha) * neighbours' mean PIF``, shape (n, n_items)."""
        alpha = self.params["alpha"]
        users = np.asarray(user_idxs, dtype=np.int64).reshape(-1)
        neighbours = self.neighbour_scores(users)
        assert self.pif is not None
        return alpha * self.pif[users].toarray() + (1.0 - alpha) * neighbours
