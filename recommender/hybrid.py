"""The blended model giftrec serves: the customer's own repeat purchases + ALS + recent bestsellers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
from scipy.sparse import csr_matrix

from recommender.base import NotFittedError, Recommender, check_user_items
from recommender.collaborative import ALSRecommender, ItemItemRecommender
from recommender.feedback import positive_part

__all__ = ["BlendTerms", "HybridRecommender", "blend_scores"]

BLEND_PARAMS = (
    "repeat",
    "repeat_weight",
    "cf_weight",
    "popularity_weight",
    "knn_weight",
    "popularity_days",
)
_BLEND_PARAMS = BLEND_PARAMS
#: Parameters of the parts, not of ALS.
_PART_PARAMS = ("knn_k",)
#: The prior's window when `fit` is given a single popularity vector (and in artifacts saved before the
#: prior could hold several windows).
DEFAULT_POPULARITY_DAYS = 30.0


def _row_max_normalised(scores: np.ndarray) -> np.ndarray:
    """Divide each row by its largest absolute value (rows of zeros stay zero)."""
    peak = np.abs(scores).max(axis=1, keepdims=True)
    return scores / np.maximum(peak, np.float32(1e-12))


@dataclass(frozen=True)
class BlendTerms:
    """The hybrid's terms for some users before weighting, shape (n_users, n_items) each.

    ``cf`` and ``knn`` are scaled per user to [0, 1] (None when the part is absent); ``own`` is the users'
    rows, scaled likewise; ``popularity`` maps a window (days) to its prior vector, shape (n_items,).
    """

    cf: np.ndarray | None
    knn: np.ndarray | None
    own: np.ndarray
    popularity: Mapping[float, np.ndarray]


def blend_scores(terms: BlendTerms, blend: Mapping[str, Any]) -> np.ndarray:
    """The blended scores of `terms` (float32, shape (n_users, n_items)) for one blend.

    `blend` has the keys of `BLEND_PARAMS`. This is what `HybridRecommender` scores with, so a blend
    chosen on these sums ranks exactly as the model that serves it.
    """
    scores = np.zeros(terms.own.shape, dtype=np.float32)
    if blend["cf_weight"] > 0:
        if terms.cf is None:
            raise NotFittedError("the blend needs the ALS part")
        scores += np.float32(blend["cf_weight"]) * terms.cf
    if blend.get("knn_weight", 0.0) > 0:
        if terms.knn is None:
            raise NotFittedError("the blend needs the item-kNN part (fit with knn_k > 0)")
        scores += np.float32(blend["knn_weight"]) * terms.knn
    weight = blend["popularity_weight"]
    pop = terms.popularity.get(float(blend.get("popularity_days", DEFAULT_POPULARITY_DAYS)))
    if pop is None:
        raise ValueError(f"no popularity prior of {blend.get('popularity_days')} days")
    if weight > 0 and pop.size and pop.max() > 0:
        scores += (np.float32(weight / pop.max()) * pop)[None, :]
    if blend["repeat"] and blend["repeat_weight"] > 0:
        scores += np.float32(blend["repeat_weight"]) * terms.own
    return scores


class HybridRecommender(Recommender):
    """Score = repeat_weight * own + cf_weight * ALS + knn_weight * item-kNN + popularity_weight * prior.

    With one weight on and the others at zero it is one of the simple baselines: popularity over the
    prior's window, the customer's own (time-decayed) purchase frequency, item-kNN, or ALS alone; the
    blends in between are what `giftrec train --tune` chooses from (recommender.selection).

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

    item-kNN
        Cosine item-item neighbours (`knn_k` per item) fitted on the same matrix; only when ``knn_k > 0``.

    Parameters
    ----------
    repeat : bool
        Include the customer's own purchases in the score.
    repeat_weight, cf_weight, popularity_weight, knn_weight : float
        Blend weights (>= 0).
    popularity_days : float
        Which prior (window in days) the popularity term uses; `fit` gets one vector per window.
    knn_k : int
        Neighbours per item of the item-kNN part; 0 fits none (then ``knn_weight`` must be 0).
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
        knn_weight: float = 0.0,
        popularity_days: float = DEFAULT_POPULARITY_DAYS,
        knn_k: int = 0,
    ) -> None:
        for key, value in (
            ("repeat_weight", repeat_weight),
            ("cf_weight", cf_weight),
            ("popularity_weight", popularity_weight),
            ("knn_weight", knn_weight),
        ):
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"{key} must be a finite number >= 0, got {value!r}")
        if knn_weight > 0 and knn_k <= 0:
            raise ValueError("knn_weight > 0 needs the item-kNN part: knn_k > 0")
        if not np.isfinite(popularity_days) or popularity_days <= 0:
            raise ValueError(f"popularity_days must be > 0, got {popularity_days!r}")
        super().__init__(
            repeat=bool(repeat),
            repeat_weight=float(repeat_weight),
            cf_weight=float(cf_weight),
            popularity_weight=float(popularity_weight),
            knn_weight=float(knn_weight),
            popularity_days=float(popularity_days),
            knn_k=int(knn_k),
            factors=factors,
            regularization=regularization,
            alpha=alpha,
            iterations=iterations,
            random_state=random_state,
            num_threads=num_threads,
            use_gpu=use_gpu,
        )
        self.als: ALSRecommender | None = None
        self.knn: ItemItemRecommender | None = None
        #: The prior per window (days), each shape (n_items,).
        self.popularities: dict[float, np.ndarray] | None = None
        self._pending_popularity: dict[float, np.ndarray] | None = None
        self._pop_term: tuple[np.ndarray, np.ndarray | None] | None = None

    @property
    def popularity(self) -> np.ndarray | None:
        """The prior of this blend's window (``popularity_days``), shape (n_items,); None before `fit`."""
        if self.popularities is None:
            return None
        return self.popularities.get(self._params["popularity_days"])

    def _als_params(self) -> dict[str, Any]:
        return {k: v for k, v in self._params.items() if k not in _BLEND_PARAMS + _PART_PARAMS}

    def fit(
        self,
        user_items: csr_matrix,
        *,
        item_popularity: np.ndarray | Mapping[float, np.ndarray] | None = None,
    ) -> Self:
        """Train ALS (and item-kNN when ``knn_k > 0``) on `user_items` and keep the popularity prior.

        Parameters
        ----------
        user_items : csr_matrix, shape (n_users, n_items)
            Users are rows; values are confidences (ideally recency-weighted purchase counts).
        item_popularity : ndarray, shape (n_items,), or mapping days -> ndarray, optional
            Recent popularity of each item (e.g. distinct buyers over the last 30 days, guests included);
            a mapping gives one prior per window, and ``popularity_days`` must be one of them. A single
            vector is the prior of ``popularity_days``. Default: the number of users with a non-zero cell
            in `user_items`.

        Returns
        -------
        self
        """
        if item_popularity is None:
            self._pending_popularity = None
        else:
            given = (
                item_popularity
                if isinstance(item_popularity, Mapping)
                else {self._params["popularity_days"]: item_popularity}
            )
            pops: dict[float, np.ndarray] = {}
            for days, vector in given.items():
                pop = np.asarray(vector, dtype=np.float32).reshape(-1)
                if pop.shape != (user_items.shape[1],):
                    raise ValueError(
                        f"item_popularity has shape {pop.shape}, expected ({user_items.shape[1]},)"
                    )
                if not np.all(np.isfinite(pop)) or (pop < 0).any():
                    raise ValueError("item_popularity must be finite and >= 0")
                pops[float(days)] = pop
            if self._params["popularity_days"] not in pops:
                raise ValueError(f"no prior of popularity_days={self._params['popularity_days']}")
            self._pending_popularity = pops
        return super().fit(user_items)

    def _fit(self, user_items: csr_matrix) -> None:
        pops = self._pending_popularity
        self._pending_popularity = None
        if pops is None:  # users with a positive cell: a rejection (negative cell) is no vote
            pops = {
                self._params["popularity_days"]: np.asarray(
                    (user_items > 0).sum(axis=0), dtype=np.float32
                ).reshape(-1)
            }
        self.als = ALSRecommender(**self._als_params()).fit(user_items)
        self.knn = None
        if self._params["knn_k"] > 0:
            self.knn = ItemItemRecommender(
                kind="cosine", K=self._params["knn_k"], num_threads=self._params["num_threads"]
            ).fit(positive_part(user_items))
        self.popularities = pops

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
        if self.popularities is not None and other._params["popularity_days"] not in self.popularities:
            raise ValueError(f"no prior of popularity_days={other._params['popularity_days']}")
        other.als, other.knn, other.popularities = self.als, self.knn, self.popularities
        other.n_users, other.n_items, other._fitted = self.n_users, self.n_items, self._fitted
        return other

    def _parts(self) -> tuple[ALSRecommender, np.ndarray]:
        pop = self.popularity
        if self.als is None or pop is None:
            raise NotFittedError("HybridRecommender is not fitted")
        return self.als, pop

    def blend_terms(
        self, user_idxs: np.ndarray, user_items: csr_matrix, recalculate: bool = False
    ) -> BlendTerms:
        """Every term of the blend for these users, unweighted (see `BlendTerms`); `blend_scores` sums them.

        Parameters
        ----------
        user_idxs : ndarray int, shape (n_users,)
        user_items : csr_matrix, shape (n_users, n_items)
            The users' rows, in `user_idxs` order.
        recalculate : bool
            Fold the users in from their rows instead of the stored ALS factors.
        """
        als, _ = self._parts()
        assert self.popularities is not None
        cf = _row_max_normalised(np.asarray(als._score_users(user_idxs, user_items, recalculate), np.float32))
        knn = None
        if self.knn is not None:
            knn = _row_max_normalised(self.knn._score_users(user_idxs, user_items, recalculate))
        own = _row_max_normalised(np.asarray(user_items.toarray(), dtype=np.float32))
        return BlendTerms(cf, knn, own, self.popularities)

    def _score_users(self, user_idxs: np.ndarray, user_items: csr_matrix, recalculate: bool) -> np.ndarray:
        als, _ = self._parts()
        p = self._params
        scores = np.zeros((user_idxs.size, self.n_items), dtype=np.float32)
        if p["cf_weight"] > 0:
            cf = als._score_users(user_idxs, user_items, recalculate)
            scores += np.float32(p["cf_weight"]) * _row_max_normalised(np.asarray(cf, dtype=np.float32))
        if p["knn_weight"] > 0:
            if self.knn is None:
                raise NotFittedError("the blend needs the item-kNN part (fit with knn_k > 0)")
            knn = self.knn._score_users(user_idxs, user_items, recalculate)
            scores += np.float32(p["knn_weight"]) * _row_max_normalised(knn)
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
        als, items, row = self._explaining(user_items, item_idxs)
        cf = als.explain_many(user_idx, row, items, n)
        if not (self._params["repeat"] and n > 0 and row.nnz):
            # No repeat term (discovery, the storefront's picks): ALS's reasons less the item itself.
            return [
                [(past, weight) for past, weight in reasons if past != item][:n]
                for item, reasons in zip(items.tolist(), cf, strict=True)
            ]
        # row[0, item] for every item at once (the row is canonical: sorted column indices)
        at = np.minimum(np.searchsorted(row.indices, items), row.nnz - 1)
        own = np.where(row.indices[at] == items, row.data[at], 0).astype(np.float64)
        out: list[list[tuple[int, float]]] = []
        for item, value, reasons in zip(items.tolist(), own.tolist(), cf, strict=True):
            first = [(item, value)] if value > 0 else []
            out.append((first + [(past, weight) for past, weight in reasons if past != item])[:n])
        return out

    def explain_ids(
        self, user_idx: int, user_items: csr_matrix, item_idxs: Sequence[int] | np.ndarray, n: int = 3
    ) -> np.ndarray:
        """`explain_many`'s past items as one array (see `Recommender.explain_ids`): without the repeat term,
        ALS's less the item itself, in arrays throughout."""
        if self._params["repeat"]:
            return super().explain_ids(user_idx, user_items, item_idxs, n)
        als, items, row = self._explaining(user_items, item_idxs)
        ids = als.explain_ids(user_idx, row, items, n)
        keep = (ids >= 0) & (ids != items[:, None])
        order = np.argsort(~keep, axis=1, kind="stable")  # the kept ones first, in their order
        ids = np.take_along_axis(ids, order, axis=1)
        ids[~np.take_along_axis(keep, order, axis=1)] = -1
        return ids

    def _explaining(
        self, user_items: csr_matrix, item_idxs: Sequence[int] | np.ndarray
    ) -> tuple[ALSRecommender, np.ndarray, csr_matrix]:
        """The ALS part, the checked items and the user's one row, for an explanation."""
        self._require_fitted()
        als, _ = self._parts()
        items = self._check_items(item_idxs)
        row = check_user_items(user_items, n_items=self.n_items)
        return als, items, row if row.shape[0] == 1 else row[:1]

    def _get_state(self) -> dict[str, np.ndarray]:
        als, _ = self._parts()
        assert self.popularities is not None
        days = sorted(self.popularities)
        state = {
            "user_factors": als.user_factors,
            "item_factors": als.item_factors,
            "popularity": np.stack([self.popularities[d] for d in days]),
            "popularity_days": np.asarray(days, dtype=np.float64),
        }
        if self.knn is not None:
            state.update({f"knn_{k}": v for k, v in self.knn._get_state().items()})
        return state

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        als = ALSRecommender(**self._als_params())
        als._set_state({"user_factors": state["user_factors"], "item_factors": state["item_factors"]})
        als.n_users, als.n_items = state["user_factors"].shape[0], state["item_factors"].shape[0]
        als._fitted = True
        pop = np.asarray(state["popularity"], dtype=np.float32)
        if pop.ndim == 1:  # saved before the prior held several windows
            days = np.asarray([self._params["popularity_days"]])
            pop = pop[None, :]
        else:
            days = np.asarray(state["popularity_days"], dtype=np.float64)
        if pop.shape != (days.size, als.n_items):
            raise ValueError("popularity does not match the item factors")
        pops = {float(d): pop[i] for i, d in enumerate(days.tolist())}
        if self._params["popularity_days"] not in pops:
            raise ValueError(f"no prior of popularity_days={self._params['popularity_days']}")
        knn = None
        if self._params["knn_k"] > 0:
            knn = ItemItemRecommender(kind="cosine", K=self._params["knn_k"])
            knn._set_state({k[4:]: v for k, v in state.items() if k.startswith("knn_")})
            knn.n_users, knn.n_items, knn._fitted = als.n_users, als.n_items, True
        self.als, self.knn, self.popularities = als, knn, pops
