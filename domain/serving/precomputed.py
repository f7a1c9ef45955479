"""Rankings made when a model is loaded: the most active customers' first request only filters.

A customer's first request in a worker used to rank (score every product, take the top
``CANDIDATES``) and explain the items it shows (a Cholesky factorisation of the customer's item Gram
matrix): three times the CPU of a kept ranking's request (docs/performance.md). After a model is loaded,
:func:`fill` ranks the most active customers (most interactions first, up to
``api.precomputed_customers``) in a background thread, with the same calls a request makes
(:func:`rank_customer`), and explains the first ``EXPLAINED`` products of each at once. It keeps them in
a few flat arrays, :class:`~domain.serving.ranked.PrecomputedRankings` (about 1.5 KB a customer, against
about 16 KB for a kept ranking with its texts): a request turns its customer's row into a
:class:`~domain.serving.ranked.Ranked` and filters it exactly as a kept one.

A precomputed ranking holds while the customer's rows are those it was made from: the data's
``user_items`` (the same object: a full re-read starts a new set) and nothing in ``fresh`` for the
customer (activity since: their rows were reloaded, so they rank again, folded in).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from domain.serving.data import CustomerRows, LoadedModel
from domain.serving.ranked import CANDIDATES, EXPLAIN_N, EXPLAINED, PrecomputedRankings

__all__ = ["fill", "rank_customer"]


def rank_customer(loaded: LoadedModel, rows: CustomerRows) -> tuple[np.ndarray, np.ndarray] | None:
    """The customer's discovery ranking: up to ``CANDIDATES`` model item ids (int32) with positive
    float32 scores, best first, nothing bought; None when the model has nothing to say about them (the
    chain starts at similar items / bestsellers)."""
    row = rows.row
    assert row is not None
    known = 0 <= rows.user_idx < loaded.discovery.n_users
    if not (known or row.nnz):
        return None
    allowed = np.ones(loaded.n_items, dtype=bool)
    bought = loaded.item_index.index_of(rows.bought_product_ids)
    allowed[bought[bought >= 0]] = False
    ids, scores = loaded.discovery.recommend(
        rows.user_idx if known else -1,
        row,
        CANDIDATES,
        allowed=allowed,
        exclude_seen=False,
        recalculate_user=rows.recalculate or not known,
    )
    positive = scores > 0  # as the chain: a collaborative pick needs a positive score
    return ids[positive], scores[positive]


def fill(
    ahead: PrecomputedRankings,
    loaded: LoadedModel,
    rows_of: Callable[[int], CustomerRows | None],
    *,
    pause: Callable[[], None] | None = None,
) -> None:
    """Rank every customer ``ahead`` chose, most active first, with the calls a request makes, and explain
    the first ``EXPLAINED`` products of each; ``rows_of`` gives a customer's rows (None: skip them, their
    rows changed). ``pause`` is called between two customers (to yield to requests). Stops early once
    cancelled."""
    discovery = loaded.discovery
    for slot, customer_id in enumerate(ahead.customer_ids.tolist()):
        if ahead.cancelled:
            return
        if pause is not None and slot:
            pause()
        rows = rows_of(customer_id)
        if rows is None or rows.row is None:
            continue
        ranking = rank_customer(loaded, rows)
        if ranking is None:
            continue
        ids, scores = ranking
        shown = ids[:EXPLAINED]
        reasons = None
        if rows.row.nnz and shown.size:
            reasons = discovery.explain_ids(rows.user_idx, rows.row, shown, EXPLAIN_N)
        ahead.put(slot, ids, scores, reasons)
