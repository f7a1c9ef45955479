"""Bestsellers over a recent window and new arrivals: the cold-start fallbacks, plus group helpers."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal, Self

import numpy as np
from scipy.sparse import csr_matrix

from recommender.base import NotFittedError, Recommender, top_k

__all__ = [
    "NewArrivals",
    "PopularityRecommender",
    "group_top",
    "price_bands",
    "quantile_edges",
]


def _datetime64(value: dt.datetime | np.datetime64 | str) -> np.datetime64:
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    converted: Any = value
    return np.datetime64(converted, "s")


def group_top(
    scores: np.ndarray, groups: np.ndarray, n: int, *, allowed: np.ndarray | None = None
) -> dict[Any, tuple[np.ndarray, np.ndarray]]:
    """Top-`n` items of every group (category, price band...) by `scores`.

    Parameters
    ----------
    scores : ndarray float, shape (n_items,)
        Higher is better; -inf or NaN never returned.
    groups : ndarray, shape (n_items,)
        Group label per item (codes or strings).
    n : int
    allowed : ndarray bool, shape (n_items,), optional

    Returns
    -------
    dict label -> (item_ids int32, scores float32), best first.
    """
    scores = np.asarray(scores, dtype=np.float32).copy()
    groups = np.asarray(groups)
    if groups.shape != scores.shape:
        raise ValueError(f"groups has shape {groups.shape}, scores {scores.shape}")
    scores[np.isnan(scores)] = -np.inf
    if allowed is not None:
        scores[~np.asarray(allowed, dtype=bool)] = -np.inf
    labels, inverse = np.unique(groups, return_inverse=True)
    # One sort for all groups: by group, then score descending, then item index.
    order = np.lexsort((np.arange(scores.size), -scores, inverse))
    starts = np.searchsorted(inverse[order], np.arange(labels.size))
    ends = np.append(starts[1:], order.size)
    out: dict[Any, tuple[np.ndarray, np.ndarray]] = {}
    for label, a, b in zip(labels.tolist(), starts, ends, strict=True):
        ids = order[a:b]
        ids = ids[scores[ids] > -np.inf][:n]
        out[label] = (ids.astype(np.int32), scores[ids])
    return out


def quantile_edges(prices: np.ndarray, n_bands: int = 3) -> np.ndarray:
    """Inner band edges splitting the finite `prices` into `n_bands` equally populated bands.

    Returns
    -------
    ndarray float64, shape (n_bands - 1,), increasing.
    """
    p = np.asarray(prices, dtype=np.float64)
    p = p[np.isfinite(p)]
    if n_bands < 1:
        raise ValueError("n_bands must be >= 1")
    if p.size == 0:
        return np.zeros(0)
    return np.quantile(p, np.arange(1, n_bands) / n_bands)


def price_bands(prices: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Band code per item: 0 below ``edges[0]``, ..., ``len(edges)`` at or above the last edge; -1 for NaN.

    Parameters
    ----------
    prices : ndarray float, shape (n_items,)
    edges : ndarray float, shape (n_bands - 1,), increasing

    Returns
    -------
    ndarray int64, shape (n_items,)
    """
    p = np.asarray(prices, dtype=np.float64)
    bands = np.digitize(p, np.asarray(edges, dtype=np.float64)).astype(np.int64)
    bands[~np.isfinite(p)] = -1
    return bands


