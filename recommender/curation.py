"""Curation: scored candidates -> three price tiers of two or three picks, never something already given.

Pure numpy. The caller (``domain.reminders.selections``) supplies item arrays in one fixed item order,
the blended candidate scores of one selection, and the item positions that must never be picked (what the
recipient was already given, what the customer bought recently). The rules:

* only active, in-stock items that arrive by the occasion when ordered on the reminder day
  (``delivery_days <= days_until``);
* tier bounds come from the customer's past gift spending, or the recipient's budget, or the catalogue
  (:func:`tier_bounds`); a tier with too few eligible items is widened step by step towards its
  neighbours' prices, never past them, so tiers stay ordered by price;
* within a tier, no two picks share a category while an item of an unused category is eligible
  (an unknown category, code -1, never counts as shared);
* ties are broken by the lower item position, so the same inputs always give the same picks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "EXPLANATION_KEYS",
    "SOURCES",
    "CurationError",
    "Pick",
    "TierBounds",
    "curate",
    "tier_bounds",
]

#: Where a candidate's score mostly came from; ``sources`` arrays hold positions in this tuple.
SOURCES: tuple[str, ...] = ("collaborative", "profile", "seasonal", "bestseller")

#: One explanation key per source: templates turn a key into a localised one-line sentence.
EXPLANATION_KEYS: dict[str, str] = {
    "collaborative": "similar_to_your_purchases",
    "profile": "matches_recipient_interests",
    "seasonal": "popular_before_this_occasion",
    "bestseller": "bestseller",
    "manual": "chosen_by_account_manager",
}

# Smallest ratio between a tier's upper and lower bound; narrower tiers are spread geometrically.
_MIN_TIER_RATIO = 1.25
_WIDEN_STEPS = 3
# Candidates ranked per tier before the category rule: this many times the picks wanted.
_SHORTLIST = 8


class CurationError(ValueError):
    """Inconsistent curation input (array shapes, bounds)."""


@dataclass(frozen=True)
class TierBounds:
    """Price bounds per tier, ``bounds[t] = (low, high)``, increasing; and where they came from."""

    bounds: np.ndarray
    basis: str

    def as_list(self) -> list[list[float]]:
        return [[round(float(lo), 2), round(float(hi), 2)] for lo, hi in self.bounds]


@dataclass(frozen=True)
class Pick:
    """One curated pick: item position, tier (0 = cheapest), position within the tier, why."""

    item_idx: int
    tier: int
    position: int
    score: float
    source: str
    explanation: str


def _finite_positive(values: np.ndarray | Sequence[float] | None) -> np.ndarray:
    if values is None:
        return np.zeros(0)
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    return arr[np.isfinite(arr) & (arr > 0)]


def _geometric(lo: float, hi: float, n_tiers: int) -> np.ndarray:
    if hi < lo * _MIN_TIER_RATIO**n_tiers:
        mid = np.sqrt(lo * hi)
        half = _MIN_TIER_RATIO ** (n_tiers / 2)
        lo, hi = mid / half, mid * half
    edges = np.geomspace(lo, hi, n_tiers + 1)
    return np.column_stack([edges[:-1], edges[1:]])


def tier_bounds(
    spent: np.ndarray | Sequence[float] | None,
    *,
    budget_min: float | None = None,
    budget_max: float | None = None,
    catalog_prices: np.ndarray | None = None,
    n_tiers: int = 3,
    min_history: int = 3,
) -> TierBounds:
    """Price tiers for one selection.

    Parameters
    ----------
    spent : array of float, shape (n,)
        Unit prices the customer paid for past gifts (or, failing those, for anything).
    budget_min, budget_max : float, optional
        The recipient's budget; either bound alone is enough and wins over the history.
    catalog_prices : ndarray float, shape (n_items,), optional
        Prices of the available catalogue: the fallback with less than `min_history` past prices.
    n_tiers : int
    min_history : int
        Past prices needed before the history is trusted.

    Returns
    -------
    TierBounds with ``bounds`` of shape (n_tiers, 2), increasing, and ``basis`` one of
    ``budget``, ``history``, ``catalog``.
    """
    if budget_min is not None or budget_max is not None:
        lo = float(budget_min) if budget_min is not None and budget_min > 0 else None
        hi = float(budget_max) if budget_max is not None and budget_max > 0 else None
        if lo is not None and hi is not None and hi < lo:
            raise CurationError(f"budget_max {hi} is below budget_min {lo}")
        if lo is None and hi is None:
            raise CurationError("a budget needs a positive bound")
        lo = lo if lo is not None else hi / 4  # type: ignore[operator]
        hi = hi if hi is not None else lo * 4
        return TierBounds(_geometric(lo, hi, n_tiers), "budget")
    history = _finite_positive(spent)
    if history.size >= min_history:
        prices, basis = history, "history"
    else:
        prices, basis = _finite_positive(catalog_prices), "catalog"
        if prices.size == 0:
            raise CurationError("no past spending, no budget and no catalogue prices to set tiers")
    qs = np.quantile(prices, np.linspace(0.1, 0.9, n_tiers + 1))
    if np.all(qs[1:] >= qs[:-1] * _MIN_TIER_RATIO):
        return TierBounds(np.column_stack([qs[:-1], qs[1:]]), basis)
    return TierBounds(_geometric(float(qs[0]), float(qs[-1]), n_tiers), basis)


def _ranked(idx: np.ndarray, scores: np.ndarray, limit: int) -> np.ndarray:
    """The best `limit` of the item positions `idx` (plus any tied with the last), by score then position.

    A partial sort: only the shortlist is sorted, which is what makes planning cheap per selection.
    """
    vals = scores[idx]
    if idx.size > limit > 0:
        threshold = np.partition(vals, idx.size - limit)[idx.size - limit]
        keep = vals >= threshold  # every item tied with the cut stays: ties are broken by position below
        idx, vals = idx[keep], vals[keep]
    order = np.lexsort((idx, -vals))
    return idx[order]


def _pick_tier(order: np.ndarray, categories: np.ndarray, k: int) -> list[int]:
    """Greedy by rank: distinct categories first, then fill up with the best of the rest."""
    chosen: list[int] = []
    used: set[int] = set()
    for i in order.tolist():
        cat = int(categories[i])
        if cat >= 0 and cat in used:
            continue
        chosen.append(i)
        if cat >= 0:
            used.add(cat)
        if len(chosen) == k:
            return chosen
    taken = set(chosen)
    for i in order.tolist():
        if i not in taken:
            chosen.append(i)
            if len(chosen) == k:
                break
    return chosen


def curate(
    scores: np.ndarray,
    sources: np.ndarray,
    *,
    prices: np.ndarray,
    categories: np.ndarray,
    available: np.ndarray,
    bounds: TierBounds | np.ndarray,
    delivery_days: np.ndarray | None = None,
    days_until: int | None = None,
    exclude: np.ndarray | Sequence[int] | None = None,
    picks_per_tier: int = 3,
    min_picks: int = 2,
) -> list[Pick]:
    """Three (or ``len(bounds)``) price tiers of picks for one selection.

    Parameters
    ----------
    scores : ndarray float, shape (n_items,)
        Blended candidate scores, higher is better; -inf or NaN = not a candidate.
    sources : ndarray int, shape (n_items,)
        Position in :data:`SOURCES` of the component that contributed most to each score.
    prices : ndarray float, shape (n_items,)
    categories : ndarray int, shape (n_items,)
        Category code per item, -1 when unknown.
    available : ndarray bool, shape (n_items,)
        Active and in stock.
    bounds : TierBounds or ndarray, shape (n_tiers, 2)
    delivery_days : ndarray int, shape (n_items,), optional
        With `days_until`: items must arrive by the occasion (``delivery_days <= days_until``).
    days_until : int, optional
        Days from the reminder to the occasion.
    exclude : array of int, optional
        Item positions never to pick (already given, recently bought); out-of-range positions ignored.
    picks_per_tier : int
        Picks wanted per tier.
    min_picks : int
        A tier with fewer eligible items is widened towards its neighbours' bounds.

    Returns
    -------
    list of :class:`Pick`, tier by tier (cheapest first), best first within a tier; a tier may hold
    fewer than `min_picks` picks (even none) when the catalogue has nothing more to offer.
    """
    scores = np.asarray(scores, dtype=np.float64)
    n = scores.shape[0]
    arrays = {"sources": sources, "prices": prices, "categories": categories, "available": available}
    if delivery_days is not None:
        arrays["delivery_days"] = delivery_days
    for name, arr in arrays.items():
        if np.shape(arr) != (n,):
            raise CurationError(f"{name} must have shape ({n},), got {np.shape(arr)}")
    edges = np.asarray(bounds.bounds if isinstance(bounds, TierBounds) else bounds, dtype=np.float64)
    if edges.ndim != 2 or edges.shape[1] != 2 or np.any(edges[:, 0] > edges[:, 1]):
        raise CurationError(f"bounds must be (n_tiers, 2) with low <= high, got {edges.tolist()}")
    price = np.asarray(prices, dtype=np.float64)
    ok = np.asarray(available, dtype=bool) & np.isfinite(scores) & np.isfinite(price) & (price > 0)
    if delivery_days is not None and days_until is not None:
        ok &= np.asarray(delivery_days) <= days_until
    if exclude is not None:
        ex = np.asarray(exclude, dtype=np.int64).reshape(-1)
        ok[ex[(ex >= 0) & (ex < n)]] = False
    cats = np.asarray(categories, dtype=np.int64)
    src = np.asarray(sources, dtype=np.int64)
    n_tiers = edges.shape[0]
    picks: list[Pick] = []
    prev_max = 0.0
    for t in range(n_tiers):
        lo, hi = edges[t]
        # Widening reaches at most the middle of a neighbour tier, and a tier never goes below the
        # dearest pick of the tier before: tiers stay ordered by price.
        floor = float(np.sqrt(edges[t - 1][0] * edges[t - 1][1])) if t > 0 else lo / 4
        ceiling = float(np.sqrt(edges[t + 1][0] * edges[t + 1][1])) if t + 1 < n_tiers else hi * 4
        for step in range(_WIDEN_STEPS + 1):
            f = step / _WIDEN_STEPS
            a = max(lo - (lo - floor) * f, prev_max)
            b = hi + (ceiling - hi) * f
            upper = price <= b if t == n_tiers - 1 else price < b
            cand = np.flatnonzero(ok & (price >= a) & upper)
            if cand.size >= min_picks:
                break
        chosen = _pick_tier(_ranked(cand, scores, _SHORTLIST * picks_per_tier), cats, picks_per_tier)
        if len(set(cats[chosen][cats[chosen] >= 0].tolist())) < np.count_nonzero(cats[chosen] >= 0):
            chosen = _pick_tier(_ranked(cand, scores, cand.size), cats, picks_per_tier)  # look further
        if chosen:
            prev_max = max(prev_max, float(price[chosen].max()))
        for pos, i in enumerate(chosen):
            ok[i] = False
            source = SOURCES[int(src[i])] if 0 <= src[i] < len(SOURCES) else "bestseller"
            picks.append(Pick(int(i), t, pos, float(scores[i]), source, EXPLANATION_KEYS[source]))
    return picks
