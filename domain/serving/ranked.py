"""Each web worker's memory of customers' ranked picks: rank once, then only filter per request.

A storefront asks for the same customer's picks again and again (every page of a visit, with other
filters each time). The ranking (scores over every product, the top of them, the reasons) depends on the
model and on the customer's rows only, so it is kept: :class:`Ranked` holds the customer's best
``CANDIDATES`` products, nothing bought, in the order the model gives; a request takes the first ``n`` its
filters allow. That is exactly what ranking with the filters gives, since a filter only removes products
from the order, so the use case falls back to ranking only when the kept list runs out. A customer's first
request makes its :class:`Ranked` the same way (with ``size`` 0 every request does, and nothing is kept).

An entry is valid while the customer's rows are the same object, or equal ones (``same``: after the data
was read again for the same model):
:class:`~domain.serving.model_store.ModelStore` replaces them when the customer buys, returns or browses, and
only a new model starts with an empty cache. Least recently used customers go first once ``size`` are
kept.

:class:`PrecomputedRankings` holds the rankings made ahead of the most active customers' first requests,
in flat arrays (:mod:`domain.serving.precomputed` makes them).
"""

from __future__ import annotations

import operator
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix

__all__ = ["CANDIDATES", "EXPLAINED", "EXPLAIN_N", "PrecomputedRankings", "Ranked", "RankedCache"]

#: Products kept per customer: far more than a page shows, so that filters rarely exhaust them.
CANDIDATES = 200
#: Past items named behind a collaborative pick (the chain's default).
EXPLAIN_N = 3
#: Products explained per precomputed ranking, best first: a request with the storefront's filters
#: nearly always shows products among them; one that goes further explains the rest as a kept ranking does.
EXPLAINED = 50


def _empty() -> np.ndarray:
    return np.empty(0, dtype=np.int64)


@dataclass(slots=True)
class Ranked:
    """One customer's discovery ranking: a few arrays and a dict per customer, not hundreds of Python
    objects (thousands of customers are kept, and the garbage collector walks every container).

    Attributes
    ----------
    rows : object
        The customer rows it was ranked from (identity is what counts).
    items : ndarray int32
        Model item ids, best first: positive scores only, nothing the customer bought.
    scores : ndarray float64
        Rounded to 6 decimals, as shown.
    version : object
        The catalog version the ``offered_*`` arrays and ``texts`` were made for.
    offered_ranks, offered_positions, offered_prices : ndarray
        The kept products the catalog offers now (active, in stock), best first: their rank in ``items``,
        catalog position and price. What a request filters.
    texts : dict
        Model item id -> the explanation shown, filled as items are shown (explanations cost more than
        the ranking, and a request shows a handful; they name products, hence per catalog version).
    reasons : ndarray, shape (k, EXPLAIN_N)
        The model item ids behind the first ``k`` items (-1 padded), when they were explained ahead
        (:mod:`domain.serving.precomputed`): their texts need no factorisation.
    """

    rows: object
    items: np.ndarray
    scores: np.ndarray
    version: object = None
    offered_ranks: np.ndarray = field(default_factory=_empty)
    offered_positions: np.ndarray = field(default_factory=_empty)
    offered_prices: np.ndarray = field(default_factory=_empty)
    texts: dict[int, str] = field(default_factory=dict)
    reasons: np.ndarray = field(default_factory=_empty)


class RankedCache:
    """customer id -> :class:`Ranked`, least recently used out first beyond ``size`` (0 keeps none)."""

    def __init__(self, size: int, same: Callable[[Any, Any], bool] = operator.is_) -> None:
        self.size = size
        self._same = same
        self._entries: OrderedDict[int, Ranked] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, customer_id: int, rows: object) -> Ranked | None:
        """The customer's ranking if it was made from these very ``rows``."""
        with self._lock:
            found = self._entries.get(customer_id)
            if found is None:
                return None
            if found.rows is not rows:
                if not self._same(rows, found.rows):
                    del self._entries[customer_id]
                    return None
                found.rows = rows  # equal rows: identity answers the next time
            self._entries.move_to_end(customer_id)
            return found

    def put(self, customer_id: int, ranked: Ranked) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._entries[customer_id] = ranked
            self._entries.move_to_end(customer_id)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)


