"""Serving's fill order, in one place: the model's picks, similar items, bestsellers, then new arrivals.

The storefront (:mod:`domain.serving.recommendations`) and `giftrec evaluate`'s served row
(:mod:`domain.serving.evaluation`) both fill a customer's list with :func:`fill_picks`, so what is measured
offline is what a customer is shown. Positions are those of the caller's catalogue (the live catalog, or
the items an evaluation split knows); `to_pos` carries the model's items over to them.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.sparse import csr_matrix

from recommender.base import Recommender, top_k
from recommender.chain import recommend_with_fallback
from recommender.popularity import NewArrivals
from recommender.similar import SimilarItems

__all__ = ["Filled", "bestseller_picks", "fill_picks"]


class Filled(NamedTuple):
    """One pick in catalogue positions: its score, source and (model item ids) why."""

    position: int
    score: float
    source: str
    because: tuple[int, ...]


def bestseller_picks(popularity: np.ndarray, blocked: np.ndarray, n: int) -> list[Filled]:
    """The `n` best sold positions not `blocked` (never an unsold one); marks them blocked."""
    if n <= 0:
        return []
    scores = popularity.astype(np.float64, copy=True)
    scores[scores <= 0] = -np.inf
    scores[blocked] = -np.inf
    ids, values = top_k(scores, n)
    blocked[ids] = True
    return [Filled(p, s, "bestsellers", ()) for p, s in zip(ids.tolist(), values.tolist(), strict=True)]


def fill_picks(
    n: int,
    blocked: np.ndarray,
    *,
    model: Recommender | None,
    user_idx: int,
    row: csr_matrix | None,
    to_pos: np.ndarray,
    similar: SimilarItems | None,
    bestsellers: np.ndarray,
    new_arrivals: NewArrivals,
    recalculate: bool = False,
    explain_n: int = 3,
) -> list[Filled]:
    """Up to `n` picks along serving's chain; `blocked` (bool per position) is updated as picks are made.

    Parameters
    ----------
    n : int
    blocked : ndarray bool, shape (n_positions,)
        Positions never to show (filters, bought items for discovery picks); picked ones are added.
    model : Recommender or None
        The model for this kind of pick (repeat-mode or discovery), None without a trained model.
    user_idx : int
        The customer's model row, -1 if the model never saw them (folded in from `row`).
    row : csr_matrix, shape (1, n_model_items), or None
        The customer's interactions aligned to the model's items; None: no collaborative step.
    to_pos : ndarray int, shape (n_model_items,)
        Catalogue position of each model item, -1 when it is not in the catalogue.
    similar : SimilarItems or None
    bestsellers : ndarray, shape (n_positions,)
        Distinct buyers per position over the bestseller window (0 = never sold in it).
    new_arrivals : NewArrivals over the positions.
    recalculate, explain_n
        As `recommender.chain.recommend_with_fallback`.
    """
    picks: list[Filled] = []
    if model is not None and row is not None:
        chain = recommend_with_fallback(
            n,
            model=model,
            user_idx=user_idx,
            user_items_row=row,
            allowed=np.append(~blocked, False)[to_pos],  # -1 (not in the catalogue) picks the False
            exclude_seen=False,  # bought items are blocked; viewed ones may be shown
            recalculate_user=recalculate,
            similar=similar,
            explain_n=explain_n,
        )
        for pick in chain:
            position = int(to_pos[pick.item_idx])
            if not blocked[position]:
                picks.append(Filled(position, pick.score, pick.source, pick.because))
                blocked[position] = True
    picks += bestseller_picks(bestsellers, blocked, n - len(picks))
    if len(picks) < n:
        ids, values = new_arrivals.top(n - len(picks), allowed=~blocked)
        blocked[ids] = True
        picks += [
            Filled(p, s, "new_arrivals", ()) for p, s in zip(ids.tolist(), values.tolist(), strict=True)
        ]
    return picks
