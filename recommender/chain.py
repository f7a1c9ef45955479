"""The fallback chain: collaborative -> similar to recent purchases -> bestsellers -> new arrivals."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.sparse import csr_matrix

from recommender.base import Recommender, check_user_items
from recommender.popularity import NewArrivals, PopularityRecommender
from recommender.similar import SimilarItems

__all__ = ["SOURCES", "Pick", "Source", "recommend_with_fallback"]

Source = Literal["collaborative", "similar", "bestsellers", "new_arrivals"]
SOURCES: tuple[Source, ...] = ("collaborative", "similar", "bestsellers", "new_arrivals")


@dataclass(frozen=True, slots=True)
class Pick:
    """One recommended item and why.

    Attributes
    ----------
    item_idx : int
        Item position (the domain turns it into a SKU).
    score : float
        Score from the source that produced the item; not comparable across sources.
    source : {"collaborative", "similar", "bestsellers", "new_arrivals"}
    because : tuple of int
        collaborative: the past items that drove the score; similar: the anchor item; otherwise empty.
    window_days : float or None
        bestsellers: the look-back window the ranking covers.
    """

    item_idx: int
    score: float
    source: Source
    because: tuple[int, ...] = ()
    window_days: float | None = None


def _n_items(
    model: Recommender | None,
    row: csr_matrix | None,
    allowed: np.ndarray | None,
    similar: SimilarItems | None,
    bestsellers: PopularityRecommender | None,
    new_arrivals: NewArrivals | None,
) -> int:
    sizes = set()
    if model is not None and model.is_fitted:
        sizes.add(model.n_items)
    if row is not None:
        sizes.add(int(row.shape[1]))
    if allowed is not None:
        sizes.add(int(np.asarray(allowed).shape[0]))
    if similar is not None:
        sizes.add(similar.n_items)
    if bestsellers is not None and bestsellers.is_fitted:
        sizes.add(bestsellers.n_items)
    if new_arrivals is not None:
        sizes.add(new_arrivals.n_items)
    if len(sizes) != 1:
        raise ValueError(f"inputs disagree on (or do not give) the number of items: {sorted(sizes)}")
    return sizes.pop()


def recommend_with_fallback(
    n: int,
    *,
    model: Recommender | None = None,
    user_idx: int = -1,
    user_items_row: csr_matrix | None = None,
    allowed: np.ndarray | None = None,
    exclude_seen: bool = True,
    recalculate_user: bool = False,
    similar: SimilarItems | None = None,
    recent_items: Sequence[int] | np.ndarray | None = None,
    bestsellers: PopularityRecommender | None = None,
    new_arrivals: NewArrivals | None = None,
    explain_n: int = 3,
    max_anchors: int = 3,
) -> list[Pick]:
    """Fill up to `n` picks from each source in turn, never repeating an item.

    1. ``collaborative``: `model` for a known user (``user_idx >= 0``) or a user folded in from a
       non-empty row; only positive scores; ``because`` = `model.explain` items.
    2. ``similar``: neighbours of the user's recent purchases (`recent_items`, most recent first; by
       default the row's items by decreasing weight), round-robin over up to `max_anchors` anchors.
    3. ``bestsellers``: `bestsellers.top`.
    4. ``new_arrivals``: `new_arrivals.top`.

    Any source may be None and is then skipped. Every source sees the same filters.

    Parameters
    ----------
    n : int
    model : Recommender, optional
    user_idx : int
        Training row of the user, -1 if unknown to the model.
    user_items_row : csr_matrix, shape (1, n_items), optional
        The user's current interactions (including any since training).
    allowed : ndarray bool, shape (n_items,), optional
        False = never return (inactive, out of stock, price, category, explicit excludes...).
    exclude_seen : bool
        Also never return items in `user_items_row`.
    recalculate_user : bool
        Fold the user in from the row even if `user_idx` is known (purchases since training).
    similar, recent_items, bestsellers, new_arrivals, explain_n, max_anchors
        See above.

    Returns
    -------
    list of Pick, length <= n, in chain order.
    """
    row = None if user_items_row is None else check_user_items(user_items_row, what="user_items_row")
    if row is not None and row.shape[0] != 1:
        raise ValueError(f"user_items_row must have exactly one row, got {row.shape[0]}")
    n_items = _n_items(model, row, allowed, similar, bestsellers, new_arrivals)
    blocked = np.zeros(n_items, dtype=bool)
    if allowed is not None:
        blocked |= ~np.asarray(allowed, dtype=bool)
    if exclude_seen and row is not None:
        blocked[row.indices] = True
    picks: list[Pick] = []
    if n <= 0:
        return picks

    def add(
        item: int, score: float, source: Source, because: tuple[int, ...] = (), window: float | None = None
    ) -> None:
        picks.append(Pick(int(item), float(score), source, because, window))
        blocked[item] = True

    has_history = row is not None and row.nnz > 0

    # 1. collaborative
    if model is not None and (has_history or 0 <= user_idx < model.n_users):
        use_row = row if row is not None else csr_matrix((1, n_items), dtype=np.float32)
        known = 0 <= user_idx < model.n_users
        ids, scores = model.recommend(
            user_idx if known else -1,
            use_row,
            n,
            allowed=~blocked,
            exclude_seen=False,  # already in `blocked`
            recalculate_user=recalculate_user or not known,
        )
        positive = scores > 0
        ids, scores = ids[positive], scores[positive]
        reasons: list[list[tuple[int, float]]] = [[] for _ in ids]
        if explain_n > 0 and use_row.nnz and ids.size:
            reasons = model.explain_many(user_idx, use_row, ids, explain_n)
        for item, score, reason in zip(ids.tolist(), scores.tolist(), reasons, strict=True):
            add(item, score, "collaborative", tuple(i for i, _ in reason))

    # 2. similar to recent purchases
    if similar is not None and len(picks) < n:
        if recent_items is not None:
            anchors = [int(i) for i in np.asarray(recent_items).reshape(-1)]
        elif has_history:
            assert row is not None
            anchors = row.indices[np.lexsort((row.indices, -row.data))].tolist()
        else:
            anchors = []
        anchors = [a for a in dict.fromkeys(anchors) if 0 <= a < n_items][:max_anchors]
        lists = [similar.similar(a, n, allowed=~blocked) for a in anchors]
        for rank in range(n):
            for anchor, (ids, scores) in zip(anchors, lists, strict=True):
                if len(picks) >= n:
                    break
                if rank < ids.size and not blocked[ids[rank]]:
                    add(int(ids[rank]), float(scores[rank]), "similar", (anchor,))

    # 3. bestsellers
    if bestsellers is not None and len(picks) < n:
        window = bestsellers.params["window_days"]
        ids, scores = bestsellers.top(n - len(picks), allowed=~blocked)
        for item, score in zip(ids.tolist(), scores.tolist(), strict=True):
            add(item, score, "bestsellers", (), window)

    # 4. new arrivals
    if new_arrivals is not None and len(picks) < n:
        ids, scores = new_arrivals.top(n - len(picks), allowed=~blocked)
        for item, score in zip(ids.tolist(), scores.tolist(), strict=True):
            add(item, score, "new_arrivals")

    return picks
