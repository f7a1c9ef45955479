"""RFM: per-customer recency, frequency and monetary value, scores 1-5 per dimension and named segments."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from recommender.next_purchase import CustomerSummary, customer_summary

__all__ = [
    "DIMENSIONS",
    "OTHERS",
    "SCORINGS",
    "RFMSummary",
    "SegmentRule",
    "assign_segments",
    "quantile_cuts",
    "rfm_summary",
    "score",
]

DIMENSIONS = ("recency", "frequency", "monetary")
#: fixed: cut points given in the dimension's unit; quantile: the data's quintiles.
SCORINGS = ("fixed", "quantile")
#: The segment of a customer no rule matches.
OTHERS = "others"
_QUINTILES = (0.2, 0.4, 0.6, 0.8)


# ----------------------------------------------------------------------------------------- summary
@dataclass(frozen=True)
class RFMSummary:
    """Per-customer purchase summary in days; every array has shape (n_users,).

    Attributes
    ----------
    days : CustomerSummary
        The BG/NBD triple (``frequency`` = repeat purchase days, ``recency`` = days from the first to the
        last purchase day, ``T`` = days from the first purchase day to ``now``), first and last day and
        has_purchases.
    purchases : int64
        Purchase days (several lines or orders on one day are one purchase); 0 without purchases.
    recency_days : float64
        Days from the last purchase day to ``now``; nan without purchases.
    monetary : float64
        Total spend over all purchase days.
    repeat_spend : float64
        Mean spend of the repeat purchase days (the first purchase day left out, as in Fader, Hardie &
        Lee 2005's Gamma-Gamma model); nan for customers without a repeat purchase.
    """

    days: CustomerSummary
    purchases: np.ndarray
    recency_days: np.ndarray
    monetary: np.ndarray
    repeat_spend: np.ndarray


def rfm_summary(user_idxs: Any, days: Any, amounts: Any, n_users: int, now: int) -> RFMSummary:
    """Recency, frequency and spend of every customer from purchase lines.

    Parameters
    ----------
    user_idxs : ndarray of int, shape (n_lines,)
        Customer row of each purchase line.
    days : ndarray of int, shape (n_lines,)
        Day number of each line (e.g. days since 1970-01-01); none after `now`.
    amounts : ndarray of float, shape (n_lines,)
        Spend of each line; lines of one customer on one day are summed into one purchase.
    n_users : int
    now : int
        The day the summary is taken at.

    Returns
    -------
    RFMSummary with arrays of shape (n_users,).
    """
    u = np.asarray(user_idxs, dtype=np.int64).reshape(-1)
    d = np.asarray(days, dtype=np.int64).reshape(-1)
    a = np.asarray(amounts, dtype=np.float64).reshape(-1)
    if not u.shape == d.shape == a.shape:
        raise ValueError("user_idxs, days and amounts must have the same shape")
    if a.size and not np.isfinite(a).all():
        raise ValueError("amounts must be finite")
    summary = customer_summary(u, d, n_users, now)  # checks ranges and that nothing is after now
    monetary: np.ndarray = np.zeros(n_users)
    repeat_total: np.ndarray = np.zeros(n_users)
    if u.size:
        # one row per (customer, day), sorted by customer then day
        span = int(d.max() - d.min()) + 1
        keys, inverse = np.unique(u * span + (d - d.min()), return_inverse=True)
        day_spend = np.bincount(inverse.reshape(-1), weights=a, minlength=keys.size)
        day_user = keys // span
        first_of_user = np.r_[True, day_user[1:] != day_user[:-1]]
        monetary = np.bincount(day_user, weights=day_spend, minlength=n_users)
        repeat_total = np.bincount(
            day_user[~first_of_user], weights=day_spend[~first_of_user], minlength=n_users
        )
    has = summary.has_purchases
    purchases = np.where(has, summary.frequency + 1, 0).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        repeat_spend = np.where(summary.frequency > 0, repeat_total / summary.frequency, np.nan)
    recency_days = np.where(has, float(now) - summary.last, np.nan)
    return RFMSummary(summary, purchases, recency_days, monetary, repeat_spend)


# ------------------------------------------------------------------------------------------- scores
def quantile_cuts(values: Any) -> tuple[float, float, float, float]:
    """The quintile boundaries of `values` (nan ignored): cut points that give each score about a fifth.

    Where many customers share a value (most bought once) boundaries coincide and scores collapse: that
    is why fixed cut points exist.
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    v = v[np.isfinite(v)]
    if not v.size:
        return (0.0, 0.0, 0.0, 0.0)
    q = np.quantile(v, _QUINTILES)
    return (float(q[0]), float(q[1]), float(q[2]), float(q[3]))


def score(values: Any, cuts: Sequence[float], *, lower_is_better: bool = False) -> np.ndarray:
    """Scores 1-5 from four ascending cut points.

    A value up to the first cut scores 1, above the first and up to the second 2, ..., above the fourth 5;
    with ``lower_is_better`` (recency in days) the order is reversed: up to the first cut scores 5.

    Parameters
    ----------
    values : array-like of float, shape (n,)
    cuts : four non-decreasing numbers

    Returns
    -------
    ndarray int8, shape (n,); 0 where the value is nan (no purchase).
    """
    c = np.asarray(cuts, dtype=np.float64)
    if c.shape != (4,) or not np.isfinite(c).all() or (np.diff(c) < 0).any():
        raise ValueError(f"need four non-decreasing cut points, got {list(cuts)}")
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    above = np.searchsorted(c, v, side="left")  # how many cuts lie strictly below the value
    out = (5 - above) if lower_is_better else (1 + above)
    out = np.where(np.isnan(v), 0, out)
    return out.astype(np.int8)


# ----------------------------------------------------------------------------------------- segments
@dataclass(frozen=True)
class SegmentRule:
    """A named segment: inclusive score ranges per dimension (1-5 each when not restricted)."""

    name: str
    r: tuple[int, int] = (1, 5)
    f: tuple[int, int] = (1, 5)
    m: tuple[int, int] = (1, 5)

    def __post_init__(self) -> None:
        for low, high in (self.r, self.f, self.m):
            if not 1 <= low <= high <= 5:
                raise ValueError(f"segment {self.name!r}: score ranges must lie within 1-5, low <= high")


def assign_segments(
    r: Any, f: Any, m: Any, rules: Sequence[SegmentRule]
) -> tuple[np.ndarray, tuple[str, ...]]:
    """The segment of each customer: the first rule whose three ranges hold its scores.

    Parameters
    ----------
    r, f, m : array-like of int, shape (n,)
        Scores 1-5 (0 = no purchase: matches no rule).
    rules : ordered rules; the first match wins.

    Returns
    -------
    codes : ndarray int16, shape (n,)
        Index into `names`.
    names : tuple of str
        The distinct rule names in first-appearance order, then ``"others"`` (customers no rule matched).
    """
    rs, fs, ms = (np.asarray(x, dtype=np.int64).reshape(-1) for x in (r, f, m))
    if not rs.shape == fs.shape == ms.shape:
        raise ValueError("r, f and m must have the same shape")
    names = tuple(dict.fromkeys(rule.name for rule in rules if rule.name != OTHERS)) + (OTHERS,)
    index = {name: i for i, name in enumerate(names)}
    codes = np.full(rs.shape, index[OTHERS], dtype=np.int16)
    free = np.ones(rs.shape, dtype=bool)
    for rule in rules:
        hit = (
            free
            & (rs >= rule.r[0])
            & (rs <= rule.r[1])
            & (fs >= rule.f[0])
            & (fs <= rule.f[1])
            & (ms >= rule.m[0])
            & (ms <= rule.m[1])
        )
        codes[hit] = index[rule.name]
        free &= ~hit
    return codes, names
