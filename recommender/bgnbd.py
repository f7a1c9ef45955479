"""The BG/NBD model of repeat purchases (Fader, Hardie & Lee 2005): fit, P(alive), expected purchases."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import betaln, expit, gammaln, hyp2f1, roots_jacobi

from recommender.base import NotFittedError, RecommenderError

__all__ = ["BGNBD", "BGNBDParams"]

_LOG2 = float(np.log(2.0))


# -------------------------------------------------------------------------------------------- BG/NBD
@dataclass(frozen=True)
class BGNBDParams:
    """Fitted BG/NBD parameters: purchase rates ~ Gamma(r, alpha), drop-out probabilities ~ Beta(a, b)."""

    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float
    n_customers: int
    #: A log-parameter ended at its bound (+-12): the data show no heterogeneity there (e.g. a and b grow
    #: together when every customer has about the same drop-out probability); the limit model is used.
    at_bound: bool = False

    def as_dict(self) -> dict[str, float]:
        return {
            "r": self.r,
            "alpha": self.alpha,
            "a": self.a,
            "b": self.b,
            "log_likelihood": self.log_likelihood,
        }


def _arrays(x: Any, t_x: Any, T: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xs, ts, ages = np.broadcast_arrays(
        np.asarray(x, dtype=np.float64), np.asarray(t_x, dtype=np.float64), np.asarray(T, dtype=np.float64)
    )
    if xs.size and (not np.isfinite(xs).all() or not np.isfinite(ts).all() or not np.isfinite(ages).all()):
        raise ValueError("frequency, recency and T must be finite")
    if xs.size and ((xs < 0).any() or (ts < 0).any() or (ts > ages).any()):
        raise ValueError("need frequency >= 0 and 0 <= recency <= T")
    if xs.size and ((xs == 0) & (ts != 0)).any():
        raise ValueError("recency must be 0 where frequency is 0")
    return xs, ts, ages


def _log_likelihood(
    r: float,
    alpha: float,
    a: float,
    b: float,
    x: np.ndarray,
    t_x: np.ndarray,
    T: np.ndarray,
    x_groups: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Per-customer BG/NBD log-likelihood (Fader, Hardie & Lee 2005, eq. 6), in log space throughout.

    ``x_groups``: ``np.unique(x, return_inverse=True)``, given when called many times on the same
    customers (a fit): the special functions are then evaluated once per distinct x, not per customer.
    """
    if x_groups is None:
        a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
        a2 = betaln(a, b + x) - betaln(a, b)
    else:
        xu, inverse = x_groups
        a1 = (gammaln(r + xu) - gammaln(r) + r * np.log(alpha))[inverse]
        a2 = (betaln(a, b + xu) - betaln(a, b))[inverse]
    a3 = -(r + x) * np.log(alpha + T)
    repeat = x > 0
    a4 = np.full(x.shape, -np.inf)
    xr = x[repeat]
    # B(a+1, b+x-1) / B(a, b+x) = a / (b+x-1); only customers with a repeat purchase have this term.
    a4[repeat] = np.log(a) - np.log(b + xr - 1.0) - (r + xr) * np.log(alpha + t_x[repeat])
    result: np.ndarray = a1 + a2 + np.logaddexp(a3, a4)
    return result


