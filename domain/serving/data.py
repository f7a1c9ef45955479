"""What a serving process holds in memory for one model: the model, every customer's rows, sales, index.

Built by :class:`~domain.serving.model_store.ModelStore` and only read by requests.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.sparse import coo_matrix, csr_matrix
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from domain.customers.confidence import FEW_ROWS, keyed_csr, sums_by_key
from domain.customers.interactions import (
    InteractionRows,
    SalesRows,
    Watermark,
)
from domain.models import Event, Order
from domain.origin import real_orders
from domain.serving.kept_rows import KeptRows
from domain.serving.ranked import PrecomputedRankings, RankedCache
from recommender.base import Recommender
from recommender.interactions import IdIndex
from recommender.similar import SimilarItems

__all__ = ["CustomerRows", "LoadedModel", "ServingData", "rows_as_read"]

log = logging.getLogger(__name__)
EMPTY_IDS = np.empty(0, dtype=np.int64)


@dataclass(frozen=True)
class LoadedModel:
    """A verified artifact in memory, with what serving derives from it once."""

    run_id: int
    version: str
    algorithm: str
    model: Recommender
    #: The model without the customer's own repeat term (hybrid), for picks that exclude bought items.
    discovery: Recommender
    user_index: IdIndex
    item_index: IdIndex
    similar: SimilarItems | None
    trained_watermark: Watermark
    loaded_at: dt.datetime
    #: When its run finished (the model's age is counted from here).
    trained_at: dt.datetime | None = None

    @property
    def n_items(self) -> int:
        return len(self.item_index)


@dataclass(frozen=True)
class CustomerRows:
    """One customer's interactions as the request path uses them."""

    customer_id: int
    #: Training row of the customer in the model, -1 if the model never saw them.
    user_idx: int
    #: Interaction row aligned to the model's items, shape (1, n_items); None without a model.
    row: csr_matrix | None
    #: Products bought and not (entirely) returned.
    bought_product_ids: np.ndarray
    #: Activity since training: fold the customer in from ``row`` instead of the stored factors.
    recalculate: bool

    def same_as(self, other: object) -> bool:
        """The same customer with equal rows (what a kept ranking depends on, besides the model)."""
        if other is self:
            return True
        if not isinstance(other, CustomerRows):
            return False
        if (self.customer_id, self.user_idx, self.recalculate) != (
            other.customer_id,
            other.user_idx,
            other.recalculate,
        ) or not np.array_equal(self.bought_product_ids, other.bought_product_ids):
            return False
        a, b = self.row, other.row
        if a is None or b is None:
            return a is b
        return (
            a.shape == b.shape
            and np.array_equal(a.indices, b.indices)
            and np.array_equal(a.data, b.data)
            and np.array_equal(np.diff(a.indptr), np.diff(b.indptr))
        )


@dataclass
class ServingData:
    """Everything the request path reads, for one model (or none yet)."""

    model: LoadedModel | None
    version: tuple[int, int, int, int]
    users: IdIndex
    user_items: csr_matrix | None
    bought: csr_matrix  # users x (max product id + 1): 1 where bought net of returns
    sales: SalesRows
    customers: dict[str, int]
    refold: frozenset[int]
    built_at: dt.datetime
    fresh: dict[int, CustomerRows] = field(default_factory=dict)
    cache: dict[Any, Any] = field(default_factory=dict)
    #: Customers' rankings made from this data (see domain.serving.ranked).
    ranked: RankedCache = field(default_factory=lambda: RankedCache(0))
    #: CustomerRows cut from ``user_items``/``bought`` on first use (slicing a CSR row costs more than the
    #: rest of a recommendation); valid as long as this ServingData, as ``fresh`` overrides them.
    rows: dict[int, CustomerRows] = field(default_factory=dict)
    #: Raw rows of customers reloaded before, so that their next reload reads only what is new (see
    #: domain.serving.kept_rows); a full re-read starts anew.
    kept: KeptRows = field(default_factory=KeptRows)
    #: The most active customers' rankings, made in the background once the model is loaded (see
    #: domain.serving.precomputed); None when ``api.precomputed_customers`` is 0 or without a model.
    precomputed: PrecomputedRankings | None = None
    #: Erasures before this moment are reflected in the data (its read began after it, less an overlap).
    erasures_seen: dt.datetime | None = None


