"""The blended model giftrec serves: the customer's own repeat purchases + ALS + recent bestsellers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

import numpy as np
from scipy.sparse import csr_matrix

from recommender.base import NotFittedError, Recommender, check_user_items
from recommender.collaborative import ALSRecommender

__all__ = ["HybridRecommender"]

_BLEND_PARAMS = ("repeat", "repeat_weight", "cf_weight", "popularity_weight")


def _row_max_normalised(scores: np.ndarray) -> np.ndarray:
    """Divide each row by its largest absolute value (rows of zeros stay zero)."""
    peak = np.abs(scores).max(axis=1, keepdims=True)
    return scores / np.maximum(peak, np.float32(1e-12))


class HybridRecommender(Recommender):
    """Score = repeat_weight * own + cf_weight * ALS + popularity_weight * recent popularity.

    Each term is scaled to [0, 1] (per user for ``own`` and ALS, globally for popularity) before blending:

    ``own``
        The user's own row of `user_items`. Built with a time-decay half-life (see
        `recommender.interactions.build_user_items`) it is a recency-weighted purchase frequency: what a
        customer bought often and lately is what they buy again. Used only with ``repeat=True``.
    ALS
        `ALSRecommender` fitted on the same matrix: ranks both repeats and items new to the customer.
    popularity
        Recent bestsellers (passed to `fit`, e.g. distinct buyers in the last 30 days): carries the
        season, which a year of history smooths away.

    With ``repeat=True`` (the "next likely purchase" task) call ``recommend(..., exclude_seen=False)``;
    with ``repeat=False`` (discovery: things the customer never bought) the own term is off and the usual
    ``exclude_seen=True`` drops bought items.

    Parameters
    ----------
    repeat : bool
        Include the customer's own purchases in the score.
    repeat_weight, cf_weight, popularity_weight : float
        Blend weights (>= 0).
    factors, regularization, alpha, iterations, random_state, num_threads, use_gpu
        Passed to `ALSRecommender`.
    """

    name = "hybrid"
    #: Negative cells reach ALS as negative feedback (`ALSRecommender`); the popularity default counts only
    #: positive cells.
    accepts_negative = True

    def __init__(
        self,
        repeat: bool = True,
        repeat_weight: float = 1.0,
        cf_weight: float = 0.3,
        popularity_weight: float = 0.3,
        factors: int = 64,
        regularization: float = 0.1,
        alpha: float = 2.0,
        iterations: int = 15,
        random_state: int = 42,
        num_threads: int = 0,
        use_gpu: bool = False,
    ) -> None:
        for key, value in (
            ("repeat_weight", repeat_weight),
            ("cf_weight", cf_weight),
            ("popularity_weight", popularity_weight),
        ):
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"{key} must be a finite number >= 0, got {value!r}")
        super().__init__(
            repeat=bool(repeat),
            repeat_weight=float(repeat_weight),
            cf_weight=float(cf_weight),
            popularity_weight=float(popularity_weight),
            factors=factors,
            regularization=regularization,
            alpha=alpha,
            iterations=iterations,
            random_state=random_state,
            num_threads=num_threads,
            use_gpu=use_gpu,
        )
        self.als: ALSRecommender | None = None
        self.popularity: np.ndarray | None = None
        self._pending_popularity: np.ndarray | None = None
        self._pop_term: tuple[np.ndarray, np.ndarray | None] | None = None

    def _als_params(self) -> dict[str, Any]:
        return {k: v for k, v in self._params.items() if k not in _BLEND_PARAMS}

    def fit(self, user_items: csr_matrix, *, item_popularity: np.ndarray | None = None) -> Self:
        """Train ALS on `user_items` and keep the popularity prior.

        Parameters
        ----------
        user_items : csr_matrix, shape (n_users, n_items)
            Users are rows; values are confidences (ideally recency-weighted purchase counts).
        item_popularity : ndarray, shape (n_items,), optional
            Recent popularity of each item (e.g. distinct buyers over the last 30 days, guests included).
            Default: the number of users with a non-zero cell in `user_items`.

        Returns
        -------
        self
        """
        if item_popularity is not None:
            pop = np.asarray(item_popularity, dtype=np.float32).reshape(-1)
            if pop.shape != (user_items.shape[1],):
                raise ValueError(f"item_popularity has shape {pop.shape}, expected ({user_items.shape[1]},)")
            if not np.all(np.isfinite(pop)) or (pop < 0).any():
                raise ValueError("item_popularity must be finite and >= 0")
            self._pending_popularity = pop
        else:
            self._pending_popularity = None
        return super().fit(user_items)

    def _fit(self, user_items: csr_matrix) -> None:
        pop = self._pending_popularity
        self._pending_popularity = None
        if pop is None:
            pop = np.asarray((user_items > 0).sum(axis=0), dtype=np.float32).reshape(-1)
        self.als = ALSRecommender(**self._als_params()).fit(user_items)
        self.popularity = pop

    def with_blend(self, **blend: Any) -> HybridRecommender:
        """A copy with other blend parameters (`_BLEND_PARAMS`) sharing this model's fitted ALS.

        Cheap: no refit. Used to tune the weights and to serve both the repeat and the discovery mode
        from one training run.
        """
        unknown = set(blend) - set(_BLEND_PARAMS)
        if unknown:
            raise ValueError(f"not blend parameters: {sorted(unknown)}")
        params = {**self._params, **blend}
        other = type(self)(**params)
        other.als, other.popularity = self.als, self.popularity
        other.n_users, other.n_items, other._fitted = self.n_users, self.n_items, self._fitted
        return other

    def _parts(self) -> tuple[ALSRecommender, np.ndarray]:
        if self.als is None or self.popularity is None:
            raise NotFittedError("HybridRecommender is not fitted")
        return self.als, self.popularity

    def _score_users(self, user_idxs: np.ndarray, user_items: csr_matrix, recalculate: bool) -> np.ndarray:
        als, pop = self._parts()
        p = self._params
        scores = np.zeros((user_idxs.size, self.n_items), dtype=np.float32)
        if p["cf_weight"] > 0:
            cf = als._score_users(user_idxs, user_items, recalculate)
            scores += np.float32(p["cf_weight"]) * _row_max_normalised(np.asarray(cf, dtype=np.float32))
        pop_term = self._popularity_term()
        if pop_term is not None:
            scores += pop_term[None, :]
        if p["repeat"] and p["repeat_weight"] > 0:
            own = np.asarray(user_items.toarray(), dtype=np.float32)
            scores += np.float32(p["repeat_weight"]) * _row_max_normalised(own)
        return scores

    def _popularity_term(self) -> np.ndarray | None:
        """popularity_weight * popularity / max(popularity) (float32), computed once; None when off."""
        _, pop = self._parts()
        cached = self._pop_term
        if cached is not None and cached[0] is pop:
            return cached[1]
        weight = self._params["popularity_weight"]
        term = None
        if weight > 0 and pop.size and pop.max() > 0:
            term = np.float32(weight / pop.max()) * pop
            term.setflags(write=False)
        self._pop_term = (pop, term)
        return term

    def _similar_scores(self, item_idx: int) -> np.ndarray:
        als, _ = self._parts()
        return als._similar_scores(item_idx)

    def recalculate_user(self, user_items_row: csr_matrix) -> np.ndarray:
        """ALS factors folded in from a fresh row, shape (n_factors,)."""
        als, _ = self._parts()
        return als.recalculate_user(user_items_row)

    def explain(
        self, user_idx: int, user_items: csr_matrix, item_idx: int, n: int = 3
    ) -> list[tuple[int, float]]:
        """Past items behind the score for `item_idx`: the item itself when it is a repeat, then ALS's.

        Parameters
        ----------
        user_idx : int
        user_items : csr_matrix, shape (1, n_items)
        item_idx : int
        n : int

        Returns
        -------
        list of (past item_idx, contribution), largest first within each source, positive only.
        """
        self._require_fitted()
        self._check_item(item_idx)
        als, _ = self._parts()
        row = check_user_items(user_items, n_items=self.n_items)[:1]
        out: list[tuple[int, float]] = []
        if self._params["repeat"] and n > 0:
            own = float(row[0, int(item_idx)])
            if own > 0:
                out.append((int(item_idx), own))
        for past, weight in als.explain(user_idx, row, item_idx, n):
            if len(out) >= n:
                break
            if past != item_idx:
                out.append((past, weight))
        return out[:n]

    def explain_many(
        self, user_idx: int, user_items: csr_matrix, item_idxs: Sequence[int] | np.ndarray, n: int = 3
    ) -> list[list[tuple[int, float]]]:
        """`explain` for several items, sharing ALS's one factorisation (`ALSRecommender.explain_many`).

        The per-item fallback of the base class ran implicit's ``explain`` once per item: about 2 ms each,
        20 ms of a 22 ms fallback-chain call for 10 picks (bench/bench_recommend.py, full UCI data).

        Returns
        -------
        list (one per item, in the order of `item_idxs`) of lists of (past item_idx, contribution).
        """
        self._require_fitted()
        als, _ = self._parts()
        items = np.asarray(item_idxs, dtype=np.int64).reshape(-1)
        for item in items.tolist():
            self._check_item(item)
        row = check_user_items(user_items, n_items=self.n_items)
        if row.shape[0] != 1:
            row = row[:1]
        cf = als.explain_many(user_idx, row, items, n)
        own = np.zeros(items.size)
        if self._params["repeat"] and n > 0 and row.nnz:
            # row[0, item] for every item at once (the row is canonical: sorted column indices)
            at = np.minimum(np.searchsorted(row.indices, items), row.nnz - 1)
            own = np.where(row.indices[at] == items, row.data[at], 0).astype(np.float64)
        out: list[list[tuple[int, float]]] = []
        for item, value, reasons in zip(items.tolist(), own.tolist(), cf, strict=True):
            first = [(item, value)] if value > 0 else []
            out.append((first + [(past, weight) for past, weight in reasons if past != item])[:n])
        return out

    def _get_state(self) -> dict[str, np.ndarray]:
        als, pop = self._parts()
        return {"user_factors": als.user_factors, "item_factors": als.item_factors, "popularity": pop}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        als = ALSRecommender(**self._als_params())
        als._set_state({"user_factors": state["user_factors"], "item_factors": state["item_factors"]})
        als.n_users, als.n_items = state["user_factors"].shape[0], state["item_factors"].shape[0]
        als._fitted = True
        pop = np.asarray(state["popularity"], dtype=np.float32)
        if pop.shape != (als.n_items,):
            raise ValueError("popularity does not match the item factors")
        self.als, self.popularity = als, pop