class BGNBD:
    """The beta-geometric/NBD model of repeat purchasing (Fader, Hardie & Lee 2005).

    While alive, a customer buys at rate ``lambda ~ Gamma(r, alpha)`` per period; after each purchase
    they drop out with probability ``p ~ Beta(a, b)``. Fitted by maximum likelihood on per-customer
    ``(x, t_x, T)``: repeat purchases, time of the last purchase and age, all measured from the first
    purchase, in one period unit (weeks in the paper, days in giftrec).
    """

    def __init__(self) -> None:
        self._params: BGNBDParams | None = None

    @property
    def is_fitted(self) -> bool:
        return self._params is not None

    @property
    def params(self) -> BGNBDParams:
        """The fitted parameters; raises NotFittedError before `fit`."""
        if self._params is None:
            raise NotFittedError("BGNBD is not fitted: call fit() first")
        return self._params

    @classmethod
    def from_params(cls, r: float, alpha: float, a: float, b: float) -> BGNBD:
        """A model with given parameters (e.g. published estimates); its log-likelihood is unknown (nan)."""
        if min(r, alpha, a, b) <= 0:
            raise ValueError("BG/NBD parameters must all be > 0")
        model = cls()
        model._params = BGNBDParams(float(r), float(alpha), float(a), float(b), float("nan"), 0)
        return model

    def fit(self, frequency: Any, recency: Any, T: Any) -> BGNBD:
        """Maximum-likelihood fit (L-BFGS-B on log-parameters; identical customers are grouped).

        Parameters
        ----------
        frequency, recency, T : array-like, shape (n_customers,)
            Repeat purchases, period of the last purchase and age, from each customer's first purchase.

        Returns
        -------
        self

        Raises
        ------
        RecommenderError
            Too few customers, nobody with a repeat purchase, or no convergence.
        """
        x, t_x, age = _arrays(frequency, recency, T)
        x, t_x, age = x.reshape(-1), t_x.reshape(-1), age.reshape(-1)
        if x.size < 2 or not (x > 0).any() or not (age > 0).any():
            raise RecommenderError("BG/NBD needs customers with repeat purchases and positive ages")
        triples, weights = np.unique(np.stack([x, t_x, age], axis=1), axis=0, return_counts=True)
        ux, ut, uT = triples[:, 0], triples[:, 1], triples[:, 2]
        w = weights.astype(np.float64)
        scale = float(np.mean(age))
        x_groups = np.unique(ux, return_inverse=True)

        def objective(theta: np.ndarray) -> float:
            r, alpha, a, b = np.exp(theta)
            with np.errstate(all="ignore"):  # far from the optimum terms may overflow: rejected below
                ll = _log_likelihood(float(r), float(alpha) * scale, float(a), float(b), ux, ut, uT, x_groups)
                value = -float(np.dot(w, ll)) / w.sum()
            return value if np.isfinite(value) else 1e300

        # alpha is fitted relative to the mean age, so every log-parameter starts near 0 whatever the unit.
        bounds = [(-12.0, 12.0)] * 4
        from scipy.optimize import minimize  # imported where used (a fifth of a second to import)

        result = minimize(objective, np.zeros(4), method="L-BFGS-B", bounds=bounds, options={"maxiter": 1000})
        polish = minimize(
            objective, result.x, method="Nelder-Mead", bounds=bounds, options={"xatol": 1e-9, "fatol": 1e-12}
        )
        best = polish if polish.fun <= result.fun else result
        theta = np.clip(best.x, -12.0, 12.0)
        if not np.isfinite(best.fun) or best.fun >= 1e299:
            raise RecommenderError(f"BG/NBD fit did not converge: {result.message}")
        r, alpha, a, b = np.exp(theta)
        alpha *= scale
        total = float(np.dot(w, _log_likelihood(float(r), float(alpha), float(a), float(b), ux, ut, uT)))
        at_bound = bool((np.abs(theta) > 11.5).any())
        self._params = BGNBDParams(float(r), float(alpha), float(a), float(b), total, int(x.size), at_bound)
        return self

    def log_likelihood(self, frequency: Any, recency: Any, T: Any) -> np.ndarray:
        """Per-customer log-likelihood under the fitted parameters, same shape as the inputs."""
        p = self.params
        x, t_x, age = _arrays(frequency, recency, T)
        return _log_likelihood(p.r, p.alpha, p.a, p.b, x, t_x, age)

    def p_alive(self, frequency: Any, recency: Any, T: Any) -> np.ndarray:
        """P(the customer has not dropped out at T | x, t_x, T); 1 for customers without a repeat purchase.

        Returns
        -------
        ndarray float64, broadcast shape of the inputs.
        """
        p = self.params
        x, t_x, age = _arrays(frequency, recency, T)
        out = np.ones(x.shape)
        repeat = x > 0
        xr = x[repeat]
        log_odds_dead = (
            np.log(p.a)
            - np.log(p.b + xr - 1.0)
            + (p.r + xr) * (np.log(p.alpha + age[repeat]) - np.log(p.alpha + t_x[repeat]))
        )
        out[repeat] = expit(-log_odds_dead)
        return out

    def expected_purchases(self, t: float, frequency: Any, recency: Any, T: Any) -> np.ndarray:
        """E[purchases in (T, T + t] | x, t_x, T] (the paper's eq. 10).

        The hypergeometric term is evaluated after Euler's transformation,
        ``(1-z)^(r+x) 2F1(r+x, b+x; a+b+x-1; z) = (1-z)^(a-1) 2F1(a+b-1-r, a-1; a+b+x-1; z)``, whose
        numerator parameters stay small for heavy buyers (the direct form overflows for large x).

        Parameters
        ----------
        t : float
            Length of the future window, in periods (> 0).
        frequency, recency, T : array-like, broadcastable

        Returns
        -------
        ndarray float64, broadcast shape of the inputs.
        """
        p = self.params
        if t < 0:
            raise ValueError(f"t must be >= 0, got {t}")
        x, t_x, age = _arrays(frequency, recency, T)
        a = p.a if abs(p.a - 1.0) > 1e-9 else 1.0 + 1e-9  # the closed form has a removable pole at a = 1
        z = t / (p.alpha + age + t)
        c = a + p.b + x - 1.0
        with np.errstate(all="ignore"):  # huge a and b (no drop-out heterogeneity) overflow: see below
            tail = np.power(1.0 - z, a - 1.0) * hyp2f1(a + p.b - 1.0 - p.r, a - 1.0, c, z)
            result: np.ndarray = c / (a - 1.0) * (1.0 - tail) * self.p_alive(x, t_x, age)
        bad = ~np.isfinite(result) | (result < 0)
        if bad.any():
            result = np.array(result, dtype=np.float64)
            x_bad, age_bad = np.broadcast_to(x, result.shape)[bad], np.broadcast_to(age, result.shape)[bad]
            alive = self.p_alive(x_bad, np.broadcast_to(t_x, result.shape)[bad], age_bad)
            result[bad] = _expected_by_quadrature(p, t, x_bad, age_bad) * alive
        return result

    def expected_purchases_new(self, t: Any) -> np.ndarray:
        """E[repeat purchases in (0, t]] for a customer who has just made a first purchase (eq. 9)."""
        p = self.params
        t = np.asarray(t, dtype=np.float64)
        a = p.a if abs(p.a - 1.0) > 1e-9 else 1.0 + 1e-9
        z = t / (p.alpha + t)
        tail = np.power(1.0 - z, a - 1.0) * hyp2f1(a + p.b - 1.0 - p.r, a - 1.0, a + p.b - 1.0, z)
        result: np.ndarray = (a + p.b - 1.0) / (a - 1.0) * (1.0 - tail)
        return result

    def probability_of_purchase(self, t: float, frequency: Any, recency: Any, T: Any) -> np.ndarray:
        """P(at least one purchase in (T, T + t] | x, t_x, T).

        Alive at T, the rate's posterior is Gamma(r + x, alpha + T) and a customer only drops out right
        after a purchase, so P(none in t | alive) = ((alpha + T) / (alpha + T + t))^(r + x).
        """
        p = self.params
        x, t_x, age = _arrays(frequency, recency, T)
        none = np.exp((p.r + x) * (np.log(p.alpha + age) - np.log(p.alpha + age + t)))
        result: np.ndarray = self.p_alive(x, t_x, age) * (1.0 - none)
        return result

    def median_time_to_purchase(self, frequency: Any, recency: Any, T: Any) -> np.ndarray:
        """Median periods from T to the next purchase of a customer who is still alive.

        Solves ((alpha + T) / (alpha + T + t))^(r + x) = 1/2 (the waiting time is Lomax distributed);
        weigh it with `p_alive`: a customer who has probably left will not buy at all.
        """
        p = self.params
        x, _, age = _arrays(frequency, recency, T)
        result: np.ndarray = (p.alpha + age) * np.expm1(_LOG2 / (p.r + x))
        return result


