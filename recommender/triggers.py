"""Trigger rules on arrays: replacement windows, running-out timing, cooldowns, price tiers, arms.

Pure numpy and hashlib. Days are integer day numbers (e.g. days since 1970-01-01); the domain layer turns
rows into these arrays and back.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence

import numpy as np

from recommender.curation import TierBounds

__all__ = [
    "ARM_CODES",
    "anchored_tier_bounds",
    "assign_arms",
    "cooldown_over",
    "period_of",
    "replacement_due",
    "review_request_due",
    "running_out_due",
    "unit_hash",
]

#: Arm codes returned by :func:`assign_arms`, as named in ``domain.models.ARMS``.
ARM_CODES: tuple[str, ...] = ("treatment", "control", "holdout")


def replacement_due(last_days: np.ndarray, first: np.ndarray, last: np.ndarray, today: int) -> np.ndarray:
    """Which purchases are inside their category's replacement window today.

    Parameters
    ----------
    last_days : ndarray of int, shape (n,)
        Day of the customer's last purchase in the category.
    first, last : ndarray of int, shape (n,)
        The category's window: days after that purchase when a replacement offer may go (inclusive).
    today : int

    Returns
    -------
    ndarray of bool, shape (n,): ``first <= today - last_day <= last``.
    """
    age = today - np.asarray(last_days, dtype=np.int64)
    return (age >= np.asarray(first)) & (age <= np.asarray(last))


def running_out_due(last_days: np.ndarray, intervals: np.ndarray, today: int, days_before: int) -> np.ndarray:
    """Which products are running out: today is within `days_before` days before the expected repurchase day.

    The expected repurchase day is ``last_day + round(interval)``; the email goes from that day minus
    `days_before` up to the day itself (a run missed for a day or two still sends it), never after.

    Parameters
    ----------
    last_days : ndarray of int, shape (n,)
        Day of the customer's last purchase of the product.
    intervals : ndarray of float, shape (n,)
        Expected days between purchases (the next-purchase model's interval for the pair).
    today : int
    days_before : int

    Returns
    -------
    ndarray of bool, shape (n,)
    """
    expected = np.asarray(last_days, dtype=np.int64) + np.rint(np.asarray(intervals, dtype=np.float64))
    return (today >= expected - days_before) & (today <= expected)


def review_request_due(
    ordered_at: np.ndarray,
    delivered_at: np.ndarray,
    today: int,
    *,
    max_delivery_days: float,
    delay_days: int,
    window_days: int,
) -> np.ndarray:
    """Which delivered orders get a review request today.

    Only an order that arrived quickly (``delivered_at - ordered_at <= max_delivery_days``, in days to the
    second; a delivery stamped before the order is an error, never fast) is asked, from `delay_days` after
    the day of delivery for `window_days` more days (inclusive): a run missed for a day still asks, a
    delivery posted long after the fact does not.

    Parameters
    ----------
    ordered_at, delivered_at : ndarray of datetime64, shape (n,)
        When each order was placed and when it arrived (naive UTC).
    today : int
        Day number (days since 1970-01-01).
    max_delivery_days : float
    delay_days, window_days : int

    Returns
    -------
    ndarray of bool, shape (n,)
    """
    ordered = np.asarray(ordered_at, dtype="datetime64[s]")
    delivered = np.asarray(delivered_at, dtype="datetime64[s]")
    took = (delivered - ordered).astype(np.float64) / 86400.0
    fast = (took >= 0) & (took <= max_delivery_days)
    delivered_day = delivered.astype("datetime64[D]").astype(np.int64)
    age = today - delivered_day
    return fast & (age >= delay_days) & (age <= delay_days + window_days)


def cooldown_over(last_fired: np.ndarray, today: int, cooldown_days: int) -> np.ndarray:
    """True where a trigger may fire again: never fired (-1) or fired at least `cooldown_days` ago."""
    fired = np.asarray(last_fired, dtype=np.int64)
    return (fired < 0) | (today - fired >= cooldown_days)


def anchored_tier_bounds(last_price: float, n_tiers: int = 3, step: float = 1.6) -> TierBounds:
    """Price tiers around what the customer paid last time: the middle tier holds the last price.

    The tiers are geometric, each ``step`` times the one below: with 3 tiers and a last price p, the bounds
    are ``[p/step**1.5, p/step**0.5], [p/step**0.5, p*step**0.5], [p*step**0.5, p*step**1.5]``.
    """
    if not np.isfinite(last_price) or last_price <= 0:
        raise ValueError(f"last_price must be a positive number, got {last_price!r}")
    if step <= 1:
        raise ValueError("step must be > 1")
    offsets = np.arange(n_tiers + 1, dtype=np.float64) - n_tiers / 2
    edges = last_price * step**offsets
    return TierBounds(np.column_stack([edges[:-1], edges[1:]]), "last_price")


def period_of(day: dt.date) -> str:
    """The control groups' period: the calendar quarter, ``2011Q4``."""
    return f"{day.year}Q{(day.month - 1) // 3 + 1}"


def unit_hash(*parts: object) -> float:
    """A stable number in [0, 1) from the parts (blake2b of their text joined by '|'): the same on every
    machine and Python run, unlike ``hash()``."""
    digest = hashlib.blake2b("|".join(str(p) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def assign_arms(
    customer_keys: Sequence[str | int] | np.ndarray,
    trigger: str,
    period: str,
    holdout_share: float,
    control_share: float,
) -> np.ndarray:
    """Each customer's arm for a trigger in a period, deterministic by hash of the customer's key (the shop's
    own customer id: the same arm on every database and after a re-import).

    The global holdout is drawn by ``(customer, "holdout", period)``, the same for every trigger, so a
    held-out customer gets no trigger email at all in that period; the per-trigger control is drawn from
    the rest by ``(customer, trigger, period)``, independently of the holdout.

    Returns
    -------
    ndarray of int8, shape (n,): positions in :data:`ARM_CODES` (0 treatment, 1 control, 2 holdout).
    """
    keys = list(customer_keys.tolist() if isinstance(customer_keys, np.ndarray) else customer_keys)
    out = np.zeros(len(keys), dtype=np.int8)
    for i, cid in enumerate(keys):
        if unit_hash(cid, "holdout", period) < holdout_share:
            out[i] = 2
        elif unit_hash(cid, trigger, period) < control_share:
            out[i] = 1
    return out