class PrecomputedRankings:
    """The rankings of chosen customers of one ServingData, in flat arrays (filled by
    :func:`domain.serving.precomputed.fill`, a slot at a time with :meth:`put`).

    Parameters
    ----------
    user_items : csr_matrix
        The data's matrix the customers' rows are cut from (identity is what counts).
    customer_ids : ndarray int64
        The customers to rank, in the order they are ranked (most active first).
    n_items : int
        Items of the model (chooses the id width: int16 below 32,768 items).
    """

    def __init__(self, user_items: csr_matrix, customer_ids: np.ndarray, n_items: int) -> None:
        self.user_items = user_items
        self._order = np.asarray(customer_ids, dtype=np.int64)
        self._sorter = np.argsort(self._order, kind="stable")
        self._sorted = self._order[self._sorter]
        n = self._order.size
        ids = np.int16 if n_items < np.iinfo(np.int16).max else np.int32
        #: Products kept per customer; -1 until the customer is ranked.
        self.counts = np.full(n, -1, dtype=np.int16)
        self.items = np.zeros((n, CANDIDATES), dtype=ids)
        self.scores = np.zeros((n, CANDIDATES), dtype=np.float32)
        #: Model item ids behind each of the first EXPLAINED products, -1 padded.
        self.reasons = np.full((n, EXPLAINED, EXPLAIN_N), -1, dtype=ids)
        self._cancelled = threading.Event()

    @classmethod
    def most_active(
        cls, user_items: csr_matrix, customer_ids: np.ndarray, n_items: int, limit: int
    ) -> PrecomputedRankings:
        """For the ``limit`` customers with the most interactions (rows of ``user_items``, whose customer
        ids are ``customer_ids``), ties by row."""
        nnz = np.diff(user_items.indptr)
        rows = np.flatnonzero(nnz > 0)
        rows = rows[np.argsort(-nnz[rows], kind="stable")][:limit]
        return cls(user_items, np.asarray(customer_ids)[rows], n_items)

    def __len__(self) -> int:
        return int(self._order.size)

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays (what a worker holds for these customers)."""
        arrays = (self.counts, self.items, self.scores, self.reasons, self._order, self._sorter, self._sorted)
        return sum(a.nbytes for a in arrays)

    @property
    def ranked_count(self) -> int:
        return int((self.counts >= 0).sum())

    def cancel(self) -> None:
        """Stop filling (a newer model or data replaced this one)."""
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    @property
    def customer_ids(self) -> np.ndarray:
        """The chosen customers, in the order they are ranked."""
        return self._order

    def put(self, slot: int, ids: np.ndarray, scores: np.ndarray, reasons: np.ndarray | None) -> None:
        """Store the ranking of the customer at ``slot`` with the reasons of its first items (model item
        ids, shape (k, n), -1 padded, as ``Recommender.explain_ids`` gives them; None: none); a request
        reads the slot only once this is done."""
        count = int(ids.size)
        self.items[slot, :count] = ids
        self.scores[slot, :count] = scores
        if reasons is not None and reasons.size:
            self.reasons[slot, : reasons.shape[0], : reasons.shape[1]] = reasons
        self.counts[slot] = count

    def _slot(self, customer_id: int) -> int:
        i = int(np.searchsorted(self._sorted, customer_id))
        if i < self._sorted.size and self._sorted[i] == customer_id:
            return int(self._sorter[i])
        return -1

    def ranked(self, customer_id: int, rows: object) -> Ranked | None:
        """The customer's precomputed ranking as a :class:`Ranked` of these ``rows`` (with the reasons of
        its first products), or None when it is not made (yet)."""
        slot = self._slot(customer_id)
        if slot < 0:
            return None
        count = int(self.counts[slot])
        if count < 0:
            return None
        return Ranked(
            rows,
            self.items[slot, :count].astype(np.int32),
            # Rounded as a kept ranking is (exactly: a float32 times 1e6 is exact in float64).
            np.round(self.scores[slot, :count].astype(np.float64), 6),
            reasons=self.reasons[slot, : min(count, EXPLAINED)],
        )
