"""Replacement lifetimes learned from the data: how long customers keep a category's product before buying
another of it.

Pure numpy. A *repurchase interval* is the number of days between two consecutive purchase days of one
customer in one category (several purchases on one day count once). Where a category has at least
`min_count` intervals, its learned lifetime window is the middle half of them (first to third quartile,
rounded to whole days) and its median is reported; elsewhere the caller keeps the configured window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["LearnedLifetimes", "learn_lifetimes", "repurchase_intervals"]


def repurchase_intervals(
    customers: np.ndarray, categories: np.ndarray, days: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Every repurchase interval, with its category.

    Parameters
    ----------
    customers, categories : ndarray of int, shape (n,)
        Customer and category code of each purchase (order line); a category code < 0 (unknown) is
        left out.
    days : ndarray of int, shape (n,)
        Day number of each purchase.

    Returns
    -------
    (categories int64, intervals int64), each of shape (n_intervals,): for each customer and category,
    the gaps between consecutive distinct purchase days (all > 0).
    """
    c = np.asarray(customers, dtype=np.int64).reshape(-1)
    k = np.asarray(categories, dtype=np.int64).reshape(-1)
    d = np.asarray(days, dtype=np.int64).reshape(-1)
    if not (c.size == k.size == d.size):
        raise ValueError(f"purchase arrays differ in length: {c.size}, {k.size}, {d.size}")
    keep = k >= 0
    c, k, d = c[keep], k[keep], d[keep]
    if c.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    triples = np.unique(np.column_stack([c, k, d]), axis=0)  # sorted by customer, category, day
    same = (triples[1:, 0] == triples[:-1, 0]) & (triples[1:, 1] == triples[:-1, 1])
    gaps = triples[1:, 2] - triples[:-1, 2]
    return triples[1:, 1][same], gaps[same]


@dataclass(frozen=True)
class LearnedLifetimes:
    """Per category code (arrays of shape (n_categories,)): intervals observed, their quartiles and median
    in days (NaN without intervals), and whether there were enough to learn a window."""

    counts: np.ndarray
    first: np.ndarray
    median: np.ndarray
    last: np.ndarray
    learned: np.ndarray

    def window(self, code: int) -> tuple[int, int] | None:
        """The learned window ``(first, last)`` in whole days, or None where there was too little data."""
        if not self.learned[code]:
            return None
        return int(round(float(self.first[code]))), int(round(float(self.last[code])))


def learn_lifetimes(
    categories: np.ndarray, intervals: np.ndarray, n_categories: int, *, min_count: int
) -> LearnedLifetimes:
    """Quartiles and median of each category's repurchase intervals; learned where ``count >= min_count``.

    Parameters
    ----------
    categories, intervals : ndarray of int, shape (n_intervals,)
        From :func:`repurchase_intervals`.
    n_categories : int
    min_count : int
        Intervals needed before a category's window is learned; 0 learns none.

    Returns
    -------
    LearnedLifetimes
    """
    cats = np.asarray(categories, dtype=np.int64).reshape(-1)
    gaps = np.asarray(intervals, dtype=np.float64).reshape(-1)
    counts = np.bincount(cats, minlength=n_categories)[:n_categories].astype(np.int64)
    first = np.full(n_categories, np.nan)
    median = np.full(n_categories, np.nan)
    last = np.full(n_categories, np.nan)
    order = np.argsort(cats, kind="stable")
    bounds = np.searchsorted(cats[order], np.arange(n_categories + 1))
    for code in np.flatnonzero(counts).tolist():
        values = gaps[order[bounds[code] : bounds[code + 1]]]
        first[code], median[code], last[code] = np.quantile(values, [0.25, 0.5, 0.75])
    learned = (counts >= min_count) & (counts > 0) if min_count > 0 else np.zeros(n_categories, dtype=bool)
    return LearnedLifetimes(counts, first, median, last, learned)