#: Gauss-Jacobi nodes of the drop-out integral, at least and at most. Its integrand is analytic in q
#: except at q = -(alpha + T) / t, so the error falls like rho^(-2n), rho the Bernstein ellipse through
#: that point: the nodes are chosen per group for an error near 1e-11 (64 for t ~ alpha + T, 200 or so
#: when the horizon is 300 times alpha + T). scipy's nodes overflow past ~300 for b + x near 1000.
_MIN_NODES, _MAX_NODES = 32, 300


def _expected_by_integration(p: BGNBDParams, t: float, x: float, age: float) -> float:
    """E[purchases in (T, T + t] | alive at T] of one customer (see :func:`_expected_by_quadrature`)."""
    return float(_expected_by_quadrature(p, t, np.array([x], dtype=np.float64), np.array([age]))[0])


def _jacobi_nodes(n: int, alpha: float, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Jacobi nodes and weights; fewer nodes where scipy's overflow for a large exponent."""
    while True:
        with np.errstate(all="ignore"):
            u, w = roots_jacobi(n, alpha, beta)
        if (np.isfinite(u).all() and np.isfinite(w).all() and w.sum() > 0) or n <= _MIN_NODES:
            return u, w
        n //= 2


def _expected_by_quadrature(p: BGNBDParams, t: float, x: np.ndarray, age: np.ndarray) -> np.ndarray:
    """E[purchases in (T, T + t] | alive at T] by integrating over the drop-out probability, vectorised.

    Given alive, lambda ~ Gamma(r + x, alpha + T) and q ~ Beta(a, b + x), and E[X(t) | lambda, q] =
    (1 - exp(-lambda q t)) / q (the paper's eq. 7); lambda integrates in closed form, q by Gauss-Jacobi
    quadrature with the Beta density as its weight (one set of nodes per distinct x, every customer with
    that x at once). For a very concentrated Beta (a + b + x > 1000, where the closed form overflows)
    q is set to its mean.

    Parameters
    ----------
    x, age : ndarray float64, shape (n,)
        Repeat purchases and age (T) of each customer.

    Returns
    -------
    ndarray float64, shape (n,).
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    age = np.asarray(age, dtype=np.float64).reshape(-1)
    out = np.empty(x.shape)

    def given(q: np.ndarray, shape: np.ndarray, scale: np.ndarray) -> np.ndarray:
        q = np.maximum(q, 1e-300)
        value: np.ndarray = -np.expm1(-shape * np.log1p(q * t / scale)) / q
        return value

    for xi in np.unique(x).tolist():
        rows = np.flatnonzero(x == xi)
        shape, scale = p.r + xi, p.alpha + age[rows]
        b = p.b + xi
        if p.a + b > 1000.0:
            out[rows] = given(np.full(rows.size, p.a / (p.a + b)), np.full(rows.size, shape), scale)
            continue
        # Jacobi weight (1 - u)^(b - 1) (1 + u)^(a - 1) on [-1, 1]; q = (1 + u) / 2
        eps = 2.0 * float(scale.min()) / t if t > 0 else 1.0  # distance below -1 of the singularity
        rho = 1.0 + eps + np.sqrt(eps * (2.0 + eps))
        nodes = int(np.clip(np.ceil(12.7 / np.log(rho)), _MIN_NODES, _MAX_NODES))
        u, w = _jacobi_nodes(nodes, b - 1.0, p.a - 1.0)
        q = (1.0 + u) / 2.0
        w = w / w.sum()  # the Beta density's normalisation: the quadrature is exact for constants
        out[rows] = given(q[None, :], np.full((rows.size, 1), shape), scale[:, None]) @ w
    return out
