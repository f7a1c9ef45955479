"""The served next-purchase ranking: a customer's own items by a blend of timing, frequency and neighbours.

Each of a customer's items gets the features below, each divided by its largest value over the customer's
items (so every feature is in [0, 1] per customer), and the score is their weighted sum (`WEIGHTS`):

``chance``
    The repurchase-interval model's chance of buying the item again within the horizon
    (`recommender.next_purchase.RepurchaseIntervals`).
``lines``
    Recency-weighted frequency: the customer's order lines of the item, each decayed with a 365-day
    half-life (TIFU-KNN's personal item frequency idea, with time decay instead of basket groups).
``days``
    The same over distinct purchase days with a 60-day half-life (recent habits).
``recent``
    exp(-days since the customer last bought the item / 30).
``trend``
    The item's distinct buyers over the last 14 days against its 90-day rate (items in season), for
    items with at least 5 buyers in 90 days.
``neighbours``
    TIFU-KNN's neighbour part: the mean personalized item frequency of the customer's nearest customers
    (`recommender.tifuknn.TIFUKNN`, the paper's Ta-Feng parameters).

The weights were chosen by coordinate ascent on a validation window that ends where the test window of
``giftrec evaluate`` begins (`bench/tune_next_purchase.py`; docs/quality.md states the procedure).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.sparse import csr_matrix

from recommender.base import NotFittedError
from recommender.next_purchase import NextPurchaseModel
from recommender.tifuknn import PUBLISHED_PARAMS, TIFUKNN

__all__ = ["FEATURES", "WEIGHTS", "RepeatRanker", "recent_buyers"]

FEATURES = ("chance", "lines", "days", "recent", "trend", "neighbours")
#: Chosen on the validation window (module docstring).
WEIGHTS: dict[str, float] = {
    "chance": 1.0,
    "lines": 0.5,
    "days": 0.0,
    "recent": 0.1,
    "trend": 0.3,
    "neighbours": 0.5,
}
_TREND_MIN_BUYERS = 5


class RepeatRanker:
    """Ranks the items a customer bought before (module docstring).

    Parameters
    ----------
    horizon : float
        Days ahead the repurchase chances refer to.
    weights : mapping feature -> weight, optional
        Default `WEIGHTS`; missing features weigh 0.
    """

    def __init__(self, horizon: float = 30.0, weights: dict[str, float] | None = None) -> None:
        chosen = dict(WEIGHTS if weights is None else weights)
        unknown = set(chosen) - set(FEATURES)
        if unknown:
            raise ValueError(f"unknown features {sorted(unknown)}")
        if any(not np.isfinite(w) or w < 0 for w in chosen.values()):
            raise ValueError("weights must be finite and >= 0")
        self.weights = {f: float(chosen.get(f, 0.0)) for f in FEATURES}
        self.model = NextPurchaseModel(horizon=horizon)
        self.tifu = TIFUKNN(**PUBLISHED_PARAMS["tafeng"])
        self._own: dict[str, csr_matrix] = {}
        self._trend = np.empty(0)

    @property
    def is_fitted(self) -> bool:
        return bool(self._own)

    def fit(
        self,
        user_idxs: Any,
        item_idxs: Any,
        days: Any,
        lines: Any,
        n_users: int,
        n_items: int,
        now: int,
    ) -> RepeatRanker:
        """Fit on distinct (customer, item, day) purchases.

        Parameters
        ----------
        user_idxs, item_idxs, days : ndarray of int, shape (n,)
            One entry per customer, item and purchase day (none after `now`).
        lines : ndarray of int, shape (n,)
            Order lines behind each entry (>= 1).
        n_users, n_items, now : int

        Returns
        -------
        self
        """
        u = np.asarray(user_idxs, dtype=np.int64).reshape(-1)
        i = np.asarray(item_idxs, dtype=np.int64).reshape(-1)
        d = np.asarray(days, dtype=np.int64).reshape(-1)
        n_lines = np.asarray(lines, dtype=np.float64).reshape(-1)
        if n_lines.shape != u.shape or (n_lines.size and n_lines.min() < 1):
            raise ValueError("lines must have one count >= 1 per purchase")
        self.model.fit(u, i, d, n_users, n_items, now)
        self.tifu.fit(u, i, d, n_users, n_items)
        age = (now - d).astype(np.float64)
        shape = (n_users, n_items)
        own = {
            "lines": csr_matrix((n_lines * 0.5 ** (age / 365.0), (u, i)), shape=shape),
            "days": csr_matrix((0.5 ** (age / 60.0), (u, i)), shape=shape),
        }
        for m in own.values():
            m.sum_duplicates()
        scored = self.model.score_all()
        own["chance"] = csr_matrix((scored["chance"], (scored["user"], scored["item"])), shape=shape)
        recent = np.exp(-(now - scored["last"]) / 30.0)
        own["recent"] = csr_matrix((recent, (scored["user"], scored["item"])), shape=shape)
        self._own = own
        buyers_14 = recent_buyers(u, i, d, n_items, now - 14)
        buyers_90 = recent_buyers(u, i, d, n_items, now - 90)
        rate = buyers_14 / np.maximum(buyers_90 * 14.0 / 90.0, 1e-9)
        self._trend = np.where(buyers_90 >= _TREND_MIN_BUYERS, rate, 0.0)
        return self

    def features(self, user_idx: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The customer's items (ascending, shape (m,)) and each feature over them, scaled to [0, 1]."""
        if not self._own:
            raise NotFittedError("RepeatRanker is not fitted: call fit() first")
        row = self._own["days"][user_idx]
        items = np.sort(row.indices).astype(np.int64)
        out: dict[str, np.ndarray] = {}
        for name in ("chance", "lines", "days", "recent"):
            out[name] = self._own[name][user_idx].toarray().ravel()[items]
        out["trend"] = self._trend[items]
        if self.weights["neighbours"] > 0 and items.size:
            out["neighbours"] = self.tifu.neighbour_scores([user_idx])[0][items]
        else:
            out["neighbours"] = np.zeros(items.size)
        for name, values in out.items():
            peak = float(values.max(initial=0.0))
            out[name] = values / peak if peak > 0 else values
        return items, out

    def rank(
        self, user_idx: int, n: int, *, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The customer's own items best first: ``(item_idxs, scores)``, at most `n`, only `allowed` ones.

        Ties go to the lower item index.
        """
        items, feats = self.features(user_idx)
        score = np.zeros(items.size)
        for name, weight in self.weights.items():
            if weight:
                score += weight * feats[name]
        if allowed is not None:
            keep = np.asarray(allowed, dtype=bool)[items]
            items, score = items[keep], score[keep]
        order = np.lexsort((items, -score))[: max(n, 0)]
        return items[order], score[order]


def recent_buyers(u: np.ndarray, i: np.ndarray, d: np.ndarray, n_items: int, since: int) -> np.ndarray:
    """Distinct customers per item with a purchase after day `since`, shape (n_items,) float."""
    recent = d > since
    pairs = np.unique(u[recent] * n_items + i[recent])
    return np.bincount(pairs % n_items, minlength=n_items).astype(np.float64)
