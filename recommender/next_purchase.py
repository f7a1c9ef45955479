"""What and when: a BG/NBD model of repeat purchases plus per-item repurchase intervals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from recommender.base import NotFittedError
from recommender.bgnbd import BGNBD, BGNBDParams

__all__ = [
    "BGNBD",
    "BGNBDParams",
    "CustomerSummary",
    "NextPurchaseModel",
    "NextPurchasePrediction",
    "RepurchaseIntervals",
    "customer_summary",
    "distinct_purchases",
    "group_median",
]

_LOG2 = float(np.log(2.0))


# ----------------------------------------------------------------------------------------- summaries
@dataclass(frozen=True)
class CustomerSummary:
    """Per-customer repeat-purchase summary in whole periods (days in giftrec).

    Attributes (all shape (n_users,))
    ---------------------------------
    frequency : float64
        Repeat purchases ``x``: purchase periods after the first one.
    recency : float64
        ``t_x``: periods from the first to the last purchase.
    T : float64
        Age: periods from the first purchase to ``now``.
    first, last : int64
        Period numbers of the first and last purchase (-1 without purchases).
    has_purchases : bool
    """

    frequency: np.ndarray
    recency: np.ndarray
    T: np.ndarray
    first: np.ndarray
    last: np.ndarray
    has_purchases: np.ndarray


def customer_summary(user_idxs: np.ndarray, days: np.ndarray, n_users: int, now: int) -> CustomerSummary:
    """Frequency, recency and age of every customer from purchase events.

    Parameters
    ----------
    user_idxs : ndarray of int, shape (n_events,)
        Customer row of each purchase (order line); several lines on one day are one purchase.
    days : ndarray of int, shape (n_events,)
        Period number of each purchase (e.g. days since 1970-01-01); none may be after `now`.
    n_users : int
    now : int
        The period the summary is taken at (the end of the calibration window).

    Returns
    -------
    CustomerSummary with arrays of shape (n_users,).
    """
    u = np.asarray(user_idxs, dtype=np.int64).reshape(-1)
    d = np.asarray(days, dtype=np.int64).reshape(-1)
    if u.shape != d.shape:
        raise ValueError(f"user_idxs {u.shape} and days {d.shape} differ in shape")
    if u.size and (u.min() < 0 or u.max() >= n_users):
        raise IndexError(f"user_idxs must be in [0, {n_users})")
    if d.size and d.max() > now:
        raise ValueError(f"purchases after now ({int(d.max())} > {now})")
    n_days = np.zeros(n_users, dtype=np.int64)
    first = np.full(n_users, -1, dtype=np.int64)
    last = np.full(n_users, -1, dtype=np.int64)
    if u.size:
        pu, pd = _distinct(u, d)  # distinct (user, day), sorted
        n_days = np.bincount(pu, minlength=n_users)
        starts = np.flatnonzero(np.r_[True, pu[1:] != pu[:-1]])
        ends = np.r_[starts[1:], pu.size] - 1
        first[pu[starts]] = pd[starts]
        last[pu[ends]] = pd[ends]
    has = n_days > 0
    frequency = np.where(has, n_days - 1, 0).astype(np.float64)
    recency = np.where(has, last - first, 0).astype(np.float64)
    age = np.where(has, now - first, 0).astype(np.float64)
    return CustomerSummary(frequency, recency, age, first, last, has)


def _distinct(*columns: np.ndarray) -> tuple[np.ndarray, ...]:
    """The distinct rows of non-negative-offset integer columns, sorted lexicographically.

    Rows are packed into one int64 key when the ranges allow it (a 1-D sort is much faster than
    ``np.unique(axis=0)``), otherwise the 2-D unique is used.
    """
    if columns[0].size == 0:
        return tuple(np.empty(0, np.int64) for _ in columns)
    lows = [int(c.min()) for c in columns]
    spans = [int(c.max()) - low + 1 for c, low in zip(columns, lows, strict=True)]
    if float(np.prod(np.asarray(spans, dtype=np.float64))) >= 2.0**62:
        rows = np.unique(np.stack(columns, axis=1), axis=0)
        return tuple(rows[:, j] for j in range(len(columns)))
    key = np.zeros(columns[0].size, dtype=np.int64)
    for c, low, span in zip(columns, lows, spans, strict=True):
        key = key * span + (c - low)
    key = np.unique(key)
    out = []
    for low, span in zip(reversed(lows), reversed(spans), strict=True):
        out.append(key % span + low)
        key = key // span
    return tuple(reversed(out))


def distinct_purchases(
    user_idxs: Any, item_idxs: Any, days: Any, n_users: int, n_items: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Checked purchase events as distinct (user, item, day) int64 arrays, sorted by user, item, day.

    Raises ValueError for arrays of different shapes and IndexError for a row or column out of range.
    """
    u = np.asarray(user_idxs, dtype=np.int64).reshape(-1)
    i = np.asarray(item_idxs, dtype=np.int64).reshape(-1)
    d = np.asarray(days, dtype=np.int64).reshape(-1)
    if not u.shape == i.shape == d.shape:
        raise ValueError("user_idxs, item_idxs and days must have the same shape")
    if u.size and (u.min() < 0 or u.max() >= n_users or i.min() < 0 or i.max() >= n_items):
        raise IndexError("user or item index out of range")
    tu, ti, td = _distinct(u, i, d)
    return tu, ti, td


