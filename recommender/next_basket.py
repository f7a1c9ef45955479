"""The served next-purchase ranking: own and new candidate items, ranked by a learned classifier.

Two stages, as next-basket recommenders usually are:

1. **Candidates** per customer: every item the customer bought before (repeats), plus items new to the
   customer from the collaborative side: the ``new_per_source`` best of item-kNN (co-purchase cosine
   neighbours of the customer's recency-weighted items), of TIFU-KNN's neighbour part (what the nearest
   customers buy) and of the recent bestsellers (distinct buyers over the last ``horizon`` days).
2. **A learned ranker** (scikit-learn's `HistGradientBoostingClassifier`) estimates for every candidate
   the chance that the customer buys it within ``horizon`` days, from the features in `FEATURES`: the
   customer's own history of the item (:class:`~recommender.repeat_ranking.RepeatRanker`'s features:
   repurchase chance, decayed line and day counts, recency, TIFU-KNN neighbours), the item's popularity
   (buyers over 7, 30 and 90 days), trend, repeat rate across customers and age, the item-kNN score, the
   ALS score and its rank among all items for the customer (implicit's ALS with the served collaborative
   model's settings, fitted on log1p(order lines) as of the same day as the other features), and the
   customer's frequency, recency, basket size and BG/NBD chance of buying at all.

The classifier learns from the shop's own past without looking past "today": :meth:`NextBasketRanker.fit`
builds the candidates and features as of ``now - horizon``, labels them with what each customer bought in
the ``horizon`` days up to ``now`` (customers who bought in that window), fits the classifier, then builds
the candidates and features as of ``now`` and scores them. Those scores are what :meth:`rank` serves.
The classifier's settings (`RANKER_PARAMS`) were chosen on a validation window before the test window of
``giftrec evaluate`` (`bench/tune_next_purchase.py`, docs/quality.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.sparse import csr_matrix
from threadpoolctl import threadpool_limits

from recommender.base import NotFittedError, RecommenderError
from recommender.collaborative import ALSRecommender
from recommender.evaluation import block_rows
from recommender.next_purchase import NextPurchaseModel
from recommender.repeat_ranking import RepeatRanker, recent_buyers
from recommender.threads import pin_blas_threads

if TYPE_CHECKING:  # imported where used: scikit-learn (with scipy.stats) is a second of CPU to import
    from sklearn.ensemble import HistGradientBoostingClassifier

__all__ = [
    "FEATURES",
    "RANKER_PARAMS",
    "Candidates",
    "NextBasketRanker",
    "Purchases",
    "candidate_features",
    "training_examples",
]

FEATURES = (
    "is_own",
    "chance",
    "lines",
    "days",
    "recent",
    "neighbours",
    "chance_raw",
    "own_days",
    "since_item",
    "knn",
    "knn_rank",
    "neighbours_raw",
    "buyers_recent",
    "buyers_90",
    "trend",
    "item_repeat_rate",
    "item_age",
    "customer_days",
    "customer_since",
    "customer_items",
    "basket_size",
    "customer_chance",
    "als",
    "als_rank",
    "buyers_7",
)
#: The classifier's settings, chosen on the validation window (module docstring).
RANKER_PARAMS: dict[str, Any] = {
    "new_per_source": 20,
    "training_windows": 2,
    "max_iter": 400,
    "learning_rate": 0.03,
    "max_leaf_nodes": 15,
    "min_samples_leaf": 100,
    "l2_regularization": 1.0,
}
_CLASSIFIER_KEYS = ("max_iter", "learning_rate", "max_leaf_nodes", "min_samples_leaf", "l2_regularization")
#: Recall@k's list length: a customer's examples weigh 1 / min(bought items, k) in training, so that the
#: loss counts customers as recall@k does (one with 40 items bought does not outweigh one with 2).
_LIST_LENGTH = 10
#: Fewer positive examples than this and the classifier is not trained (`NextBasketRanker.note`).
_MIN_POSITIVES = 20
_KNN_NEIGHBOURS = 50  # co-purchase neighbours kept per item
#: The ALS of the served collaborative model (config/defaults.toml's [model]), on log1p(order lines);
#: one thread: the ranker is fitted in a background thread of the serving process.
_ALS: dict[str, Any] = {
    "factors": 64,
    "regularization": 0.1,
    "alpha": 2.0,
    "iterations": 15,
    "random_state": 42,
}
#: Customers per batch of dense (customers x items) scores, at most; on a large catalogue the batch is
#: `recommender.evaluation.BLOCK_CELLS` cells' worth (65,000 items: 64 customers, 32 MiB per array; about
#: ten such arrays are alive at once).
_CHUNK = 512
#: Non-zeros of item-item co-purchase counts held at once by `_cooccurrence_similarity` (about 60 bytes
#: each while a block is cut to its best neighbours: some 500 MB at most).
_COOCCURRENCE_CELLS = 8_000_000


class Candidates:
    """Candidate (customer, item) pairs and their feature matrix.

    Attributes
    ----------
    users, items : ndarray int64, shape (n_pairs,)
        Sorted by customer, then item.
    X : ndarray float64, shape (n_pairs, len(FEATURES))
    """

    def __init__(self, users: np.ndarray, items: np.ndarray, X: np.ndarray) -> None:
        self.users, self.items, self.X = users, items, X

    def __len__(self) -> int:
        return int(self.users.size)


def _cooccurrence_similarity(bought: csr_matrix, keep: int, block_cells: int | None = None) -> csr_matrix:
    """Item-item cosine of co-purchase (items x items), each row cut to its `keep` largest, no diagonal.

    Computed for blocks of items at a time (rows of the result), each block's co-purchase counts holding
    at most about `block_cells` (default `_COOCCURRENCE_CELLS`) non-zeros before the cut: the whole
    product ``bought.T @ bought`` has a non-zero for every pair of items one customer bought, hundreds of
    millions where households buy hundreds of items each (The Complete Journey: 10 GiB). The counts are
    sums of ones and each value is computed from its own pair, so the result does not depend on the
    blocks.
    """
    n = bought.shape[1]
    if keep < 1:
        return csr_matrix((n, n))
    b = bought.tocsr().astype(np.float64)
    b.data[:] = 1.0
    deg = np.sqrt(np.asarray(b.sum(axis=0)).ravel())
    budget = max(int(block_cells if block_cells is not None else _COOCCURRENCE_CELLS), 1)
    # an upper bound of each item row's non-zeros: the items of every customer who bought it
    bound = np.asarray(b.T @ np.diff(b.indptr).astype(np.float64)).ravel()
    bt = b.T.tocsr()
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    start = 0
    while start < n:
        # the longest run of items from `start` whose bound fits the budget (at least one item)
        stop = start + max(int(np.searchsorted(np.cumsum(bound[start:]), budget, side="right")), 1)
        co = (bt[start:stop] @ b).tocsr()
        row = np.repeat(np.arange(start, stop, dtype=np.int64), np.diff(co.indptr))
        col = co.indices.astype(np.int64)
        off = (row != col) & (co.data != 0)
        row, col, data = row[off], col[off], co.data[off]
        v = data / np.maximum(deg[row] * deg[col], 1e-12)
        # only values >= the row's `keep`-th largest can be among its `keep` best: cut before sorting
        bounds = np.searchsorted(row, np.arange(start, stop + 1))
        floor = np.full(stop - start, -np.inf)
        for r in np.flatnonzero(np.diff(bounds) > keep).tolist():
            part = v[bounds[r] : bounds[r + 1]]
            floor[r] = np.partition(part, part.size - keep)[part.size - keep]
        near = v >= floor[row - start]
        row, col, v = row[near], col[near], v[near]
        # keep each row's `keep` best (ties: lower column), deterministically
        order = np.lexsort((col, -v, row))
        row, col, v = row[order], col[order], v[order]
        starts = np.r_[0, np.flatnonzero(np.diff(row)) + 1] if row.size else np.zeros(0, np.int64)
        rank = np.arange(row.size) - np.repeat(starts, np.diff(np.r_[starts, row.size]))
        ok = rank < keep
        rows.append(row[ok])
        cols.append(col[ok])
        vals.append(v[ok])
        start = stop
    if not rows:
        return csr_matrix((n, n))
    return csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))


def _top_new(scores: np.ndarray, own: np.ndarray, n: int) -> np.ndarray:
    """Per row, the columns of the `n` largest positive scores that are not own; shape (rows, <= n),
    padded with -1. Ties go to the lower column (a stable sort of the negated scores)."""
    s = np.where(own, 0.0, scores)
    order = np.argsort(-s, axis=1, kind="stable")[:, :n]
    top = np.take_along_axis(s, order, axis=1)
    return np.where(top > 0, order, -1)


def _als_factors(
    u: np.ndarray, i: np.ndarray, lines: np.ndarray, n_users: int, n_items: int
) -> tuple[np.ndarray, np.ndarray]:
    """User and item factors of an ALS fitted on log1p(order lines) per (customer, item)."""
    counts = csr_matrix((lines.astype(np.float32), (u, i)), shape=(n_users, n_items))
    counts.sum_duplicates()
    counts.data = np.log1p(counts.data)
    als = ALSRecommender(**_ALS, num_threads=1).fit(counts)
    return als.user_factors, als.item_factors


def _rank_in_row(scores: np.ndarray) -> np.ndarray:
    """Each entry's 0-based rank in its row, largest first (ties: lower column first)."""
    return np.argsort(np.argsort(-scores, axis=1, kind="stable"), axis=1, kind="stable").astype(np.float64)