class PopularityRecommender(Recommender):
    """Bestsellers: items ranked by purchases, the same list for everyone (the non-personal baseline).

    `fit` counts over the whole matrix; `fit_events` counts only interactions within the last
    `window_days` before `now`. ``count="buyers"`` counts distinct buyers per item, ``"weight"`` sums the
    interaction weights (or quantities).

    Parameters
    ----------
    window_days : float, optional
        Look-back window for `fit_events` (None = all time).
    count : {"buyers", "weight"}
    """

    name = "popularity"

    def __init__(
        self, window_days: float | None = 90.0, count: Literal["buyers", "weight"] = "buyers"
    ) -> None:
        if count not in ("buyers", "weight"):
            raise ValueError(f"count must be 'buyers' or 'weight', got {count!r}")
        if window_days is not None and not window_days > 0:
            raise ValueError(f"window_days must be > 0, got {window_days!r}")
        super().__init__(window_days=window_days, count=count)
        self.popularity: np.ndarray | None = None

    def _fit(self, user_items: csr_matrix) -> None:
        if self._params["count"] == "buyers":
            pop = np.diff(user_items.tocsc().indptr)
        else:
            pop = np.asarray(user_items.sum(axis=0)).ravel()
        self.popularity = np.asarray(pop, dtype=np.float32)

    def fit_events(
        self,
        user_idx: np.ndarray,
        item_idx: np.ndarray,
        timestamps: np.ndarray,
        *,
        n_items: int,
        now: dt.datetime | np.datetime64 | None = None,
        weights: np.ndarray | None = None,
    ) -> Self:
        """Count purchases within the window from per-interaction arrays.

        Parameters
        ----------
        user_idx : ndarray int, shape (n_rows,)
            Buyer positions (any ids that are equal for the same buyer; -1 rows are guests and count as
            distinct buyers of one unit each).
        item_idx : ndarray int, shape (n_rows,)
            Item positions in [0, n_items).
        timestamps : ndarray datetime64, shape (n_rows,)
        n_items : int
        now : datetime, optional
            End of the window; default the latest timestamp.
        weights : ndarray float, shape (n_rows,), optional
            Quantities or weights for ``count="weight"`` (default 1 per row).

        Returns
        -------
        self
        """
        users = np.asarray(user_idx, dtype=np.int64).reshape(-1)
        items = np.asarray(item_idx, dtype=np.int64).reshape(-1)
        ts = np.asarray(timestamps, dtype="datetime64[s]").reshape(-1)
        w = np.ones(items.size) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
        if not users.size == items.size == ts.size == w.size:
            raise ValueError("user_idx, item_idx, timestamps and weights must have equal lengths")
        if items.size and (items.min() < 0 or items.max() >= n_items):
            raise ValueError(f"item_idx out of range [0, {n_items})")
        keep = np.ones(items.size, dtype=bool)
        if self._params["window_days"] is not None and items.size:
            end = _datetime64(now) if now is not None else ts.max()
            start = end - np.timedelta64(int(round(self._params["window_days"] * 86400)), "s")
            keep = (ts > start) & (ts <= end)
        users, items, w = users[keep], items[keep], w[keep]
        if self._params["count"] == "buyers":
            guests = users < 0
            pairs = np.unique(users[~guests] * n_items + items[~guests])
            pop = np.bincount(pairs % n_items, minlength=n_items) + np.bincount(
                items[guests], minlength=n_items
            )
        else:
            pop = np.bincount(items, weights=w, minlength=n_items)
        self.popularity = np.asarray(pop, dtype=np.float32)
        self.n_items = n_items
        self.n_users = int(users.max()) + 1 if users.size else 0
        self._fitted = True
        return self

    def _pop(self) -> np.ndarray:
        if self.popularity is None:
            raise NotFittedError("PopularityRecommender is not fitted")
        return self.popularity

    def top(self, n: int = 10, *, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The `n` bestsellers among `allowed` items (shape (n_items,) bool); never an unsold item."""
        self._require_fitted()
        scores = self._pop().copy()
        scores[scores <= 0] = -np.inf
        mask = self._check_allowed(allowed)
        if mask is not None:
            scores[~mask] = -np.inf
        return top_k(scores, n)

    def top_per_group(
        self, groups: np.ndarray, n: int = 10, *, allowed: np.ndarray | None = None
    ) -> dict[Any, tuple[np.ndarray, np.ndarray]]:
        """Bestsellers per category or price band: `groups` holds a label per item, shape (n_items,)."""
        self._require_fitted()
        scores = self._pop().copy()
        scores[scores <= 0] = -np.inf
        return group_top(scores, groups, n, allowed=allowed)

    def _score_users(self, user_idxs: np.ndarray, user_items: csr_matrix, recalculate: bool) -> np.ndarray:
        return np.broadcast_to(self._pop(), (user_idxs.size, self.n_items))

    def _similar_scores(self, item_idx: int) -> np.ndarray:
        # A non-personal baseline has no notion of similarity: the bestsellers stand in.
        return self._pop()

    def explain(
        self, user_idx: int, user_items: csr_matrix, item_idx: int, n: int = 3
    ) -> list[tuple[int, float]]:
        """Always empty: bestsellers do not depend on the user's past items."""
        self._require_fitted()
        self._check_item(item_idx)
        return []

    def recalculate_user(self, user_items_row: csr_matrix) -> np.ndarray:
        """Empty array, shape (0,): the model keeps no user representation."""
        self._require_fitted()
        return np.zeros(0, dtype=np.float32)

    def _get_state(self) -> dict[str, np.ndarray]:
        return {"popularity": self._pop()}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.popularity = np.asarray(state["popularity"], dtype=np.float32)


class NewArrivals:
    """Items ranked by when they first appeared in the catalogue, newest first.

    Parameters
    ----------
    first_seen : ndarray datetime64, shape (n_items,)
        First-seen (or created_at) date per item; NaT items are never returned.
    """

    def __init__(self, first_seen: np.ndarray) -> None:
        self.first_seen = np.asarray(first_seen, dtype="datetime64[s]").reshape(-1)
        known = ~np.isnat(self.first_seen)
        # Score = days since the epoch (float32 keeps ~1 minute resolution around 2020).
        days = np.full(self.first_seen.size, -np.inf, dtype=np.float64)
        days[known] = self.first_seen[known].astype(np.int64) / 86400.0
        self.scores = days.astype(np.float32)

    @property
    def n_items(self) -> int:
        """Number of items."""
        return int(self.first_seen.size)

    def _masked(self, allowed: np.ndarray | None, since: dt.datetime | np.datetime64 | None) -> np.ndarray:
        scores = self.scores.copy()
        if allowed is not None:
            mask = np.asarray(allowed)
            if mask.dtype != np.bool_ or mask.shape != scores.shape:
                raise ValueError(f"allowed must be a bool array of shape {scores.shape}")
            scores[~mask] = -np.inf
        if since is not None:
            scores[~(self.first_seen >= _datetime64(since))] = -np.inf
        return scores

    def top(
        self,
        n: int = 10,
        *,
        allowed: np.ndarray | None = None,
        since: dt.datetime | np.datetime64 | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The `n` newest `allowed` items, optionally only those first seen at or after `since`.

        Returns
        -------
        (item_ids int32, scores float32 = days since 1970-01-01), newest first.
        """
        return top_k(self._masked(allowed, since), n)

    def top_per_group(
        self,
        groups: np.ndarray,
        n: int = 10,
        *,
        allowed: np.ndarray | None = None,
        since: dt.datetime | np.datetime64 | None = None,
    ) -> dict[Any, tuple[np.ndarray, np.ndarray]]:
        """Newest items per category or price band (`groups`: one label per item, shape (n_items,))."""
        return group_top(self._masked(allowed, since), groups, n)
