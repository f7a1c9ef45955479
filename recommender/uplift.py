"""Uplift of a campaign from its treated and control groups: conversion and revenue differences.

Pure numpy, SciPy and statsmodels. Analysis is by assignment (intention to treat): the caller passes every
customer assigned to a group, emailed or not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Uplift", "conversion_difference", "revenue_difference", "uplift"]


def conversion_difference(
    converted_treated: int, treated: int, converted_control: int, control: int, alpha: float = 0.05
) -> tuple[float, float, float]:
    """Difference of conversion rates treated - control and its Newcombe (hybrid score) interval.

    Returns
    -------
    (difference, low, high)
    """
    if treated <= 0 or control <= 0:
        raise ValueError("both groups need at least one customer")
    from statsmodels.stats.proportion import confint_proportions_2indep  # imported where used

    low, high = confint_proportions_2indep(
        converted_treated, treated, converted_control, control, method="newcomb", compare="diff", alpha=alpha
    )
    return converted_treated / treated - converted_control / control, float(low), float(high)


def revenue_difference(
    revenue_treated: np.ndarray,
    revenue_control: np.ndarray,
    *,
    alpha: float = 0.05,
    n_resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Difference of mean revenue per customer treated - control and its bootstrap interval.

    Parameters
    ----------
    revenue_treated, revenue_control : ndarray of float, shape (n_treated,), (n_control,)
        Revenue of every assigned customer in the window (0 for those who did not buy).

    Returns
    -------
    (difference, low, high): the percentile interval of ``scipy.stats.bootstrap`` (resampling each group
    independently), seeded so the same data give the same interval.
    """
    t = np.asarray(revenue_treated, dtype=np.float64).reshape(-1)
    c = np.asarray(revenue_control, dtype=np.float64).reshape(-1)
    if t.size == 0 or c.size == 0:
        raise ValueError("both groups need at least one customer")
    diff = float(t.mean() - c.mean())
    if np.all(t == t[0]) and np.all(c == c[0]):  # no spread: the bootstrap has nothing to resample
        return diff, diff, diff

    def statistic(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
        result: np.ndarray = np.mean(a, axis=axis) - np.mean(b, axis=axis)
        return result

    from scipy.stats import bootstrap  # imported where used

    res = bootstrap(
        (t, c),
        statistic,
        vectorized=True,
        paired=False,
        confidence_level=1 - alpha,
        n_resamples=n_resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return diff, float(res.confidence_interval.low), float(res.confidence_interval.high)


@dataclass(frozen=True)
class Uplift:
    """Treated - control, with 95% intervals; None where ``too_few`` (a group below the minimum size)."""

    treated: int
    control: int
    converted_treated: int
    converted_control: int
    too_few: bool
    conversion_diff: float | None = None
    conversion_low: float | None = None
    conversion_high: float | None = None
    revenue_diff: float | None = None
    revenue_low: float | None = None
    revenue_high: float | None = None
    #: Revenue per eligible difference times the treated: what the emails added, by this estimate.
    incremental_revenue: float | None = None


def uplift(
    converted_treated: np.ndarray,
    revenue_treated: np.ndarray,
    converted_control: np.ndarray,
    revenue_control: np.ndarray,
    *,
    min_group_size: int,
    seed: int = 0,
) -> Uplift:
    """Conversion and revenue uplift of one campaign.

    Parameters
    ----------
    converted_treated, converted_control : ndarray of bool, shape (n_treated,), (n_control,)
        Whether each assigned customer ordered within the attribution window.
    revenue_treated, revenue_control : ndarray of float, same shapes
        Each assigned customer's revenue in that window.
    min_group_size : int
        Below this many customers in either group the result is ``too_few`` and carries no estimate.
    """
    ct = np.asarray(converted_treated, dtype=bool)
    cc = np.asarray(converted_control, dtype=bool)
    n_t, n_c, x_t, x_c = int(ct.size), int(cc.size), int(ct.sum()), int(cc.sum())
    if n_t < max(min_group_size, 1) or n_c < max(min_group_size, 1):
        return Uplift(n_t, n_c, x_t, x_c, too_few=True)
    diff, low, high = conversion_difference(x_t, n_t, x_c, n_c)
    r_diff, r_low, r_high = revenue_difference(revenue_treated, revenue_control, seed=seed)
    return Uplift(
        n_t,
        n_c,
        x_t,
        x_c,
        too_few=False,
        conversion_diff=diff,
        conversion_low=low,
        conversion_high=high,
        revenue_diff=r_diff,
        revenue_low=r_low,
        revenue_high=r_high,
        incremental_revenue=r_diff * n_t,
    )