@dataclass(frozen=True)
class Purchases:
    """Distinct (customer row, item column, day) purchases and the order lines behind each, shape (n,)."""

    u: np.ndarray
    i: np.ndarray
    d: np.ndarray
    lines: np.ndarray
    n_users: int
    n_items: int


def candidate_features(
    purchases: Purchases,
    now: int,
    *,
    horizon: float,
    new_per_source: int,
    users: np.ndarray | None = None,
) -> tuple[Candidates, NextPurchaseModel]:
    """Candidates and features as of day `now` from `purchases` on days <= `now` (module docstring);
    later ones are ignored.

    Parameters
    ----------
    users : ndarray of int, optional
        Customers to build candidates for (default: everyone with a purchase).

    Returns
    -------
    (Candidates, the repurchase model fitted at `now`)
    """
    # BLAS on one thread for the whole build, not from the first ALS fit on: sums computed with another
    # thread count differ in the last bits, and the endpoint's and evaluate's fits must give equal lists
    pin_blas_threads()
    n_users, n_items = purchases.n_users, purchases.n_items
    seen = purchases.d <= now
    u, i, d, lines = purchases.u[seen], purchases.i[seen], purchases.d[seen], purchases.lines[seen]
    if u.size == 0:
        raise RecommenderError("no purchases before the cut")
    base = RepeatRanker(horizon=horizon)
    base.fit(u, i, d, lines, n_users, n_items, now)
    own = base._own  # the customer's own-item matrices (customers x items)
    shape = (n_users, n_items)
    # item level
    pairs = np.unique(u * n_items + i)
    pair_days = np.bincount(np.searchsorted(pairs, u * n_items + i), minlength=pairs.size)
    item_of = pairs % n_items
    buyers_all = np.bincount(item_of, minlength=n_items).astype(np.float64)
    repeaters = np.bincount(item_of[pair_days >= 2], minlength=n_items).astype(np.float64)
    item_repeat = (repeaters + 0.5) / (buyers_all + 2.0)
    first_sale = np.full(n_items, now + 1, dtype=np.int64)
    np.minimum.at(first_sale, i, d)
    item_age = (now - first_sale).astype(np.float64).clip(min=0)
    buyers_recent = recent_buyers(u, i, d, n_items, now - int(horizon))
    buyers_90 = recent_buyers(u, i, d, n_items, now - 90)
    trend = buyers_recent / np.maximum(buyers_90 * horizon / 90.0, 1.0)
    buyers_7 = recent_buyers(u, i, d, n_items, now - 7)
    popular = np.lexsort((np.arange(n_items), -buyers_recent))[:new_per_source]
    user_factors, item_factors = _als_factors(u, i, lines, n_users, n_items)
    # customer level
    model = base.model
    summary = model.summary
    assert summary is not None
    basket_lines = np.bincount(u, weights=np.ones(u.size), minlength=n_users)
    n_baskets = summary.frequency + summary.has_purchases
    basket_size = basket_lines / np.maximum(n_baskets, 1)
    cust_items = np.diff(own["days"].indptr).astype(np.float64)
    p_buy = model.bgnbd.probability_of_purchase(horizon, summary.frequency, summary.recency, summary.T)
    cust_chance = np.where(summary.has_purchases, np.nan_to_num(p_buy), 0.0)
    own_days = csr_matrix((np.ones(u.size), (u, i)), shape=shape)
    own_days.sum_duplicates()
    key = u * n_items + i
    order = np.lexsort((d, key))
    last_of = np.r_[key[order][1:] != key[order][:-1], True]
    last_pairs = key[order][last_of]
    last_days = d[order][last_of]
    similarity = _cooccurrence_similarity(own["days"], _KNN_NEIGHBOURS)
    recency_rows = own["days"].tocsr()
    wanted = np.flatnonzero(summary.has_purchases) if users is None else np.asarray(users, np.int64)
    wanted = np.sort(wanted[summary.has_purchases[wanted]])
    out_u: list[np.ndarray] = []
    out_i: list[np.ndarray] = []
    out_x: list[np.ndarray] = []
    per_chunk = block_rows(n_items, most=_CHUNK)
    for start in range(0, wanted.size, per_chunk):
        chunk = wanted[start : start + per_chunk]
        own_rows = own["days"][chunk]
        mine = own_rows.toarray() > 0
        knn = np.asarray((recency_rows[chunk] @ similarity).todense())
        neigh = base.tifu.neighbour_scores(chunk)
        als = user_factors[chunk].astype(np.float64) @ item_factors.T.astype(np.float64)
        cand = mine.copy()
        for scores in (knn, neigh):
            top = _top_new(scores, mine, new_per_source)
            r, c = np.nonzero(top >= 0)
            cand[r, top[r, c]] = True
        cand[:, popular] = True
        r, c = np.nonzero(cand)  # row-major: by customer, then item
        cu = chunk[r]
        feats: dict[str, np.ndarray] = {"is_own": mine[r, c].astype(np.float64)}
        for name in ("chance", "lines", "days", "recent"):
            m = own[name][chunk]
            dense = m.toarray()
            peak = dense.max(axis=1, initial=0.0)
            feats[name] = dense[r, c] / np.where(peak > 0, peak, 1.0)[r]
            if name == "chance":
                feats["chance_raw"] = dense[r, c]
        neigh_peak = neigh.max(axis=1, initial=0.0)
        feats["neighbours"] = neigh[r, c] / np.where(neigh_peak > 0, neigh_peak, 1.0)[r]
        feats["neighbours_raw"] = neigh[r, c]
        feats["own_days"] = own_days[chunk].toarray()[r, c]
        pair_key = cu * n_items + c
        at = np.searchsorted(last_pairs, pair_key)
        found = (at < last_pairs.size) & (last_pairs[np.minimum(at, last_pairs.size - 1)] == pair_key)
        feats["since_item"] = np.where(found, now - last_days[np.minimum(at, last_pairs.size - 1)], 400.0)
        feats["knn"] = knn[r, c]
        feats["knn_rank"] = _rank_in_row(knn)[r, c]
        feats["als"] = als[r, c]
        feats["als_rank"] = _rank_in_row(als)[r, c]
        feats["buyers_7"] = buyers_7[c]
        feats["buyers_recent"] = buyers_recent[c]
        feats["buyers_90"] = buyers_90[c]
        feats["trend"] = trend[c]
        feats["item_repeat_rate"] = item_repeat[c]
        feats["item_age"] = item_age[c]
        feats["customer_days"] = n_baskets[cu].astype(np.float64)
        feats["customer_since"] = (now - summary.last[cu]).astype(np.float64)
        feats["customer_items"] = cust_items[cu]
        feats["basket_size"] = basket_size[cu]
        feats["customer_chance"] = cust_chance[cu]
        out_u.append(cu)
        out_i.append(c.astype(np.int64))
        out_x.append(np.column_stack([feats[f] for f in FEATURES]))
    if not out_u:
        empty = np.empty(0, np.int64)
        return Candidates(empty, empty, np.empty((0, len(FEATURES)))), model
    return Candidates(np.concatenate(out_u), np.concatenate(out_i), np.vstack(out_x)), model


