"""Offline evaluation: temporal splits, ranking metrics, baselines and validation-tuned models.

Protocol (see docs/quality.md): the cut is the day of the last order line minus `test_days`; the models
learn from everything before the cut and are scored on the customers who bought both before and after it.
Two tasks are reported separately:

``next_purchases``
    Ground truth: every distinct item the customer bought after the cut (repeats count). Models may
    recommend items the customer already bought.
``discovery``
    Ground truth: items bought after the cut that the customer never bought before it; customers with at
    least one such item. Already bought items are never recommended.

Hyper-parameters are chosen on a validation window of the same length cut off the end of the training
period (never on the test window); the chosen configuration is then refitted on the whole training period.

The caller may add the configuration it serves (`ServedLists`, row `SERVED`): its own top-k lists for the
test split, scored like the rest. ``giftrec evaluate`` passes what `giftrec train` would serve.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy.sparse import csr_matrix

from recommender.base import Recommender, top_k_rows
from recommender.collaborative import ALSRecommender, BPRRecommender, ItemItemRecommender
from recommender.hybrid import HybridRecommender
from recommender.interactions import IdIndex, build_user_items
from recommender.intervals import paired_difference
from recommender.popularity import PopularityRecommender
from recommender.threads import pin_blas_threads
from recommender.tifuknn import PUBLISHED_PARAMS, TIFUKNN

__all__ = [
    "BASELINES",
    "DEFAULT_GRIDS",
    "DEFAULT_MODEL",
    "MODELS",
    "SERVED",
    "TASKS",
    "TIFU_KNN",
    "Candidate",
    "EvaluationResult",
    "MatrixConfig",
    "Metrics",
    "OrderHistory",
    "ServedLists",
    "Split",
    "Task",
    "evaluate",
    "format_table",
    "make_split",
    "ranking_metrics",
    "task_truth",
    "temporal_cut",
]

Task = Literal["next_purchases", "discovery"]
TASKS: tuple[Task, ...] = ("next_purchases", "discovery")
#: TIFU-KNN rows (next purchases only), one per parameter set the paper publishes.
TIFU_KNN = tuple(f"tifu_knn ({name} parameters)" for name in PUBLISHED_PARAMS)
BASELINES = ("popularity", "personal_top_frequency", *TIFU_KNN, "item_knn")
MODELS = ("als", "bpr", "item_item", "hybrid")
DEFAULT_MODEL = "hybrid"
#: Row of the configuration the caller serves (see `ServedLists`).
SERVED = "served (current settings)"
POPULARITY_DAYS = 90.0
#: Window of the hybrid's "recent bestsellers" term.
RECENT_POPULARITY_DAYS = 30.0
_DAY = np.timedelta64(86400, "s")


# ------------------------------------------------------------------------------------------------ data
@dataclass(frozen=True)
class OrderHistory:
    """Order lines as parallel arrays, one entry per line.

    Attributes
    ----------
    user_ids : ndarray of str, shape (n,)
        Customer ids; ``""`` marks a guest sale (counts for popularity, belongs to nobody).
    item_ids : ndarray of str, shape (n,)
    quantities : ndarray of float, shape (n,)
        Units, always > 0.
    timestamps : ndarray datetime64[s], shape (n,)
    is_return : ndarray of bool, shape (n,)
        Return (cancellation) lines; they reduce the purchase in the training matrix and are never
        ground truth.
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    quantities: np.ndarray
    timestamps: np.ndarray
    is_return: np.ndarray

    def __post_init__(self) -> None:
        sizes = {a: np.asarray(getattr(self, a)).shape for a in self.__dataclass_fields__}
        if len(set(sizes.values())) != 1 or len(next(iter(sizes.values()))) != 1:
            raise ValueError(f"OrderHistory arrays must be 1-D and of equal length: {sizes}")
        object.__setattr__(self, "user_ids", np.asarray(self.user_ids).astype(str))
        object.__setattr__(self, "item_ids", np.asarray(self.item_ids).astype(str))
        object.__setattr__(self, "quantities", np.asarray(self.quantities, dtype=np.float64))
        object.__setattr__(self, "timestamps", np.asarray(self.timestamps, dtype="datetime64[s]"))
        object.__setattr__(self, "is_return", np.asarray(self.is_return, dtype=bool))

    def __len__(self) -> int:
        return int(self.user_ids.size)

    def select(self, mask: np.ndarray) -> OrderHistory:
        """The lines where `mask` (bool, shape (n,)) is True."""
        return OrderHistory(
            self.user_ids[mask],
            self.item_ids[mask],
            self.quantities[mask],
            self.timestamps[mask],
            self.is_return[mask],
        )

    @property
    def is_sale(self) -> np.ndarray:
        """Customer purchases: not a return, not a guest."""
        return ~self.is_return & (self.user_ids != "")

    @property
    def days(self) -> np.ndarray:
        """Day number (days since 1970-01-01) of each line, shape (n,)."""
        return self.timestamps.astype("datetime64[D]").astype(np.int64)