def group_median(groups: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Median of `values` within each group.

    Parameters
    ----------
    groups : ndarray of int, shape (n,)
    values : ndarray of float, shape (n,)

    Returns
    -------
    keys : ndarray int64, shape (n_groups,), sorted
    medians : ndarray float64, shape (n_groups,)
    counts : ndarray int64, shape (n_groups,)
    """
    g = np.asarray(groups, dtype=np.int64).reshape(-1)
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if g.size == 0:
        return np.empty(0, np.int64), np.empty(0, np.float64), np.empty(0, np.int64)
    order = np.lexsort((v, g))
    g, v = g[order], v[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    counts = np.diff(np.r_[starts, g.size])
    lo = starts + (counts - 1) // 2
    hi = starts + counts // 2
    return g[starts], (v[lo] + v[hi]) / 2.0, counts.astype(np.int64)


# ----------------------------------------------------------------------------------- repurchase intervals
class RepurchaseIntervals:
    """How long customers take to buy the same item again, and who is due.

    A customer's purchases of an item are counted in distinct days (a wholesaler's several lines of one
    item on one day are one purchase). For each (customer, item) with two or more purchase days the gaps
    between them are taken; an item's interval is the median over its repeat customers of each
    customer's median gap, so every customer counts once (a weekly reorderer does not set the interval
    for everybody). Items with few repeat customers are shrunk (geometrically) towards the median over
    all items. A customer's own median gap, when they have one, is blended with the item's interval in
    proportion to how many gaps it rests on.

    The gap is modelled as log-normal around that interval with one pooled spread ``sigma`` (a robust
    estimate of log(gap / item interval)). The chance that the customer buys the item within the next
    `horizon` days, given `s` days since their last purchase of it, is
    ``(S(s) - S(s + horizon)) / S(s)`` with S the survival function, times the customer's propensity to
    rebuy this item: the posterior mean of a Beta prior centred on the item's repeat rate (the share of
    its buyers who bought it again, with strength ``prior_strength``) after ``n - 1`` repeats.

    Parameters
    ----------
    item_prior : float
        Weight (in repeat customers) of the all-item median when shrinking an item's interval.
    own_prior : float
        Weight (in gaps) of the item interval against the customer's own median gap.
    prior_strength : float
        Strength (in buyers) of the all-item repeat rate in each item's repeat rate, and of the item's
        repeat rate in each customer's propensity.
    """

    def __init__(self, item_prior: float = 2.0, own_prior: float = 2.0, prior_strength: float = 2.0) -> None:
        if min(item_prior, own_prior, prior_strength) <= 0:
            raise ValueError("priors must be > 0")
        self.item_prior = float(item_prior)
        self.own_prior = float(own_prior)
        self.prior_strength = float(prior_strength)
        self._fitted = False
        self.n_users = self.n_items = 0
        self.sigma = 1.0
        self.global_interval = float("nan")
        self.global_repeat_rate = float("nan")
        #: Per item, shape (n_items,): interval in days (the shrunk median), repeat rate, repeat customers.
        self.item_interval = np.empty(0)
        self.item_repeat_rate = np.empty(0)
        self.item_repeaters = np.empty(0, dtype=np.int64)
        #: Per (customer, item) pair, sorted by customer then item, shape (n_pairs,).
        self.pair_user = np.empty(0, dtype=np.int64)
        self.pair_item = np.empty(0, dtype=np.int64)
        self.pair_days = np.empty(0, dtype=np.int64)
        self.pair_last = np.empty(0, dtype=np.int64)
        self.pair_interval = np.empty(0)
        self._user_ptr = np.zeros(1, dtype=np.int64)

    @property
    def is_fitted(self) -> bool:
        return self._fitted

    def fit(
        self, user_idxs: Any, item_idxs: Any, days: Any, n_users: int, n_items: int
    ) -> RepurchaseIntervals:
        """Learn intervals from purchase events.

        Parameters
        ----------
        user_idxs, item_idxs : ndarray of int, shape (n_events,)
            Customer row and item column of each purchase (order line; returns excluded by the caller).
        days : ndarray of int, shape (n_events,)
            Day number of each purchase.
        n_users, n_items : int

        Returns
        -------
        self
        """
        self.n_users, self.n_items = int(n_users), int(n_items)
        tu, ti, td = distinct_purchases(user_idxs, item_idxs, days, n_users, n_items)
        pair_key = tu * max(n_items, 1) + ti
        new_pair = np.r_[True, pair_key[1:] != pair_key[:-1]] if pair_key.size else np.zeros(0, bool)
        starts = np.flatnonzero(new_pair)
        pair_days = np.diff(np.r_[starts, pair_key.size]).astype(np.int64)
        ends = np.r_[starts[1:], pair_key.size] - 1
        pair_index = np.cumsum(new_pair) - 1
        # gaps: consecutive purchase days of the same pair
        same = ~new_pair[1:] if pair_key.size else np.zeros(0, bool)
        gaps = (td[1:] - td[:-1])[same].astype(np.float64)
        gap_pair = pair_index[1:][same]
        own_keys, own_median, own_count = group_median(gap_pair, gaps)
        own_log = np.full(starts.size, np.nan)
        own_n = np.zeros(starts.size, dtype=np.int64)
        own_log[own_keys] = np.log(own_median)
        own_n[own_keys] = own_count

        p_user, p_item = tu[starts], ti[starts]
        items_of_repeaters = p_item[own_keys]
        keys, item_median, repeaters = group_median(items_of_repeaters, own_median)
        buyers = np.bincount(p_item, minlength=n_items).astype(np.float64)
        rep = np.zeros(n_items, dtype=np.int64)
        rep[keys] = repeaters
        self.global_interval = float(np.median(own_median)) if own_median.size else 30.0
        self.global_repeat_rate = float(rep.sum() / buyers.sum()) if buyers.sum() else 0.0
        log_global = np.log(self.global_interval)
        log_item = np.full(n_items, log_global)
        log_item[keys] = (repeaters * np.log(item_median) + self.item_prior * log_global) / (
            repeaters + self.item_prior
        )
        self.item_interval = np.exp(log_item)
        self.item_repeaters = rep
        self.item_repeat_rate = (rep + self.prior_strength * self.global_repeat_rate) / (
            buyers + self.prior_strength
        )
        # pooled robust spread of log(gap / item interval): 1.4826 * MAD
        if gaps.size:
            resid = np.log(gaps) - log_item[p_item[gap_pair]]
            self.sigma = float(np.clip(1.4826 * np.median(np.abs(resid - np.median(resid))), 0.25, 2.0))
        own_w = own_n.astype(np.float64)
        blended = np.where(
            own_n > 0,
            (own_w * np.nan_to_num(own_log) + self.own_prior * log_item[p_item]) / (own_w + self.own_prior),
            log_item[p_item],
        )
        self.pair_user, self.pair_item = p_user, p_item
        self.pair_days, self.pair_last = pair_days, td[ends] if ends.size else np.empty(0, np.int64)
        self.pair_interval = np.exp(blended)
        self._user_ptr = np.searchsorted(p_user, np.arange(n_users + 1)).astype(np.int64)
        self._fitted = True
        return self

    def _require_fitted(self) -> None:
        if not self._fitted:
            raise NotFittedError("RepurchaseIntervals is not fitted: call fit() first")

    def pairs_of(self, user_idx: int) -> slice:
        """The slice of the pair arrays holding the customer's items (empty for an unknown row)."""
        self._require_fitted()
        if not 0 <= user_idx < self.n_users:
            raise IndexError(f"user_idx {user_idx} out of range [0, {self.n_users})")
        return slice(int(self._user_ptr[user_idx]), int(self._user_ptr[user_idx + 1]))

    def score_pairs(
        self, now: int, horizon: float, pairs: slice | np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Due dates and repurchase chances of (customer, item) pairs at day `now`.

        Parameters
        ----------
        now : int
            Day number the prediction is made at (not before any fitted purchase).
        horizon : float
            Days ahead the chance refers to.
        pairs : slice or index array, optional
            Which pairs (default: all).

        Returns
        -------
        dict of arrays, each shape (n_selected_pairs,):
        ``user``, ``item``, ``purchases`` (distinct days), ``last`` (day), ``interval`` (days),
        ``due_in`` (days from `now` to last + interval; negative when overdue), ``expected_in`` (median
        days from `now` to the next purchase given none so far, >= 0), ``chance`` (of a purchase within
        `horizon`, before multiplying by P(alive)).
        """
        self._require_fitted()
        sel: Any = slice(None) if pairs is None else pairs
        last = self.pair_last[sel]
        interval = self.pair_interval[sel]
        n = self.pair_days[sel]
        item = self.pair_item[sel]
        elapsed = (now - last).astype(np.float64)
        if elapsed.size and elapsed.min() < 0:
            raise ValueError("now is before a fitted purchase")
        mu, sigma = np.log(interval), self.sigma
        # log S(t) of the log-normal gap; t = 0 (bought today) has S = 1.
        with np.errstate(divide="ignore"):
            z_now = (np.log(elapsed) - mu) / sigma
        from scipy.stats import norm  # imported where used (a third of a second to import)

        log_s_now = norm.logsf(z_now)
        log_s_end = norm.logsf((np.log(elapsed + horizon) - mu) / sigma)
        timing = -np.expm1(log_s_end - log_s_now)
        rate = self.item_repeat_rate[item]
        propensity = (n - 1 + self.prior_strength * rate) / (n - 1 + self.prior_strength)
        # the conditional median: S(t) = S(elapsed) / 2
        median_t = np.exp(mu + sigma * norm.isf(np.exp(log_s_now - _LOG2)))
        return {
            "user": self.pair_user[sel],
            "item": item,
            "purchases": n,
            "last": last,
            "interval": interval,
            "due_in": interval - elapsed,
            "expected_in": np.maximum(median_t - elapsed, 0.0),
            "chance": propensity * timing,
        }


# ------------------------------------------------------------------------------------------- together
@dataclass(frozen=True)
class NextPurchasePrediction:
    """One customer's next purchase: when, how likely, and which items.

    ``item_idxs``, ``expected_in`` (days from now, >= 0), ``probabilities`` (chance of buying the item within
    the horizon: P(alive) x propensity x timing; a model estimate, not calibrated), ``purchases`` and
    ``last_days`` have shape (n_returned,), best first. ``p_alive`` and the expected purchases (in distinct
    purchase days) are None for a customer without purchases.
    """

    item_idxs: np.ndarray
    expected_in: np.ndarray
    probabilities: np.ndarray
    purchases: np.ndarray
    last_days: np.ndarray
    p_alive: float | None
    expected_purchases_30: float | None
    expected_purchases_90: float | None
    probability_30: float | None
    median_days_to_next: float | None


class NextPurchaseModel:
    """BG/NBD (when will the customer buy) + repurchase intervals (what), in days.

    Parameters
    ----------
    horizon : float
        Days ahead the item probabilities refer to.
    **interval_params
        Passed to `RepurchaseIntervals`.
    """

    def __init__(self, horizon: float = 30.0, **interval_params: float) -> None:
        if horizon <= 0:
            raise ValueError("horizon must be > 0")
        self.horizon = float(horizon)
        self.bgnbd = BGNBD()
        self.intervals = RepurchaseIntervals(**interval_params)
        self.summary: CustomerSummary | None = None
        self.now = 0
        self.p_alive = np.empty(0)

    @property
    def is_fitted(self) -> bool:
        return self.summary is not None

    def fit(
        self, user_idxs: Any, item_idxs: Any, days: Any, n_users: int, n_items: int, now: int
    ) -> NextPurchaseModel:
        """Fit both parts on purchase events (order lines of sales, returns excluded).

        Parameters
        ----------
        user_idxs, item_idxs, days : ndarray of int, shape (n_events,)
        n_users, n_items : int
        now : int
            Day number of "today" (e.g. the newest order's day on historical data).

        Returns
        -------
        self
        """
        summary = customer_summary(user_idxs, days, n_users, now)
        buyers = summary.has_purchases
        self.bgnbd.fit(summary.frequency[buyers], summary.recency[buyers], summary.T[buyers])
        self.intervals.fit(user_idxs, item_idxs, days, n_users, n_items)
        self.p_alive = np.where(
            buyers, self.bgnbd.p_alive(summary.frequency, summary.recency, summary.T), np.nan
        )
        self.summary, self.now = summary, int(now)
        return self

    def _require_fitted(self) -> CustomerSummary:
        if self.summary is None:
            raise NotFittedError("NextPurchaseModel is not fitted: call fit() first")
        return self.summary

    def score_all(self) -> dict[str, np.ndarray]:
        """`RepurchaseIntervals.score_pairs` for every pair, with ``probability`` = chance x P(alive)."""
        self._require_fitted()
        out = self.intervals.score_pairs(self.now, self.horizon)
        out["probability"] = out["chance"] * self.p_alive[out["user"]]
        return out

    def predict(
        self, user_idx: int, n: int = 10, *, allowed: np.ndarray | None = None
    ) -> NextPurchasePrediction:
        """What and when for one customer.

        Parameters
        ----------
        user_idx : int
            The customer's row.
        n : int
            Maximum number of items.
        allowed : ndarray of bool, shape (n_items,), optional
            False marks items that must not be returned (hidden, out of stock).

        Returns
        -------
        NextPurchasePrediction, items best first by probability (ties: sooner, then lower index).
        """
        summary = self._require_fitted()
        sl = self.intervals.pairs_of(int(user_idx))
        pairs = self.intervals.score_pairs(self.now, self.horizon, sl)
        if not summary.has_purchases[user_idx]:
            empty_i, empty_f = np.empty(0, np.int64), np.empty(0, np.float64)
            return NextPurchasePrediction(
                empty_i, empty_f, empty_f, empty_i, empty_i, None, None, None, None, None
            )
        alive = float(self.p_alive[user_idx])
        prob = pairs["chance"] * alive
        keep = np.ones(prob.size, dtype=bool)
        if allowed is not None:
            mask = np.asarray(allowed)
            if mask.dtype != np.bool_ or mask.shape != (self.intervals.n_items,):
                raise ValueError(f"allowed must be a bool array of shape ({self.intervals.n_items},)")
            keep = mask[pairs["item"]]
        idx = np.flatnonzero(keep)
        order = idx[np.lexsort((pairs["item"][idx], pairs["expected_in"][idx], -prob[idx]))][: max(n, 0)]
        x, t_x, age = summary.frequency[user_idx], summary.recency[user_idx], summary.T[user_idx]
        return NextPurchasePrediction(
            item_idxs=pairs["item"][order],
            expected_in=pairs["expected_in"][order],
            probabilities=prob[order],
            purchases=pairs["purchases"][order],
            last_days=pairs["last"][order],
            p_alive=alive,
            expected_purchases_30=float(self.bgnbd.expected_purchases(30.0, x, t_x, age)),
            expected_purchases_90=float(self.bgnbd.expected_purchases(90.0, x, t_x, age)),
            probability_30=float(self.bgnbd.probability_of_purchase(30.0, x, t_x, age)),
            median_days_to_next=float(self.bgnbd.median_time_to_purchase(x, t_x, age)),
        )