def training_examples(
    purchases: Purchases,
    now: int,
    *,
    horizon: float,
    new_per_source: int,
    windows: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labelled examples from the `windows` label windows of `horizon` days ending at `now`, newest first.

    For the window ``(t, t + horizon]`` the candidates and features are built as of day ``t`` for the
    customers who bought in the window, and a candidate is positive if the customer bought it in the
    window. Nothing after `now` is read.

    Returns
    -------
    X : ndarray float64, shape (n_examples, len(FEATURES))
    y : ndarray bool, shape (n_examples,)
    weight : ndarray float64, shape (n_examples,), 1 / min(the customer's items in the window, 10)
    """
    u, i, d, n_users, n_items = purchases.u, purchases.i, purchases.d, purchases.n_users, purchases.n_items
    h = int(round(horizon))
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    ws: list[np.ndarray] = []
    first = int(d.min()) if d.size else now
    for w in range(windows):
        t = now - h * (w + 1)
        if t <= first:
            break  # no history before the window
        label = (d > t) & (d <= t + h)
        keys = np.unique(u[label] * n_items + i[label])
        if keys.size == 0:
            continue
        buyers = keys // n_items
        try:
            cands, _ = candidate_features(
                purchases, t, horizon=horizon, new_per_source=new_per_source, users=np.unique(buyers)
            )
        except RecommenderError:
            continue  # too little history before this window to fit the features' models
        if not len(cands):
            continue
        per_customer = np.bincount(buyers, minlength=n_users)
        xs.append(cands.X)
        ys.append(np.isin(cands.users * n_items + cands.items, keys))
        ws.append(1.0 / np.minimum(per_customer[cands.users], _LIST_LENGTH))
    if not xs:
        return np.empty((0, len(FEATURES))), np.empty(0, bool), np.empty(0)
    return np.vstack(xs), np.concatenate(ys), np.concatenate(ws)


class NextBasketRanker:
    """Own and new candidate items ranked by a learned classifier (module docstring).

    Parameters
    ----------
    horizon : float
        Days ahead: the label window of the training examples and of the repurchase chances.
    params : mapping, optional
        Overrides of `RANKER_PARAMS` (tuning).
    seed : int
        The classifier's random_state.

    Attributes
    ----------
    model : NextPurchaseModel
        BG/NBD + repurchase intervals fitted at ``now`` (the endpoint's timing estimates).
    classifier : HistGradientBoostingClassifier or None
        None when the data had too few examples to learn from; then own items are ranked by
        `recommender.repeat_ranking.RepeatRanker`'s fixed blend and `note` says why.
    """

    def __init__(self, horizon: float = 30.0, params: dict[str, Any] | None = None, seed: int = 0) -> None:
        if horizon < 1:
            raise ValueError("horizon must be >= 1 day")
        unknown = set(params or {}) - set(RANKER_PARAMS)
        if unknown:
            raise ValueError(f"unknown ranker parameters {sorted(unknown)}")
        self.horizon = float(horizon)
        self.params: dict[str, Any] = {**RANKER_PARAMS, **(params or {})}
        self.seed = int(seed)
        self.model = NextPurchaseModel(horizon=horizon)
        self.classifier: HistGradientBoostingClassifier | None = None
        self.note: str | None = None
        self._indptr = np.zeros(1, np.int64)
        self._items = np.empty(0, np.int64)
        self._scores = np.empty(0)
        self._own = np.empty(0, bool)
        self._fitted = False

    @property
    def is_fitted(self) -> bool:
        return self._fitted

    def fit(self, purchases: Purchases, now: int) -> NextBasketRanker:
        """Learn from the windows before `now`, then score every customer's candidates as of `now`.

        `purchases` holds none after `now`; returns self.
        """
        shapes = {a.shape for a in (purchases.u, purchases.i, purchases.d, purchases.lines)}
        if len(shapes) != 1:
            raise ValueError("users, items, days and lines must have one entry per purchase")
        if purchases.lines.size and purchases.lines.min() < 1:
            raise ValueError("lines must have one count >= 1 per purchase")
        p = self.params
        n_users = purchases.n_users
        per_source = int(p["new_per_source"])
        X, y, w = training_examples(
            purchases,
            now,
            horizon=self.horizon,
            new_per_source=per_source,
            windows=int(p["training_windows"]),
        )
        self.classifier, self.note = None, None
        if int(y.sum()) < _MIN_POSITIVES or int((~y).sum()) < _MIN_POSITIVES:
            self.note = (
                f"too little history to learn the ranking ({int(y.sum())} purchases in the "
                f"{int(p['training_windows'])} windows of {self.horizon:g} days): own items by a fixed blend"
            )
        else:
            # one OpenMP thread: a serving process shares its cores with its own requests, and the
            # ensemble is the same whatever the thread count
            from sklearn.ensemble import HistGradientBoostingClassifier

            with threadpool_limits(limits=1, user_api="openmp"):
                self.classifier = HistGradientBoostingClassifier(
                    random_state=self.seed, early_stopping=False, **{k: p[k] for k in _CLASSIFIER_KEYS}
                ).fit(X, y, sample_weight=w)
        cands, self.model = candidate_features(
            purchases, now, horizon=self.horizon, new_per_source=per_source
        )
        own = cands.X[:, FEATURES.index("is_own")] > 0
        if self.classifier is not None:
            with threadpool_limits(limits=1, user_api="openmp"):
                scores = self.classifier.predict_proba(cands.X)[:, 1] if len(cands) else np.empty(0)
        else:
            blend = {
                "chance": 1.0,
                "lines": 0.5,
                "recent": 0.1,
                "neighbours": 0.5,
            }  # RepeatRanker's weights, no trend
            scores = sum(
                (wt * cands.X[:, FEATURES.index(f)] for f, wt in blend.items()), np.zeros(len(cands))
            )
            keep = own
            cands = Candidates(cands.users[keep], cands.items[keep], cands.X[keep])
            scores, own = scores[keep], own[keep]
        self._indptr = np.searchsorted(cands.users, np.arange(n_users + 1)).astype(np.int64)
        self._items, self._scores, self._own = cands.items, np.asarray(scores, np.float64), own
        self._fitted = True
        return self

    def rank(
        self, user_idx: int, n: int, *, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The customer's candidates best first: ``(item_idxs, scores)``, at most `n`, only `allowed` ones.

        Scores are the classifier's chance of buying within the horizon (the fixed blend's score without a
        classifier). Ties go to the lower item index.
        """
        if not self._fitted:
            raise NotFittedError("NextBasketRanker is not fitted: call fit() first")
        sl = slice(int(self._indptr[user_idx]), int(self._indptr[user_idx + 1]))
        items, score = self._items[sl], self._scores[sl]
        if allowed is not None:
            keep = np.asarray(allowed, dtype=bool)[items]
            items, score = items[keep], score[keep]
        order = np.lexsort((items, -score))[: max(n, 0)]
        return items[order], score[order]

    def is_own(self, user_idx: int, item_idxs: np.ndarray) -> np.ndarray:
        """Whether the customer bought each item before (bool, shape of `item_idxs`)."""
        sl = slice(int(self._indptr[user_idx]), int(self._indptr[user_idx + 1]))
        items, own = self._items[sl], self._own[sl]
        at = np.searchsorted(items, item_idxs)
        at = np.minimum(at, max(items.size - 1, 0))
        return (
            (items.size > 0) & (items[at] == item_idxs) & own[at]
            if items.size
            else np.zeros(np.shape(item_idxs), bool)
        )
