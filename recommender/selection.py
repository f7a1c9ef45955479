"""Model selection on a validation window: which blend of the hybrid to serve, per task.

The candidates include the simple baselines themselves, each a blend with one term on (popularity over
several windows, the customer's own purchase frequency, item-kNN, ALS alone), and blends of them; every
candidate is scored on the validation customers exactly as `recommender.hybrid.blend_scores` ranks, with
the lists filled up by bestsellers as serving fills them (a non-positive score is never a model pick).
The terms are computed once per block of customers and only re-weighted per candidate, so a wide grid
costs one ALS and one item-kNN fit; memory is bounded by the block (`BLOCK_CELLS`), not the catalogue, and
only each candidate's top k per customer is kept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix

from recommender.base import NotFittedError
from recommender.evaluation import BLOCK_CELLS, TASKS, Metrics, Task, block_rows, ranking_metrics
from recommender.hybrid import DEFAULT_POPULARITY_DAYS, HybridRecommender

__all__ = [
    "BASELINE_NAMES",
    "BLOCK_CELLS",
    "POPULARITY_WINDOWS",
    "Scored",
    "ValidationTruth",
    "candidate_blends",
    "rank_candidates",
]

#: Windows (days) of the popularity priors the candidates choose from.
POPULARITY_WINDOWS: tuple[float, ...] = (7.0, 30.0, 90.0, 365.0)
#: Names of the candidates that are a simple baseline by themselves.
BASELINE_NAMES = ("popularity", "personal top-frequency", "item-kNN")
_WEIGHTS = (0.0, 0.3, 1.0)
_POP_WEIGHTS = (0.0, 0.2, 0.5)


@dataclass(frozen=True)
class ValidationTruth:
    """One task's validation customers: their matrix rows and what they bought in the window.

    ``user_idxs`` are rows of the training matrix; ``relevant`` has one row per customer over the
    matrix's items; ``n_relevant`` also counts items the matrix lacks; ``blocked`` (same shape as
    ``relevant``, or None) marks items never to show them (discovery: what they bought).
    """

    user_idxs: np.ndarray
    relevant: csr_matrix
    n_relevant: np.ndarray
    blocked: csr_matrix | None = None

    @property
    def customers(self) -> int:
        return int(self.user_idxs.size)


@dataclass(frozen=True)
class Scored:
    """A candidate and its validation metrics."""

    name: str
    blend: dict[str, Any]
    metrics: Metrics

    @property
    def is_baseline(self) -> bool:
        return self.name.split(" (")[0] in BASELINE_NAMES

    def as_dict(self, k: int) -> dict[str, Any]:
        return {"name": self.name, "blend": self.blend, **self.metrics.as_dict(k)}


def _blend(repeat: bool, **weights: float) -> dict[str, Any]:
    out: dict[str, Any] = {
        "repeat": repeat,
        "repeat_weight": 0.0,
        "cf_weight": 0.0,
        "knn_weight": 0.0,
        "popularity_weight": 0.0,
        "popularity_days": 30.0,
    }
    out.update(weights)
    return out


def candidate_blends(
    task: Task, windows: Sequence[float] = POPULARITY_WINDOWS
) -> list[tuple[str, dict[str, Any]]]:
    """The named candidates of a task, simple baselines first (a tie goes to the earlier, simpler one).

    ``next_purchases`` may repeat bought items (``repeat=True``); ``discovery`` never does, so it has no
    own-purchases term.
    """
    repeat = task == "next_purchases"
    out: list[tuple[str, dict[str, Any]]] = [
        (f"popularity ({d:g} days)", _blend(repeat, popularity_weight=1.0, popularity_days=d))
        for d in windows
    ]
    if repeat:
        out.append(("personal top-frequency", _blend(True, repeat_weight=1.0)))
    out.append(("item-kNN", _blend(repeat, knn_weight=1.0)))
    out.append(("ALS", _blend(repeat, cf_weight=1.0)))
    own_weights = (0.0, 1.0) if repeat else (0.0,)
    for own in own_weights:
        for cf in _WEIGHTS:
            for knn in _WEIGHTS:
                for pop in _POP_WEIGHTS:
                    for d in windows if pop > 0 else windows[1:2]:
                        if sum(w > 0 for w in (own, cf, knn, pop)) < 2:
                            continue  # one term alone is a named candidate above
                        blend = _blend(
                            repeat,
                            repeat_weight=own,
                            cf_weight=cf,
                            knn_weight=knn,
                            popularity_weight=pop,
                            popularity_days=d,
                        )
                        out.append(("blend", blend))
    return out


# Customers x items cells scored at once (`recommender.evaluation.BLOCK_CELLS`, the baselines' block too):
# each block's terms and scores are a few float32 arrays of this many cells (16 MiB each), whatever the
# catalogue (a 65,000-item shop scores 64 customers at once).


@dataclass(frozen=True)
class _Sparse:
    """A term's non-zero cells of a block: flat positions in the (n_users, n_items) block, values."""

    at: np.ndarray
    values: np.ndarray

    @classmethod
    def of(cls, dense: np.ndarray) -> _Sparse:
        at = np.flatnonzero(dense)
        return cls(at, dense.reshape(-1)[at])

    def add_to(self, out: np.ndarray, weight: np.float32) -> None:
        flat = out.reshape(-1)  # a view: `out` is C-contiguous
        flat[self.at] += weight * self.values


