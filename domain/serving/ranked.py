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
"""

from __future__ import annotations

import operator
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["CANDIDATES", "Ranked", "RankedCache"]

#: Products kept per customer: far more than a page shows, so that filters rarely exhaust them.
CANDIDATES = 200


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
    """

    rows: object
    items: np.ndarray
    scores: np.ndarray
    version: object = None
    offered_ranks: np.ndarray = field(default_factory=_empty)
    offered_positions: np.ndarray = field(default_factory=_empty)
    offered_prices: np.ndarray = field(default_factory=_empty)
    texts: dict[int, str] = field(default_factory=dict)


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