def data_version(session: Session) -> tuple[int, int, int, int]:
    """Newest ids and row counts of orders and events: changes on insert and on delete. Simulated orders
    are left out: serving never reads them, so adding them changes nothing it serves."""
    orders = session.execute(select(func.max(Order.id), func.count(Order.id)).where(real_orders())).one()
    events = session.execute(select(func.max(Event.id), func.count(Event.id))).one()
    return (int(orders[0] or 0), int(orders[1] or 0), int(events[0] or 0), int(events[1] or 0))


def rows_between(session: Session, since: Watermark, upto: Watermark) -> tuple[int, int]:
    """How many orders and events have ids above ``since`` and up to ``upto``."""
    orders = session.scalar(
        select(func.count(Order.id)).where(
            Order.id > since.order_id, Order.id <= upto.order_id, real_orders()
        )
    )
    events = session.scalar(
        select(func.count(Event.id)).where(Event.id > since.event_id, Event.id <= upto.event_id)
    )
    return int(orders or 0), int(events or 0)


def bought_matrix(rows: InteractionRows, users: IdIndex) -> csr_matrix:
    """Customers x product ids: 1 where purchases exceed returns.

    Quantities are whole numbers, so their sums are exact in any order: up to ``FEW_ROWS`` lines (a
    reload's) are summed in numpy into one CSR matrix directly, skipping the COO matrix and its conversion
    that cost most of the time at a few dozen lines.
    """
    is_return = rows.kinds == "return"
    sale = is_return | (rows.kinds == "purchase")
    u = users.index_of(rows.customer_ids)
    keep = sale & (u >= 0)
    width = int(rows.product_ids[sale].max()) + 1 if sale.any() else 1
    net = np.where(is_return, -rows.quantities, rows.quantities)[keep]
    u, products = u[keep], rows.product_ids[keep]
    if net.size <= FEW_ROWS:
        keys, sums = sums_by_key(u * width + products, net)
        bought = keys[sums > 0]
        return keyed_csr(bought, np.ones(bought.size, dtype=np.float32), (len(users), width))
    m = coo_matrix((net, (u, products)), shape=(len(users), width)).tocsr()
    m.data = (m.data > 0).astype(np.float32)
    m.eliminate_zeros()
    return m


def csr_row(matrix: csr_matrix, u: int) -> csr_matrix:
    """``matrix[u]`` (shape (1, n)) sharing the matrix's arrays: a third of the cost of scipy's indexing."""
    start, stop = int(matrix.indptr[u]), int(matrix.indptr[u + 1])
    indptr = np.array([0, stop - start], dtype=matrix.indptr.dtype)
    row = csr_matrix(
        (matrix.data[start:stop], matrix.indices[start:stop], indptr), shape=(1, matrix.shape[1]), copy=False
    )
    return row


def rows_as_read(data: ServingData, customer_id: int) -> CustomerRows:
    """The customer's rows as ``data`` was read (a reload puts newer ones in ``data.fresh``)."""
    u = int(data.users.index_of(customer_id)[0])
    model = data.model
    if u < 0:
        empty = None if model is None else csr_matrix((1, model.n_items), dtype=np.float32)
        return CustomerRows(customer_id, -1, empty, EMPTY_IDS, False)
    bought = data.bought.indices[data.bought.indptr[u] : data.bought.indptr[u + 1]].astype(np.int64)
    if model is None or data.user_items is None:
        return CustomerRows(customer_id, -1, None, bought, False)
    known = u < len(model.user_index)
    return CustomerRows(
        customer_id,
        u if known else -1,
        csr_row(data.user_items, u),
        bought,
        (not known) or customer_id in data.refold,
    )


def similar_for(model: Recommender) -> SimilarItems | None:
    for candidate in (model, getattr(model, "als", None)):
        if candidate is None:
            continue
        try:
            return SimilarItems.from_model(candidate)
        except TypeError:
            continue
    return None