@dataclass(frozen=True)
class _BlockTerms:
    """`recommender.hybrid.BlendTerms` of a block of customers, with the item-kNN and own terms sparse
    (non-zero only near and on what the customer bought)."""

    n_users: int
    cf: np.ndarray | None
    knn: _Sparse | None
    own: _Sparse
    popularity: Mapping[float, np.ndarray]


def _block_terms(model: HybridRecommender, user_idxs: np.ndarray, user_items: csr_matrix) -> _BlockTerms:
    terms = model.blend_terms(user_idxs, user_items[user_idxs])
    knn = None if terms.knn is None else _Sparse.of(terms.knn)
    return _BlockTerms(int(user_idxs.size), terms.cf, knn, _Sparse.of(terms.own), terms.popularity)


def _blend_into(out: np.ndarray, terms: _BlockTerms, blend: Mapping[str, Any]) -> np.ndarray:
    """`recommender.hybrid.blend_scores` into `out` (float32, shape (n_users, n_items)): the same terms
    added in the same order in float32, so the sums are bit for bit the same; the sparse terms are added
    only where they are non-zero (adding 0 changes nothing)."""
    if blend["cf_weight"] > 0:
        if terms.cf is None:
            raise NotFittedError("the blend needs the ALS part")
        np.multiply(terms.cf, np.float32(blend["cf_weight"]), out=out)
    else:
        out.fill(0.0)
    if blend.get("knn_weight", 0.0) > 0:
        if terms.knn is None:
            raise NotFittedError("the blend needs the item-kNN part (fit with knn_k > 0)")
        terms.knn.add_to(out, np.float32(blend["knn_weight"]))
    weight = blend["popularity_weight"]
    pop = terms.popularity.get(float(blend.get("popularity_days", DEFAULT_POPULARITY_DAYS)))
    if pop is None:
        raise ValueError(f"no popularity prior of {blend.get('popularity_days')} days")
    if weight > 0 and pop.size and pop.max() > 0:
        out += (np.float32(weight / pop.max()) * pop)[None, :]
    if blend["repeat"] and blend["repeat_weight"] > 0:
        terms.own.add_to(out, np.float32(blend["repeat_weight"]))
    return out


