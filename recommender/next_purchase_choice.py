"""Which next-purchase ranking a shop serves: the learned ranker or a simple baseline, chosen on validation.

The learned :class:`~recommender.next_basket.NextBasketRanker` does not win on every shop (on a shop whose
customers buy once or twice, the customer's own items then the bestsellers do better). So, as the hybrid's
blends are chosen per shop (:mod:`recommender.selection`), the ranking is chosen among the simple
baselines themselves and the learned ranker, on what the customers bought in a validation window just
before ``now``: each candidate is fitted on the purchases before the window and scored by recall@k (then
NDCG@k) of its lists; on a tie the simpler candidate (listed first) wins. The window ahead of the choice
may be a season the recent window does not resemble (a December peak after a quiet November): when the
data covers it, the same window one year earlier (the ``validation_days`` after ``now - YEAR``, each
candidate fitted on the purchases before it) is scored too, and its customers join the validation
customers. The burden of proof is on the learned ranker: it serves only when it leads the best baseline
beyond noise, that is when the paired bootstrap 95% interval of its per-customer recall@k minus the best
baseline's, over the validation customers (`recommender.intervals.paired_difference`, as the test figures
of ``giftrec evaluate`` are compared), lies above zero; otherwise the best baseline on validation serves (a
simple ranking that is as good within noise is the safer one to serve: a shop's next window may not be
its validation window). The chosen one is then fitted on everything and served (:class:`BaselineRanker`
has the learned ranker's ``rank``).

The baselines are those of ``giftrec evaluate`` (`recommender.evaluation`), on the served purchase rows
(distinct customer, item, day with their order lines; registered customers only):

``popularity``
    Distinct buyers over the last `POPULARITY_DAYS` days; the same list for everyone.
``personal top-frequency``
    The customer's own items by order lines, ties to the latest bought, then the bestsellers.
``TIFU-KNN (<data set> parameters)``
    `recommender.tifuknn.TIFUKNN` with each parameter set of the paper, then the bestsellers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix, vstack

from recommender.base import NotFittedError, top_k
from recommender.evaluation import Metrics, block_rows, ranking_metrics
from recommender.intervals import Difference, paired_difference
from recommender.next_basket import NextBasketRanker, Purchases
from recommender.next_purchase import NextPurchaseModel
from recommender.repeat_ranking import recent_buyers
from recommender.tifuknn import PUBLISHED_PARAMS, TIFUKNN

__all__ = [
    "BASELINE_RANKINGS",
    "LEARNED",
    "POPULARITY_DAYS",
    "BaselineRanker",
    "YEAR",
    "RankingChoice",
    "choose_among",
    "choose_ranking",
    "ranking_candidates",
]

#: The learned ranker's name (the default: what serves when nothing was chosen).
LEARNED = "next-basket ranker"
POPULARITY_DAYS = 90
#: One year earlier, in days: the same calendar window as the one ahead.
YEAR = 365
#: The baselines, simplest first.
BASELINE_RANKINGS: tuple[str, ...] = (
    "popularity",
    "personal top-frequency",
    *(f"TIFU-KNN ({name} parameters)" for name in PUBLISHED_PARAMS),
)


def ranking_candidates() -> tuple[str, ...]:
    """Every candidate ranking, simplest first (a tie goes to the earlier one)."""
    return (*BASELINE_RANKINGS, LEARNED)


class BaselineRanker:
    """A simple baseline as the served next-purchase ranking, with `NextBasketRanker`'s ``rank``.

    Parameters
    ----------
    name : str
        One of `BASELINE_RANKINGS`.
    horizon : float
        Days ahead of the timing model (``model``) fitted beside it, as the learned ranker fits it.
    """

    def __init__(self, name: str, horizon: float = 30.0) -> None:
        if name not in BASELINE_RANKINGS:
            raise ValueError(f"unknown baseline ranking {name!r}; one of {BASELINE_RANKINGS}")
        self.name = name
        self.horizon = float(horizon)
        self.model = NextPurchaseModel(horizon=horizon)
        self.note: str | None = None
        self._popularity = np.zeros(0)
        self._lines: csr_matrix | None = None
        self._last: csr_matrix | None = None
        self._tifu: TIFUKNN | None = None
        #: As `NextBasketRanker`'s (the next-purchase run records them): no classifier, its name.
        self.classifier: None = None
        self.params: dict[str, Any] = {"baseline": name}

    @property
    def is_fitted(self) -> bool:
        return self._lines is not None

    def fit(self, purchases: Purchases, now: int, *, timing: bool = True) -> BaselineRanker:
        """Fit on the purchases up to day `now` (later ones are ignored); with `timing` also the timing
        model (what the endpoint's dates come from). Returns self."""
        p = purchases
        seen = p.d <= now
        u, i, d, lines = p.u[seen], p.i[seen], p.d[seen], p.lines[seen]
        shape = (p.n_users, p.n_items)
        self._popularity = recent_buyers(u, i, d, p.n_items, now - POPULARITY_DAYS).astype(np.float64)
        self._lines = csr_matrix((lines.astype(np.float64), (u, i)), shape=shape)
        self._lines.sum_duplicates()
        last = np.zeros(u.size, np.float64)
        if u.size:
            # the latest day of each (customer, item), as a sparse matrix: the newest row of each pair
            order = np.lexsort((d, i, u))
            newest = np.r_[(u[order][1:] != u[order][:-1]) | (i[order][1:] != i[order][:-1]), True]
            at = order[newest]
            last = d[at].astype(np.float64) - float(d.min()) + 1.0
            self._last = csr_matrix((last, (u[at], i[at])), shape=shape)
        else:
            self._last = csr_matrix(shape)
        if self.name.startswith("TIFU-KNN"):
            params = PUBLISHED_PARAMS[self.name.split("(")[1].split(" ")[0]]
            self._tifu = TIFUKNN(**params).fit(u, i, d, p.n_users, p.n_items)
        if timing:
            self.model.fit(u, i, d, p.n_users, p.n_items, now=now)
        return self

    def scores(self, user_idxs: np.ndarray) -> np.ndarray:
        """Ranking scores of these customers (float64, shape (n, n_items)) in (0, 1]: the baseline's own
        picks above 1/2, the bestsellers below it, 0 for an item nobody bought lately."""
        if self._lines is None or self._last is None:
            raise NotFittedError("BaselineRanker is not fitted: call fit() first")
        users = np.asarray(user_idxs, dtype=np.int64).reshape(-1)
        pop = self._popularity / max(float(self._popularity.max(initial=0.0)), 1.0)
        out = np.tile(pop / 2.0, (users.size, 1))  # the bestsellers, in [0, 1/2]
        if self.name == "popularity":
            return out
        if self._tifu is not None:
            size = block_rows(out.shape[1])  # dense rows over the catalogue, a block of customers at once
            own = (
                np.vstack([self._tifu.scores(users[s : s + size]) for s in range(0, users.size, size)])
                if users.size
                else np.zeros((0, out.shape[1]))
            )
        else:
            # order lines first, then the latest bought (< 1), as the protocol's baseline orders them
            last = self._last[users].toarray()
            scale = max(float(last.max(initial=0.0)), 1.0) + 1.0
            counts = self._lines[users].toarray()
            own = np.where(counts > 0, counts + last / scale, 0.0)
        peak = np.maximum(own.max(axis=1, keepdims=True, initial=0.0), 1e-300)
        return np.where(own > 0, 0.5 + 0.5 * own / peak, out)

    def rank(
        self, user_idx: int, n: int, *, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The customer's items best first: ``(item_idxs, scores)``, at most `n`, only `allowed` ones,
        never an item with score 0; ties go to the lower item index."""
        s = self.scores(np.array([user_idx]))[0]
        if allowed is not None:
            s = np.where(np.asarray(allowed, dtype=bool), s, -np.inf)
        s[s <= 0] = -np.inf
        items, scores = top_k(s, n)
        return items.astype(np.int64), scores.astype(np.float64)

    def lists(self, user_idxs: np.ndarray, k: int) -> np.ndarray:
        """`rank` of each customer (no `allowed`), shape (n, k), padded with -1."""
        users = np.asarray(user_idxs, dtype=np.int64)
        out = np.full((users.size, k), -1, dtype=np.int64)
        size = block_rows(self._popularity.size)
        for start in range(0, users.size, size):
            block = self.scores(users[start : start + size])
            for r, row in enumerate(block):
                row[row <= 0] = -np.inf
                items, _ = top_k(row, k)
                out[start + r, : items.size] = items
        return out


@dataclass(frozen=True)
class RankingChoice:
    """The outcome: ``chosen`` (a name of `ranking_candidates`), ``status`` ``tuned`` or ``default`` (too
    little data: the learned ranker, ``reason`` says why), every candidate's validation figures, best
    first, and ``lead``: the learned ranker's per-customer recall minus the best baseline's with the
    paired bootstrap interval (the learned ranker serves only when the interval is above zero)."""

    chosen: str
    status: str
    reason: str
    customers: int = 0
    ranking: Sequence[tuple[str, Metrics]] = field(default_factory=tuple)
    lead: Difference | None = None
    #: Of the ``customers``, those of the same window one year earlier (0: the data does not cover it).
    year_earlier: int = 0

    def record(self, k: int) -> dict[str, Any]:
        """JSON for the model run: the chosen ranking, the runner-up and the best baseline."""

        def entry(pair: tuple[str, Metrics] | None) -> dict[str, Any] | None:
            return None if pair is None else {"name": pair[0], **pair[1].as_dict(k)}

        best_baseline = next((r for r in self.ranking if r[0] != LEARNED), None)
        return {
            "status": self.status,
            "reason": self.reason,
            "chosen": self.chosen,
            "customers": self.customers,
            "year_earlier": self.year_earlier,
            "best": entry(self.ranking[0] if self.ranking else None),
            "runner_up": entry(self.ranking[1] if len(self.ranking) > 1 else None),
            "best_baseline": entry(best_baseline),
            "learned": entry(next((r for r in self.ranking if r[0] == LEARNED), None)),
            "lead": None
            if self.lead is None
            else {
                "name": LEARNED,
                "over": next(r[0] for r in self.ranking if r[0] != LEARNED),
                **self.lead.as_dict(),
                "confidence": self.lead.confidence,
                "beyond_noise": self.lead.low > 0,
            },
        }


def _learned_lists(
    purchases: Purchases,
    now: int,
    users: np.ndarray,
    k: int,
    horizon: float,
    params: Mapping[str, Any] | None,
) -> np.ndarray:
    ranker = NextBasketRanker(horizon=horizon, params=dict(params) if params else None).fit(purchases, now)
    out = np.full((users.size, k), -1, dtype=np.int64)
    for r, user in enumerate(users.tolist()):
        items, _ = ranker.rank(user, k)
        out[r, : items.size] = items
    return out


def choose_ranking(
    purchases: Purchases,
    now: int,
    *,
    validation_days: int,
    k: int,
    min_customers: int,
    horizon: float = 30.0,
    ranker_params: Mapping[str, Any] | None = None,
    candidates: Sequence[str] | None = None,
    seed: int = 42,
    year_earlier: bool = True,
) -> RankingChoice:
    """Choose the served next-purchase ranking on the `validation_days` up to day `now` (module docstring).

    Parameters
    ----------
    purchases : Purchases
        Distinct (customer, item, day) purchases up to `now`.
    now : int
        Day number of the newest purchase considered (the validation window is ``(now - validation_days,
        now]``).
    min_customers : int
        Fewer customers buying in the window (having bought before it) and the learned ranker serves,
        ``status`` ``default``.
    candidates : sequence of str, optional
        Default `ranking_candidates()`.
    seed : int
        Of the bootstrap that decides whether a baseline's lead over the learned ranker is beyond noise.
    year_earlier : bool
        Also score the candidates on the `validation_days` after ``now`` one year earlier (`YEAR` days),
        each fitted on the purchases before that window, when the purchases cover the `validation_days`
        before it (module docstring); its customers join the validation customers.
    """
    names = tuple(candidates) if candidates is not None else ranking_candidates()
    days = int(validation_days)
    windows = [_window(purchases, now - days, now)]
    customers = windows[0][0]
    if customers.size < min_customers:
        reason = (
            f"{customers.size} customers bought in the validation window of {validation_days} days, "
            f"fewer than {min_customers}: the learned ranker serves"
        )
        return RankingChoice(LEARNED, "default", reason, int(customers.size))
    earlier = now - YEAR
    if year_earlier and purchases.d.size and int(purchases.d.min()) <= earlier - days:
        windows.append(_window(purchases, earlier, earlier + days))
    relevant = vstack([w[1] for w in windows]).tocsr()
    scored: list[tuple[str, Metrics]] = []
    for name in names:
        parts = []
        for users, _, past, cut in windows:
            if name == LEARNED:
                parts.append(_learned_lists(past, cut, users, k, horizon, ranker_params))
            else:
                parts.append(BaselineRanker(name, horizon).fit(past, cut, timing=False).lists(users, k))
        scored.append((name, ranking_metrics(np.vstack(parts), relevant, k, purchases.n_items)))
    choice = choose_among(scored, int(relevant.shape[0]), seed=seed)
    if len(windows) > 1:
        choice = replace(choice, year_earlier=int(windows[1][0].size))
    return choice


def _window(purchases: Purchases, cut: int, end: int) -> tuple[np.ndarray, csr_matrix, Purchases, int]:
    """The customers who bought in the days ``(cut, end]`` having bought before (sorted), what they bought
    then (customers x items), the purchases up to `cut`, and `cut`."""
    before = purchases.d <= cut
    inside = (purchases.d > cut) & (purchases.d <= end)
    known = np.zeros(purchases.n_users, dtype=bool)
    known[purchases.u[before]] = True
    keep = inside & known[purchases.u]
    pairs = np.unique(purchases.u[keep] * purchases.n_items + purchases.i[keep])
    users, cols = pairs // purchases.n_items, pairs % purchases.n_items
    customers = np.unique(users)
    relevant = csr_matrix(
        (np.ones(pairs.size, np.float32), (np.searchsorted(customers, users), cols)),
        shape=(customers.size, purchases.n_items),
    )
    past = Purchases(
        purchases.u[before],
        purchases.i[before],
        purchases.d[before],
        purchases.lines[before],
        purchases.n_users,
        purchases.n_items,
    )
    return customers, relevant, past, cut


def choose_among(scored: Sequence[tuple[str, Metrics]], customers: int, *, seed: int = 42) -> RankingChoice:
    """The choice from each candidate's validation figures (module docstring).

    Parameters
    ----------
    scored : sequence of (name, Metrics)
        In candidate order, simplest first; ``per_customer_recall`` of every candidate in the same
        customers' order (the pairs of the bootstrap).
    customers : int
        Validation customers.
    seed : int
        Of the bootstrap.
    """
    order = sorted(range(len(scored)), key=lambda j: (-scored[j][1].recall, -scored[j][1].ndcg, j))
    ranked = [scored[j] for j in order]
    chosen, reason, lead = ranked[0][0], "chosen on the validation window", None
    learned = dict(scored).get(LEARNED)
    baseline = next((r for r in ranked if r[0] != LEARNED), None)
    if learned is not None and baseline is not None:
        name, best = baseline
        if best.per_customer_recall is None or learned.per_customer_recall is None:
            raise ValueError("the per-customer recall of the best baseline and the learned ranker are needed")
        lead = paired_difference(learned.per_customer_recall, best.per_customer_recall, seed=seed)
        if lead.low > 0:
            chosen, reason = LEARNED, f"{LEARNED} leads {name} beyond noise on the validation window"
        else:
            chosen = name
            reason = f"{LEARNED} does not lead {name} beyond noise on the validation window: {name} serves"
    return RankingChoice(chosen, "tuned", reason, customers, tuple(ranked), lead)
