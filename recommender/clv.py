"""Customer lifetime value: the Gamma-Gamma spend model (Fader, Hardie & Lee 2005) times BG/NBD purchases."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.special import gammaln

from recommender.base import NotFittedError, RecommenderError
from recommender.bgnbd import BGNBD

__all__ = ["GammaGamma", "GammaGammaParams", "customer_lifetime_value", "discounted_purchases"]


@dataclass(frozen=True)
class GammaGammaParams:
    """Fitted Gamma-Gamma parameters.

    A transaction's value is Gamma(p, nu); each customer's nu ~ Gamma(q, gamma). The population mean spend
    per transaction is ``p * gamma / (q - 1)`` (finite for q > 1).
    """

    p: float
    q: float
    gamma: float
    log_likelihood: float
    n_customers: int

    @property
    def mean_spend(self) -> float:
        """Expected spend per transaction of a customer about whom nothing is known (q > 1)."""
        return self.p * self.gamma / (self.q - 1.0) if self.q > 1.0 else float("inf")


def _check(frequency: Any, monetary_value: Any) -> tuple[np.ndarray, np.ndarray]:
    x, m = np.broadcast_arrays(
        np.asarray(frequency, dtype=np.float64), np.asarray(monetary_value, dtype=np.float64)
    )
    repeat = x > 0
    if (x < 0).any() or not np.isfinite(x).all():
        raise ValueError("frequency must be finite and >= 0")
    if repeat.any() and (not np.isfinite(m[repeat]).all() or (m[repeat] <= 0).any()):
        raise ValueError("the mean spend of customers with repeat purchases must be finite and > 0")
    return x, m


def _log_likelihood(p: float, q: float, gamma: float, x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Per-customer log-density of the mean spend m of x transactions (Fader, Hardie & Lee 2005, eq. 3)."""
    px = p * x
    result: np.ndarray = (
        gammaln(px + q)
        - gammaln(px)
        - gammaln(q)
        + q * np.log(gamma)
        + (px - 1.0) * np.log(m)
        + px * np.log(x)
        - (px + q) * np.log(gamma + m * x)
    )
    return result


class GammaGamma:
    """The Gamma-Gamma model of spend per transaction (Fader, Hardie & Lee 2005, "RFM and CLV: Using
    Iso-Value Curves for Customer Base Analysis", JMR 42(4)).

    Fitted by maximum likelihood on customers with at least one repeat transaction, from their number of
    repeat transactions ``x`` and the mean value ``m`` of those transactions (the first one left out). It
    assumes spend is independent of the purchase process (check: correlation of x and m near 0).
    """

    def __init__(self) -> None:
        self._params: GammaGammaParams | None = None

    @property
    def is_fitted(self) -> bool:
        return self._params is not None

    @property
    def params(self) -> GammaGammaParams:
        if self._params is None:
            raise NotFittedError("GammaGamma is not fitted: call fit() first")
        return self._params

    @classmethod
    def from_params(cls, p: float, q: float, gamma: float) -> GammaGamma:
        """A model with given parameters (e.g. published estimates)."""
        if min(p, q, gamma) <= 0:
            raise ValueError("Gamma-Gamma parameters must all be > 0")
        model = cls()
        model._params = GammaGammaParams(float(p), float(q), float(gamma), float("nan"), 0)
        return model

    def fit(self, frequency: Any, monetary_value: Any) -> GammaGamma:
        """Maximum-likelihood fit (L-BFGS-B on log-parameters, polished by Nelder-Mead).

        Parameters
        ----------
        frequency : array-like, shape (n_customers,)
            Repeat transactions ``x``; customers with x = 0 are left out of the fit.
        monetary_value : array-like, shape (n_customers,)
            Mean value of each customer's repeat transactions (ignored where x = 0).

        Returns
        -------
        self

        Raises
        ------
        RecommenderError
            Fewer than two customers with repeat transactions, or no convergence.
        """
        x, m = _check(frequency, monetary_value)
        keep = x.reshape(-1) > 0
        x, m = x.reshape(-1)[keep], m.reshape(-1)[keep]
        if x.size < 2:
            raise RecommenderError("Gamma-Gamma needs at least two customers with repeat purchases")
        scale = float(np.mean(m))

        def objective(theta: np.ndarray) -> float:
            p, q, g = np.exp(theta)
            with np.errstate(all="ignore"):
                value = -float(np.mean(_log_likelihood(float(p), float(q), float(g) * scale, x, m)))
            return value if np.isfinite(value) else 1e300

        # gamma is fitted relative to the mean spend, so every log-parameter starts near 0 whatever the unit.
        bounds = [(-12.0, 12.0)] * 3
        first = minimize(objective, np.zeros(3), method="L-BFGS-B", bounds=bounds, options={"maxiter": 1000})
        polish = minimize(
            objective, first.x, method="Nelder-Mead", bounds=bounds, options={"xatol": 1e-10, "fatol": 1e-12}
        )
        best = polish if polish.fun <= first.fun else first
        if not np.isfinite(best.fun) or best.fun >= 1e299:
            raise RecommenderError(f"Gamma-Gamma fit did not converge: {first.message}")
        p, q, g = (float(v) for v in np.exp(best.x))
        g *= scale
        total = float(np.sum(_log_likelihood(p, q, g, x, m)))
        self._params = GammaGammaParams(p, q, g, total, int(x.size))
        return self

    def expected_spend(self, frequency: Any, monetary_value: Any) -> np.ndarray:
        """E[spend per transaction | x, m] (eq. 5): a weighted mean of the population mean and the
        customer's own mean, ``(gamma + m x) p / (p x + q - 1)``; the population mean where x = 0.

        Returns
        -------
        ndarray float64, broadcast shape of the inputs. Needs q > 1 (a finite population mean).
        """
        pr = self.params
        if pr.q <= 1.0:
            raise RecommenderError(f"q = {pr.q:.3g} <= 1: the mean spend is infinite under this fit")
        x, m = _check(frequency, monetary_value)
        m = np.where(x > 0, m, 0.0)
        result: np.ndarray = (pr.gamma + m * x) * pr.p / (pr.p * x + pr.q - 1.0)
        return result