@dataclass(frozen=True)
class MatrixConfig:
    """How order lines become the training matrix.

    ``quantity="lines"`` counts each order line once (quantity ignored); ``"log1p"`` sums units and damps
    them. ``half_life_days`` decays each line by its age at the cut.
    """

    half_life_days: float | None = None
    quantity: Literal["lines", "log1p"] = "lines"

    def as_dict(self) -> dict[str, Any]:
        return {"half_life_days": self.half_life_days, "quantity": self.quantity}


@dataclass(frozen=True)
class TaskTruth:
    """Who is evaluated on a task and what they bought.

    ``relevant`` has one row per evaluated customer (in `user_idxs` order) over the catalogue columns;
    ``n_relevant`` also counts test items the catalogue did not have at the cut (they can never be hit).
    """

    user_idxs: np.ndarray
    relevant: csr_matrix
    n_relevant: np.ndarray


@dataclass
class Split:
    """One temporal window: training lines before `cut`, test lines in [cut, end)."""

    cut: np.datetime64
    end: np.datetime64
    train: OrderHistory
    users: IdIndex
    items: IdIndex
    counts: csr_matrix
    last_day: csr_matrix
    truth: dict[Task, TaskTruth]
    _matrices: dict[MatrixConfig, csr_matrix] = field(default_factory=dict, repr=False)
    _popularity: dict[float, PopularityRecommender] = field(default_factory=dict, repr=False)

    def matrix(self, config: MatrixConfig) -> csr_matrix:
        """Training matrix (users x items) built with `config`; cached."""
        if config not in self._matrices:
            sales = self.train.user_ids != ""
            t = self.train.select(sales)
            qty = np.ones(len(t)) if config.quantity == "lines" else t.quantities
            m, _, _ = build_user_items(
                t.user_ids,
                t.item_ids,
                np.where(t.is_return, "return", "purchase"),
                qty,
                t.timestamps,
                quantity_damping="none" if config.quantity == "lines" else "log1p",
                half_life_days=config.half_life_days,
                now=self.cut,
                user_index=self.users,
                item_index=self.items,
            )
            self._matrices[config] = m
        return self._matrices[config]

    def popularity_model(self, days: float) -> PopularityRecommender:
        """Bestsellers by distinct buyers (a guest line counts as one buyer) in the `days` before the cut."""
        if days not in self._popularity:
            t = self.train.select(~self.train.is_return)
            users = np.where(t.user_ids == "", -1, self.users.index_of(t.user_ids))
            model = PopularityRecommender(window_days=days, count="buyers")
            items = self.items.index_of(t.item_ids)
            self._popularity[days] = model.fit_events(
                users, items, t.timestamps, n_items=len(self.items), now=self.cut
            )
        return self._popularity[days]

    def popularity(self, days: float) -> np.ndarray:
        """Popularity vector of `popularity_model`, shape (n_items,)."""
        pop = self.popularity_model(days).popularity
        assert pop is not None
        return pop


def _seconds(value: Any) -> np.datetime64:
    out: Any = np.asarray(value, dtype="datetime64[s]").reshape(())[()]
    return np.datetime64(out, "s")


def temporal_cut(timestamps: np.ndarray, test_days: int) -> np.datetime64:
    """Midnight of the last line's day minus `test_days`: test = [cut, end], train = before the cut."""
    if test_days <= 0:
        raise ValueError(f"test_days must be > 0, got {test_days}")
    ts = np.asarray(timestamps, dtype="datetime64[s]")
    if ts.size == 0:
        raise ValueError("no order lines")
    return ts.max().astype("datetime64[D]").astype("datetime64[s]") - test_days * _DAY