def _top_positive(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's (at most) `k` best positive scores, by score then item (`recommender.base.top_k`'s
    order): ``(ids, count)``, ids of shape (n_rows, k) padded with -1, count of shape (n_rows,).

    A full partition of every row was the slowest step: instead the k-th largest of the rows' chunk
    maxima (one pass) bounds the k-th best score from below, and only the cells at or above it (a few
    times k per row, every tie included) are sorted.
    """
    n_rows, n_items = scores.shape
    width = max(1, n_items // (32 * k))  # chunks of `width` items, at least 32 k of them
    main = n_items - n_items % width
    peaks = scores[:, :main].reshape(n_rows, -1, width).max(axis=2)
    if main < n_items:
        peaks = np.column_stack([peaks, scores[:, main:].max(axis=1)])
    n_chunks = peaks.shape[1]
    bound = np.partition(peaks, n_chunks - k, axis=1)[:, n_chunks - k]
    # at or above the bound, and positive (the smallest positive float32 is the floor)
    floor = np.maximum(bound, np.finfo(np.float32).smallest_subnormal)
    r, c = np.nonzero(scores >= floor[:, None].astype(np.float32))
    v = scores[r, c]
    order = np.lexsort((c, -v, r))
    r, c = r[order], c[order]
    first = np.searchsorted(r, np.arange(n_rows))
    rank = np.arange(r.size) - first[r]
    keep = rank < k
    ids = np.full((n_rows, k), -1, dtype=np.int64)
    ids[r[keep], rank[keep]] = c[keep]
    return ids, np.minimum(np.bincount(r, minlength=n_rows), k)


def _lists(scores: np.ndarray, fill_order: np.ndarray, k: int) -> np.ndarray:
    """Top-k per row as serving fills a list: positive scores first (by score, then item, as
    `recommender.base.top_k` breaks ties), then the bestsellers in `fill_order` (best first), never a
    cell at -inf (blocked); -1 pads a row with fewer than k allowed items. Shape (n_rows, k)."""
    n_rows, n_items = scores.shape
    out = np.full((n_rows, k), -1, dtype=np.int64)
    kk = min(k, n_items)
    if n_rows == 0 or kk == 0:
        return out
    out[:, :kk], positive = _top_positive(scores, kk)
    # Rows with fewer than k positive scores go on with the bestsellers that are neither positive nor
    # blocked, in `fill_order`: a prefix of it, longer until it holds enough for every such row (all the
    # rows at once, never one list at a time).
    pending = np.flatnonzero(positive < kk)
    length = min(n_items, 4 * kk)
    while pending.size:
        prefix = fill_order[:length]
        cand = scores[pending][:, prefix]
        ok = (cand <= 0) & (cand > -np.inf)
        rank = np.cumsum(ok, axis=1)
        need = kk - positive[pending]
        done = (rank[:, -1] >= need) | (length == n_items)
        r, c = np.nonzero(ok & (rank <= need[:, None]) & done[:, None])
        out[pending[r], positive[pending[r]] + rank[r, c] - 1] = prefix[c]
        pending = pending[~done]
        length = min(n_items, 4 * length)
    return out


def rank_candidates(
    model: HybridRecommender,
    user_items: csr_matrix,
    truth: Mapping[Task, ValidationTruth],
    bestsellers: np.ndarray,
    k: int,
    candidates: Mapping[Task, Sequence[tuple[str, Mapping[str, Any]]]] | None = None,
    *,
    block: int | None = None,
) -> dict[Task, list[Scored]]:
    """Score every candidate blend of `model` (fitted on `user_items`) on the validation truth.

    Parameters
    ----------
    model : HybridRecommender
        Fitted before the validation window, with every prior the candidates name and ``knn_k > 0``
        when one uses item-kNN.
    user_items : csr_matrix, shape (n_users, n_items)
        Its training matrix (users are rows).
    truth : mapping task -> ValidationTruth
    bestsellers : ndarray, shape (n_items,)
        What fills a list past the model's positive scores (serving's bestsellers).
    k : int
    candidates : mapping task -> [(name, blend)], optional
        Default `candidate_blends` of each task.
    block : int, optional
        Customers scored at once (default: `BLOCK_CELLS` cells' worth); the result does not depend on it.

    Returns
    -------
    dict task -> list of Scored, best first (recall@k, then NDCG@k; the earlier candidate on a tie).
    """
    out: dict[Task, list[Scored]] = {}
    n_items = user_items.shape[1]
    fill = np.asarray(bestsellers, dtype=np.float64)
    fill_order = np.lexsort((np.arange(n_items), -fill))  # bestsellers first, ties to the lower item
    size = block if block is not None else block_rows(n_items)
    for task in TASKS:
        t = truth[task]
        named = list(candidates[task] if candidates is not None else candidate_blends(task))
        if t.customers == 0:
            out[task] = []
            continue
        # Customers in blocks: only each candidate's k best per customer are kept, never a full matrix.
        recs = np.full((len(named), t.customers, k), -1, dtype=np.int64)
        for start in range(0, t.customers, size):
            rows = slice(start, start + size)
            terms = _block_terms(model, t.user_idxs[rows], user_items)
            blocked = t.blocked[rows].nonzero() if t.blocked is not None else None
            scores = np.empty((terms.n_users, n_items), dtype=np.float32)
            for c, (_, blend) in enumerate(named):
                _blend_into(scores, terms, blend)
                if blocked is not None:
                    scores[blocked] = -np.inf
                recs[c, rows] = _lists(scores, fill_order, k)
        scored = [
            Scored(name, dict(blend), ranking_metrics(recs[c], t.relevant, k, n_items, t.n_relevant))
            for c, (name, blend) in enumerate(named)
        ]
        order = sorted(
            range(len(scored)), key=lambda i: (-scored[i].metrics.recall, -scored[i].metrics.ndcg, i)
        )
        out[task] = [scored[i] for i in order]
    return out