def discounted_purchases(
    bgnbd: BGNBD,
    frequency: Any,
    recency: Any,
    T: Any,
    *,
    horizon: float,
    annual_discount_rate: float,
    step: float = 30.0,
    periods_per_year: float = 365.0,
) -> np.ndarray:
    """Expected purchases in (T, T + horizon], each step's share discounted to today.

    ``sum_k (E[X(t_k)] - E[X(t_{k-1})]) / (1 + d)^(t_k / periods_per_year)`` over steps of ``step``
    periods (the last one shorter); the BG/NBD has no closed form for the discounted sum.

    Returns
    -------
    ndarray float64, broadcast shape of the inputs.
    """
    if horizon <= 0 or step <= 0:
        raise ValueError("horizon and step must be > 0")
    if annual_discount_rate < 0:
        raise ValueError("the discount rate must be >= 0")
    ends = np.append(np.arange(step, horizon, step), horizon)
    total: np.ndarray | None = None
    previous: np.ndarray | float = 0.0
    for t in ends:
        cumulative = bgnbd.expected_purchases(float(t), frequency, recency, T)
        part = (cumulative - previous) / (1.0 + annual_discount_rate) ** (t / periods_per_year)
        total = part if total is None else total + part
        previous = cumulative
    assert total is not None
    return total


def customer_lifetime_value(
    bgnbd: BGNBD,
    gamma_gamma: GammaGamma,
    frequency: Any,
    recency: Any,
    T: Any,
    monetary_value: Any,
    *,
    horizon: float,
    annual_discount_rate: float,
    step: float = 30.0,
    periods_per_year: float = 365.0,
) -> np.ndarray:
    """CLV over the horizon: discounted expected purchases (BG/NBD) x expected spend each (Gamma-Gamma).

    Parameters
    ----------
    frequency, recency, T : array-like, shape (n,)
        BG/NBD inputs (repeat purchases, time of the last one and age, from the first purchase).
    monetary_value : array-like, shape (n,)
        Mean spend of the repeat purchases (ignored where frequency is 0).
    horizon, step, periods_per_year : in the BG/NBD's period unit (days in giftrec).
    annual_discount_rate : e.g. 0.1 for 10 % a year.

    Returns
    -------
    ndarray float64, shape (n,), in the unit of the spend.
    """
    purchases = discounted_purchases(
        bgnbd,
        frequency,
        recency,
        T,
        horizon=horizon,
        annual_discount_rate=annual_discount_rate,
        step=step,
        periods_per_year=periods_per_year,
    )
    result: np.ndarray = purchases * gamma_gamma.expected_spend(frequency, monetary_value)
    return result