def make_split(history: OrderHistory, cut: np.datetime64, end: np.datetime64 | None = None) -> Split:
    """Split `history` at `cut`: train = lines before it, test = sales in [cut, end) (default: all after).

    The catalogue is every item sold before the cut (guest sales included), the customers those with a
    purchase before it. Nothing at or after the cut reaches the training arrays.
    """
    cut = _seconds(cut)
    before = history.timestamps < cut
    train = history.select(before)
    train_sales = train.select(train.is_sale)
    users = IdIndex(np.unique(train_sales.user_ids))
    items = IdIndex(np.unique(train.item_ids[~train.is_return]))
    n_users, n_items = len(users), len(items)

    u = users.index_of(train_sales.user_ids)
    i = items.index_of(train_sales.item_ids)
    counts = csr_matrix((np.ones(u.size), (u, i)), shape=(n_users, n_items))
    counts.sum_duplicates()
    # Day number (1 = the first day of the data) of each cell's latest purchase, for tie-breaking.
    day = np.zeros(u.size)
    if u.size:
        day = ((train_sales.timestamps - train_sales.timestamps.min()) // _DAY).astype(np.float64) + 1.0
    order = np.lexsort((day, i, u))
    key = u[order] * n_items + i[order]
    last = np.r_[key[1:] != key[:-1], True] if key.size else np.zeros(0, dtype=bool)
    last_day = csr_matrix((day[order][last], (u[order][last], i[order][last])), shape=(n_users, n_items))

    after = history.timestamps >= cut
    if end is not None:
        after &= history.timestamps < _seconds(end)
    test = history.select(after & history.is_sale)
    tu = users.index_of(test.user_ids)
    known = tu >= 0
    tu, titems = tu[known], test.item_ids[known]
    end_value = _seconds(end) if end is not None else history.timestamps.max() + np.timedelta64(1, "s")
    truth: dict[Task, TaskTruth] = {
        "next_purchases": task_truth(tu, titems, items, counts, new_only=False),
        "discovery": task_truth(tu, titems, items, counts, new_only=True),
    }
    return Split(cut, end_value, train, users, items, counts, last_day, truth)


def task_truth(
    tu: np.ndarray, titems: np.ndarray, items: IdIndex, counts: csr_matrix, *, new_only: bool
) -> TaskTruth:
    """Distinct (customer, item) pairs of a window (`tu`: customers' rows, `titems`: item ids); items the
    catalogue lacks count but never hit. With `new_only`, pairs where `counts` (customers x items) is
    positive (bought before) are left out."""
    names, code = np.unique(titems, return_inverse=True)
    if tu.size:
        pairs = np.unique(np.stack([tu, code.reshape(-1)]), axis=1)
    else:
        pairs = np.zeros((2, 0), dtype=np.int64)
    pu = pairs[0]
    pcol = items.index_of(names)[pairs[1]] if pairs.shape[1] else pairs[1]
    if new_only and pu.size:
        bought = np.zeros(pu.size, dtype=bool)
        ok = pcol >= 0
        bought[ok] = np.asarray(counts[pu[ok], pcol[ok]]).ravel() > 0
        pu, pcol = pu[~bought], pcol[~bought]
    user_idxs, row = np.unique(pu, return_inverse=True)
    row = row.reshape(-1)
    n_relevant = np.bincount(row, minlength=user_idxs.size)
    inside = pcol >= 0
    relevant = csr_matrix(
        (np.ones(int(inside.sum())), (row[inside], pcol[inside])), shape=(user_idxs.size, len(items))
    )
    return TaskTruth(user_idxs.astype(np.int64), relevant, n_relevant.astype(np.int64))


# --------------------------------------------------------------------------------------------- metrics
@dataclass(frozen=True)
class Metrics:
    """Ranking quality at k, averaged over evaluated customers (coverage: over the catalogue).

    recall@k is hits / min(k, |relevant|) (the normalisation of Liang et al. 2018, so a customer with more
    than k relevant items can still reach 1); precision@k is hits / k; NDCG@k uses binary gains; MAP@k
    divides the sum of precisions at hits by min(k, |relevant|); hit rate is the share of customers with
    at least one hit; coverage@k is the share of catalogue items recommended to anyone.
    """

    recall: float
    precision: float
    ndcg: float
    map: float
    hit_rate: float
    coverage: float
    customers: int
    #: recall@k of each evaluated customer (in the truth's row order), for paired comparisons.
    per_customer_recall: np.ndarray | None = field(default=None, compare=False, repr=False)

    def as_dict(self, k: int) -> dict[str, float | int]:
        return {
            f"recall@{k}": self.recall,
            f"precision@{k}": self.precision,
            f"ndcg@{k}": self.ndcg,
            f"map@{k}": self.map,
            f"hit_rate@{k}": self.hit_rate,
            f"coverage@{k}": self.coverage,
            "customers": self.customers,
        }


def ranking_metrics(
    recommended: np.ndarray,
    relevant: csr_matrix,
    k: int,
    n_items: int,
    n_relevant: np.ndarray | None = None,
) -> Metrics:
    """Score top-k lists against ground truth.

    Parameters
    ----------
    recommended : ndarray int, shape (n_users, >= k)
        Item positions, best first, padded with -1. Only the first k columns count.
    relevant : csr_matrix, shape (n_users, n_items)
        Non-zero where the item is relevant to the user (same row order as `recommended`).
    k : int
    n_items : int
        Catalogue size, for coverage.
    n_relevant : ndarray int, shape (n_users,), optional
        Relevant items per user including ones outside the catalogue; default: row counts of `relevant`.

    Returns
    -------
    Metrics (all zeros with ``customers=0`` when there are no users).
    """
    if k <= 0:
        raise ValueError(f"k must be > 0, got {k}")
    recs = np.asarray(recommended, dtype=np.int64)[:, :k]
    relevant = csr_matrix(relevant)
    if recs.shape[0] != relevant.shape[0]:
        raise ValueError(f"{recs.shape[0]} recommendation rows for {relevant.shape[0]} truth rows")
    sizes = np.diff(relevant.indptr) if n_relevant is None else np.asarray(n_relevant, dtype=np.int64)
    n_users = recs.shape[0]
    if n_users == 0:
        return Metrics(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0)
    if (sizes <= 0).any():
        raise ValueError("every evaluated user needs at least one relevant item")
    rows = np.repeat(np.arange(n_users), recs.shape[1]).reshape(recs.shape)
    hits = (np.asarray(relevant[rows.ravel(), np.maximum(recs, 0).ravel()]).reshape(recs.shape) > 0) & (
        recs >= 0
    )
    n_hits = hits.sum(axis=1)
    denom = np.minimum(sizes, k)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    # Padding (-1) is never a hit, so shorter lists simply score lower.
    ideal = np.cumsum(discounts)[denom - 1]
    ndcg = (hits * discounts[: recs.shape[1]]).sum(axis=1) / ideal
    precision_at = np.cumsum(hits, axis=1) / np.arange(1, recs.shape[1] + 1)
    ap = (precision_at * hits).sum(axis=1) / denom
    shown = np.unique(recs[recs >= 0])
    return Metrics(
        recall=float(np.mean(n_hits / denom)),
        precision=float(np.mean(n_hits / k)),
        ndcg=float(np.mean(ndcg)),
        map=float(np.mean(ap)),
        hit_rate=float(np.mean(n_hits > 0)),
        coverage=float(shown.size / n_items) if n_items else 0.0,
        customers=int(n_users),
        per_customer_recall=n_hits / denom,
    )


# ---------------------------------------------------------------------------------------------- models
@dataclass(frozen=True)
class Candidate:
    """One configuration of a model family: model parameters, matrix and (hybrid) blend parameters."""

    family: str
    params: Mapping[str, Any]
    matrix: MatrixConfig = MatrixConfig()
    blends: Mapping[Task, Sequence[Mapping[str, Any]]] = field(default_factory=dict)

    def describe(self, blend: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return {**dict(self.params), **dict(blend or {}), "matrix": self.matrix.as_dict()}


def _grid(**axes: Sequence[Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{}]
    for key, values in axes.items():
        out = [{**o, key: v} for o in out for v in values]
    return out


_NO_DECAY, _DECAY_90, _DECAY_365 = MatrixConfig(None), MatrixConfig(90.0), MatrixConfig(365.0)
_HYBRID_BLENDS: dict[Task, list[dict[str, Any]]] = {
    "next_purchases": [
        {"repeat": True, "repeat_weight": 1.0, **g}
        for g in _grid(cf_weight=(0.3, 0.5, 1.0), popularity_weight=(0.2, 0.5))
    ],
    "discovery": [
        {"repeat": False, "repeat_weight": 0.0, "cf_weight": 1.0, "popularity_weight": w}
        for w in (0.2, 0.4, 0.6)
    ],
}

#: The search space tried on the validation window. Kept small so that a full-file run takes minutes; a
#: wider sweep (factors 32-128, alpha 0.5-2, regularisation 0.01-1, half-lives 30-365 days, BPR learning
#: rates, K 50-200) picked values inside this grid.
DEFAULT_GRIDS: dict[str, list[Candidate]] = {
    "als": [
        Candidate("als", p, m)
        for m in (_NO_DECAY, _DECAY_90)
        for p in _grid(factors=(64, 128), regularization=(0.01, 0.1), alpha=(2.0,))
    ],
    "bpr": [
        Candidate("bpr", p, _NO_DECAY)
        for p in _grid(factors=(128,), learning_rate=(0.01, 0.05), regularization=(0.01,), iterations=(100,))
    ],
    "item_item": [
        Candidate("item_item", p, m)
        for m in (_NO_DECAY, _DECAY_90)
        for p in _grid(kind=("bm25", "cosine"), K=(100, 200))
    ],
    "hybrid": [
        Candidate("hybrid", p, m, _HYBRID_BLENDS)
        for m in (_DECAY_90, _DECAY_365)
        for p in _grid(factors=(64,), regularization=(0.1,), alpha=(2.0,))
    ],
}


def _build(candidate: Candidate, seed: int) -> Recommender:
    p = dict(candidate.params)
    if candidate.family == "als":
        return ALSRecommender(**p, random_state=seed)
    if candidate.family == "bpr":
        # One thread: implicit's Hogwild SGD is only reproducible single-threaded.
        return BPRRecommender(**p, random_state=seed, num_threads=1)
    if candidate.family == "item_item":
        return ItemItemRecommender(**p)
    if candidate.family == "hybrid":
        return HybridRecommender(**p, random_state=seed)
    raise ValueError(f"unknown model family {candidate.family!r}")


def _fit(candidate: Candidate, split: Split, seed: int) -> Recommender:
    model = _build(candidate, seed)
    matrix = split.matrix(candidate.matrix)
    if isinstance(model, HybridRecommender):
        return model.fit(matrix, item_popularity=split.popularity(RECENT_POPULARITY_DAYS))
    return model.fit(matrix)


def _recommend(model: Recommender, split: Split, matrix: csr_matrix, task: Task, k: int) -> np.ndarray:
    """Top-k item positions for the task's customers, shape (n_customers, k), padded with -1."""
    truth = split.truth[task]
    rows = matrix[truth.user_idxs]
    if task == "next_purchases":
        ids, _ = model.recommend_batch(truth.user_idxs, rows, k, exclude_seen=False)
        return ids
    # Discovery never shows a bought item, even one the matrix dropped because it was fully returned.
    bought = split.counts[truth.user_idxs]
    hidden = (bought > 0).astype(np.int8) - (rows > 0).astype(np.int8)
    margin = int(max(np.asarray((hidden > 0).sum(axis=1)).max(initial=0), 0))
    ids, _ = model.recommend_batch(truth.user_idxs, rows, k + margin, exclude_seen=True)
    if margin:
        bought_mask = np.zeros(ids.shape, dtype=bool)
        valid = ids >= 0
        r, c = np.nonzero(valid)
        bought_mask[r, c] = np.asarray(bought[r, ids[r, c]]).ravel() > 0
        ids = np.where(bought_mask, -1, ids)
        order = np.argsort(ids < 0, axis=1, kind="stable")
        ids = np.take_along_axis(ids, order, axis=1)
    return ids[:, :k]


def _score_task(recs: np.ndarray, split: Split, task: Task, k: int) -> Metrics:
    t = split.truth[task]
    return ranking_metrics(recs, t.relevant, k, len(split.items), t.n_relevant)


def _popularity_recs(split: Split, task: Task, k: int) -> np.ndarray:
    return _recommend(split.popularity_model(POPULARITY_DAYS), split, split.counts, task, k)


#: Customers x items cells of dense scores held at once, here (the baselines) and by the tuning's
#: candidates (`recommender.selection`): customers are scored in blocks of rows (The Complete Journey: 64
#: of 2,034 customers over 65,000 items, 32 MiB a float64 block, against about 5 GiB for all of them at
#: once); each row is scored alone, so the lists do not depend on it.
BLOCK_CELLS = 1 << 22


def block_rows(n_items: int, most: int | None = None) -> int:
    """Customers per block of dense (customers x items) scores: `BLOCK_CELLS` cells' worth, at least one,
    at most ``most`` where given."""
    rows = max(1, BLOCK_CELLS // max(n_items, 1))
    return rows if most is None else min(rows, max(1, most))


def _top_k_in_blocks(
    users: np.ndarray, n_items: int, k: int, scores: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """`top_k_rows` of ``scores(block)`` for blocks of `users`, shape (users.size, k), padded with -1."""
    size = block_rows(n_items)
    ids = np.full((users.size, k), -1, dtype=np.int32)
    for start in range(0, users.size, size):
        ids[start : start + size], _ = top_k_rows(scores(users[start : start + size]), k)
    return ids


def _personal_top_frequency_recs(split: Split, k: int) -> np.ndarray:
    """The customer's own items by number of order lines, ties to the latest bought, then bestsellers."""
    t = split.truth["next_purchases"]
    pop = split.popularity(POPULARITY_DAYS)
    scale = max(float(split.last_day[t.user_idxs].max()), 1.0) + 1.0 if t.user_idxs.size else 2.0
    prior = pop[None, :] / max(float(pop.max(initial=0.0)), 1.0)

    def scores(users: np.ndarray) -> np.ndarray:
        counts = split.counts[users].toarray()
        last = split.last_day[users].toarray()
        # own count dominates, then recency (< 1), then popularity (< 1 / scale), lexicographically.
        out = np.where(counts > 0, counts + last / scale, 0.0) * (scale + 1.0)
        out += prior
        return out

    return _top_k_in_blocks(t.user_idxs, len(split.items), k, scores)


def purchase_days(split: Split) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The training sales as (customer row, item column, day number) arrays, one entry per order line."""
    t = split.train.select(split.train.is_sale)
    return split.users.index_of(t.user_ids), split.items.index_of(t.item_ids), t.days


def _tifu_knn_recs(split: Split, k: int, params: Mapping[str, Any]) -> np.ndarray:
    """TIFU-KNN's top items (baskets: a customer's purchase days), then bestsellers where it scores 0."""
    t = split.truth["next_purchases"]
    users, items, days = purchase_days(split)
    model = TIFUKNN(**params).fit(users, items, days, len(split.users), len(split.items))
    pop = split.popularity(POPULARITY_DAYS)
    prior = pop[None, :] / max(float(pop.max(initial=0.0)), 1.0)

    def padded(rows: np.ndarray) -> np.ndarray:
        scores = model.scores(rows)
        return np.where(scores > 0, scores + 2.0, prior)

    return _top_k_in_blocks(t.user_idxs, len(split.items), k, padded)


def _item_knn_recs(split: Split, task: Task, k: int) -> np.ndarray:
    """Untuned baseline: cosine item-kNN (K=100) on order-line counts."""
    matrix = split.matrix(_NO_DECAY)
    model = ItemItemRecommender(kind="cosine", K=100).fit(matrix)
    return _recommend(model, split, matrix, task, k)


def _baselines(split: Split, k: int) -> dict[Task, dict[str, Metrics]]:
    out: dict[Task, dict[str, Metrics]] = {task: {} for task in TASKS}
    for task in TASKS:
        out[task]["popularity"] = _score_task(_popularity_recs(split, task, k), split, task, k)
        if task == "next_purchases":
            out[task]["personal_top_frequency"] = _score_task(
                _personal_top_frequency_recs(split, k), split, task, k
            )
            for name, params in zip(TIFU_KNN, PUBLISHED_PARAMS.values(), strict=True):
                out[task][name] = _score_task(_tifu_knn_recs(split, k, params), split, task, k)
        out[task]["item_knn"] = _score_task(_item_knn_recs(split, task, k), split, task, k)
    return out


def _variants(
    model: Recommender, candidate: Candidate, task: Task
) -> list[tuple[dict[str, Any], Recommender]]:
    blends = candidate.blends.get(task)
    if not blends or not isinstance(model, HybridRecommender):
        return [({}, model)]
    return [(dict(b), model.with_blend(**b)) for b in blends]


@dataclass(frozen=True)
class ServedLists:
    """Top-k lists made outside the protocol (by the configuration that is served), for one split.

    ``recs[task]`` has one row per customer of ``split.truth[task].user_idxs`` (same order): catalogue
    positions of the split, best first, padded with -1, shape (n_customers, >= k). ``params[task]``
    describes the configuration serving that task (shown with the chosen ones).
    """

    recs: Mapping[Task, np.ndarray]
    params: Mapping[Task, Mapping[str, Any]]
    #: How the configuration was chosen (JSON, e.g. a tuning record) and lines that say so.
    tuning: Mapping[str, Any] | None = None
    notes: Sequence[str] = ()


def _better(a: Metrics, b: Metrics | None) -> bool:
    return b is None or (a.recall, a.ndcg) > (b.recall, b.ndcg)


# ---------------------------------------------------------------------------------------------- result
@dataclass(frozen=True)
class EvaluationResult:
    """Test metrics of every baseline and tuned model, per task, with the chosen configurations.

    ``test[task][name]`` and ``validation[task][name]`` are `Metrics`; ``chosen[task][name]`` the
    parameters picked on the validation window (models only), and the served configuration's under
    `SERVED`. ``default`` names the starred row: `SERVED` when the caller gave one, else `DEFAULT_MODEL`.
    """

    cut: np.datetime64
    validation_cut: np.datetime64
    test_days: int
    k: int
    default: str
    test: dict[Task, dict[str, Metrics]]
    validation: dict[Task, dict[str, Metrics]]
    chosen: dict[Task, dict[str, dict[str, Any]]]
    catalog_items: int
    train_customers: int
    #: Per task: the served row minus the best baseline on the test window (recall@k, paired bootstrap).
    intervals: dict[Task, dict[str, Any]] = field(default_factory=dict)
    tuning: Mapping[str, Any] | None = None
    notes: Sequence[str] = ()

    def to_json(self, dataset: str) -> dict[str, Any]:
        """The ``giftrec evaluate --json`` object."""
        return {
            "dataset": dataset,
            "cut": _iso(self.cut),
            "k": self.k,
            "default": self.default,
            "served": {t: self.chosen[t][SERVED] for t in TASKS} if self.default == SERVED else None,
            "tasks": {
                task: {name: m.as_dict(self.k) for name, m in self.test[task].items()} for task in TASKS
            },
            "intervals": self.intervals,
            "tuning": self.tuning,
            "notes": list(self.notes),
        }


def _iso(value: np.datetime64) -> str:
    return dt.datetime.fromisoformat(str(value.astype("datetime64[s]"))).isoformat(sep=" ")


def format_table(result: EvaluationResult, dataset: str) -> str:
    """Plain-text tables (one per task) of the test metrics; the default model is starred."""
    k = result.k
    cols = ["recall", "precision", "ndcg", "map", "hit_rate", "coverage"]
    lines = [
        f"dataset: {dataset}",
        f"cut: {_iso(result.cut)} (test = last {result.test_days} days; validation cut "
        f"{_iso(result.validation_cut)}), k = {k}",
        f"catalogue: {result.catalog_items} items, {result.train_customers} customers before the cut",
    ]
    for task in TASKS:
        rows = result.test[task]
        n = next(iter(rows.values())).customers if rows else 0
        lines += ["", f"{task} ({n} customers)"]
        header = f"{'model':<38}" + "".join(f"{c + '@' + str(k):>14}" for c in cols)
        lines += [header, "-" * len(header)]
        for name, m in rows.items():
            label = f"{name} *" if name == result.default else name
            values = [m.recall, m.precision, m.ndcg, m.map, m.hit_rate, m.coverage]
            lines.append(f"{label:<38}" + "".join(f"{v:>14.4f}" for v in values))
        for name, params in result.chosen[task].items():
            lines.append(f"  {name}: {params}")
        ci = result.intervals.get(task)
        if ci is not None:
            lines.append(
                f"  {result.default} - best baseline ({ci['baseline']}): recall@{k} {ci['difference']:+.4f}, "
                f"{ci['confidence']:.0%} CI [{ci['low']:+.4f}, {ci['high']:+.4f}] (paired bootstrap over "
                f"{ci['customers']} customers{'' if ci['beyond_noise'] else '; not beyond noise'})"
            )
    if result.notes:
        lines += ["", *result.notes]
    if result.default == SERVED:
        lines += ["", "* = what `giftrec train` serves with the current settings, measured as served"]
    else:
        lines += ["", f"* = the default model family ({result.default}), tuned on the validation window"]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- driver
def evaluate(
    history: OrderHistory,
    *,
    test_days: int = 30,
    k: int = 10,
    seed: int = 42,
    grids: Mapping[str, Sequence[Candidate]] | None = None,
    progress: Callable[[str], None] | None = None,
    served: Callable[[Split, int], ServedLists] | None = None,
) -> EvaluationResult:
    """Run the whole protocol: tune every model on the validation window, refit, score on the test window.

    Parameters
    ----------
    history : OrderHistory
        All order lines (guests and returns included).
    test_days : int
        Length of the test window (and of the validation window before it).
    k : int
        List length.
    seed : int
        Seed of every model (results are deterministic for a given seed).
    grids : mapping family -> candidates, optional
        Search space per model family (default `DEFAULT_GRIDS`); must contain ``DEFAULT_MODEL``.
    progress : callable, optional
        Receives one line of text per step.
    served : callable (split, k) -> ServedLists, optional
        The configuration that is served: called once with the test split; its lists are scored as row
        `SERVED`, which becomes the result's ``default``. Never tuned here.

    Returns
    -------
    EvaluationResult
    """
    pin_blas_threads()
    grids = DEFAULT_GRIDS if grids is None else grids
    if DEFAULT_MODEL not in grids:
        raise ValueError(f"grids must contain the default model {DEFAULT_MODEL!r}")
    say = progress or (lambda _msg: None)
    cut = temporal_cut(history.timestamps, test_days)
    validation_cut = cut - test_days * _DAY
    val = make_split(history, validation_cut, cut)
    full = make_split(history, cut)
    if full.truth["next_purchases"].user_idxs.size == 0:
        raise ValueError(f"no customer bought both before and after the cut ({_iso(cut)})")

    validation: dict[Task, dict[str, Metrics]] = {task: {} for task in TASKS}
    chosen: dict[Task, dict[str, dict[str, Any]]] = {task: {} for task in TASKS}
    picks: dict[Task, dict[str, tuple[Candidate, dict[str, Any]]]] = {task: {} for task in TASKS}
    for family, candidates in grids.items():
        for candidate in candidates:
            model = _fit(candidate, val, seed)
            matrix = val.matrix(candidate.matrix)
            for task in TASKS:
                if val.truth[task].user_idxs.size == 0:
                    # Too little history for a validation window: keep the first configuration.
                    if family not in picks[task]:
                        blend = dict(candidate.blends.get(task, [{}])[0])
                        picks[task][family] = (candidate, blend)
                        chosen[task][family] = candidate.describe(blend)
                    continue
                for blend, variant in _variants(model, candidate, task):
                    m = _score_task(_recommend(variant, val, matrix, task, k), val, task, k)
                    if _better(m, validation[task].get(family)):
                        validation[task][family] = m
                        picks[task][family] = (candidate, blend)
                        chosen[task][family] = candidate.describe(blend)
        say(f"tuned {family}: " + "; ".join(f"{t} {chosen[t][family]}" for t in TASKS))

    test = _baselines(full, k)
    say("scored the baselines")
    fitted: dict[int, Recommender] = {}  # by id(candidate)
    for family in grids:
        for task in TASKS:
            candidate, blend = picks[task][family]
            if id(candidate) not in fitted:
                fitted[id(candidate)] = _fit(candidate, full, seed)
            model = fitted[id(candidate)]
            if blend and isinstance(model, HybridRecommender):
                model = model.with_blend(**blend)
            recs = _recommend(model, full, full.matrix(candidate.matrix), task, k)
            test[task][family] = _score_task(recs, full, task, k)
        say(f"refitted and scored {family}")
    default = DEFAULT_MODEL
    tuning: Mapping[str, Any] | None = None
    notes: Sequence[str] = ()
    if served is not None:
        lists = served(full, k)
        for task in TASKS:
            test[task][SERVED] = _score_task(np.asarray(lists.recs[task]), full, task, k)
            chosen[task][SERVED] = dict(lists.params[task])
        default = SERVED
        tuning, notes = lists.tuning, lists.notes
        say("scored the served configuration")
    intervals = {task: _interval(test[task], default, seed) for task in TASKS}
    return EvaluationResult(
        cut=cut,
        validation_cut=validation_cut,
        test_days=test_days,
        k=k,
        default=default,
        test=test,
        validation=validation,
        chosen=chosen,
        catalog_items=len(full.items),
        train_customers=len(full.users),
        intervals={t: ci for t, ci in intervals.items() if ci is not None},
        tuning=tuning,
        notes=notes,
    )


def _interval(rows: Mapping[str, Metrics], name: str, seed: int) -> dict[str, Any] | None:
    """`name` minus the best baseline (by recall@k on this window): paired bootstrap 95% CI of recall@k."""
    ours = rows.get(name)
    baselines = [(b, rows[b]) for b in BASELINES if b in rows]
    if ours is None or not baselines or ours.customers < 2:
        return None
    base_name, base = max(baselines, key=lambda nb: (nb[1].recall, nb[1].ndcg))
    assert ours.per_customer_recall is not None and base.per_customer_recall is not None
    diff = paired_difference(ours.per_customer_recall, base.per_customer_recall, seed=seed)
    return {
        "baseline": base_name,
        "confidence": diff.confidence,
        "beyond_noise": diff.beyond_noise,
        **diff.as_dict(),
    }
