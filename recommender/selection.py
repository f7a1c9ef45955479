"""Model selection on a validation window: which blend of the hybrid to serve, per task.

The candidates include the simple baselines themselves, each a blend with one term on (popularity over
several windows, the customer's own purchase frequency, item-kNN, ALS alone), and blends of them; every
candidate is scored on the validation customers exactly as `recommender.hybrid.blend_scores` ranks, with
the lists filled up by bestsellers as serving fills them (a non-positive score is never a model pick).
The terms are computed once per task and only re-weighted per candidate, so a wide grid costs one ALS and
one item-kNN fit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix

from recommender.evaluation import TASKS, Metrics, Task, ranking_metrics
from recommender.hybrid import BlendTerms, HybridRecommender, blend_scores

__all__ = [
    "BASELINE_NAMES",
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


def _lists(
    scores: np.ndarray, fill: np.ndarray, blocked: tuple[np.ndarray, np.ndarray], k: int
) -> np.ndarray:
    """Top-k per row: positive scores first (by score), then bestsellers (`fill`, already scaled to
    [0, 1)), never a `blocked` (rows, columns) cell; -1 pads a row with fewer than k allowed items."""
    peak = np.maximum(scores.max(axis=1, keepdims=True), np.float32(1e-12)).astype(np.float64)
    # Model picks rank in (2, 3], bestsellers in [0, 1): the chain's order, in one sort.
    key = scores.astype(np.float64)
    key /= peak
    key += 2.0
    np.copyto(key, np.broadcast_to(fill, key.shape), where=scores <= 0)
    key[blocked] = -np.inf
    k = min(k, key.shape[1])
    # The k best of each row at once (a per-row top-k was the slowest step), sorted by value, then item.
    part = np.argpartition(-key, k - 1, axis=1)[:, :k]
    values = np.take_along_axis(key, part, axis=1)
    order = np.lexsort((part, -values), axis=-1)
    ids, values = np.take_along_axis(part, order, axis=1), np.take_along_axis(values, order, axis=1)
    # argpartition cuts values equal to the k-th best arbitrarily; serving (`top_k`) keeps the lower
    # items. Rows with more items at the k-th value than were taken are redone that way (popularity
    # counts buyers: ties at the 10th place are common).
    kth = values[:, -1:]
    tied = np.flatnonzero(np.isfinite(kth[:, 0]) & (np.count_nonzero(key >= kth, axis=1) > k))
    for r in tied.tolist():
        keep = np.flatnonzero(key[r] >= kth[r, 0])
        best = np.lexsort((keep, -key[r, keep]))[:k]
        ids[r], values[r] = keep[best], key[r, keep[best]]
    return np.where(np.isfinite(values), ids, -1)


def rank_candidates(
    model: HybridRecommender,
    user_items: csr_matrix,
    truth: Mapping[Task, ValidationTruth],
    bestsellers: np.ndarray,
    k: int,
    candidates: Mapping[Task, Sequence[tuple[str, Mapping[str, Any]]]] | None = None,
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

    Returns
    -------
    dict task -> list of Scored, best first (recall@k, then NDCG@k; the earlier candidate on a tie).
    """
    out: dict[Task, list[Scored]] = {}
    fill = np.asarray(bestsellers, dtype=np.float64) / (
        max(float(np.max(bestsellers, initial=0.0)), 0.0) + 1.0
    )
    for task in TASKS:
        t = truth[task]
        if t.customers == 0:
            out[task] = []
            continue
        terms: BlendTerms = model.blend_terms(t.user_idxs, user_items[t.user_idxs])
        blocked = t.blocked.nonzero() if t.blocked is not None else (np.empty(0, int), np.empty(0, int))
        scored: list[Scored] = []
        for name, blend in candidates[task] if candidates is not None else candidate_blends(task):
            recs = _lists(blend_scores(terms, blend), fill, blocked, k)
            metrics = ranking_metrics(recs, t.relevant, k, user_items.shape[1], t.n_relevant)
            scored.append(Scored(name, dict(blend), metrics))
        order = sorted(
            range(len(scored)), key=lambda i: (-scored[i].metrics.recall, -scored[i].metrics.ndcg, i)
        )
        out[task] = [scored[i] for i in order]
    return out
