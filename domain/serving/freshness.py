"""What a serving process has read of the orders and events written since its data was read.

A :class:`~domain.serving.model_store.ModelStore` serves data read in bulk; the writes that follow reach
its customers' rows here, one customer or a few at a time, without reading the rest again:

- **this process's writes**: the code that records an order or event calls :meth:`Freshness.changed`
  after its commit, and the next recommendation for that customer reloads their rows synchronously (one
  indexed query for that customer only): visible at once. When the writer passes the rows it wrote and
  the customer's rows are kept (:mod:`domain.serving.kept_rows`), they are added to the kept ones
  instead, without a read (:meth:`Freshness.add_written`);
- **other processes' writes** (:meth:`Freshness.tail`, every ``freshness_interval`` seconds): the orders
  and events with ids above the watermark seen ``freshness_overlap`` seconds ago, and the rows of their
  customers reloaded (one query per 500 customers): visible within that interval. The overlap re-reads
  recent ids so that a transaction that committed a little after a later one is not missed; the ids
  already read are remembered for the overlap, so that each write is reloaded once, not at every check of
  its overlap.

Either reload reads only the orders and events above the watermark settled ``freshness_overlap`` seconds
ago for a customer whose rows it read before (:mod:`domain.serving.kept_rows`): an active customer's
reload does not grow with their history. Reloaded customers are kept in the data's ``fresh`` rows and
folded in (``recalculate_user``) with their new purchases.

While a new model's data is read and ranked beside the old one (the store's swap), the customers reloaded
on the old data are recorded (:meth:`Freshness.record_reloads`) and reloaded again once the new data
serves.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable

import numpy as np
from sqlalchemy.orm import Session

from config import InteractionSettings
from domain.customers.confidence import build_matrix
from domain.customers.interactions import (
    SourcedRows,
    Watermark,
    WrittenRows,
    activity_watermark,
    new_activity,
)
from domain.serving.data import CustomerRows, ServingData, bought_matrix, csr_row
from recommender.interactions import IdIndex

__all__ = ["Freshness"]


class Freshness:
    """The activity tail of one serving process (see the module docstring). The store's check thread calls
    :meth:`tail`; request threads call :meth:`changed`, :meth:`take` and :meth:`reload`.

    Parameters
    ----------
    interactions : InteractionSettings
        How rows become a matrix row (as for the bulk read).
    overlap : float
        ``freshness_overlap``, seconds.
    clock : callable
        Monotonic seconds (the store's).
    """

    def __init__(self, interactions: InteractionSettings, overlap: float, clock: Callable[[], float]) -> None:
        self._interactions = interactions
        self._overlap = overlap
        self._clock = clock
        #: (when, watermark) seen by the checks of the last ``overlap`` seconds, oldest first.
        self._marks: deque[tuple[float, Watermark]] = deque()
        #: Customers this process wrote for and has not reloaded yet.
        self._dirty: set[int] = set()
        #: The rows of those writes, by customer (None: a write without its rows, which needs a read).
        self._written: dict[int, list[WrittenRows] | None] = {}
        #: Order and event ids above the oldest watermark of ``_marks`` whose rows this process has read
        #: (the check reloads a customer for an id not among them).
        self._read_orders: set[int] = set()
        self._read_events: set[int] = set()
        #: The customers reloaded since :meth:`record_reloads` (None: not recording).
        self._reloaded: set[int] | None = None

    # --------------------------------------------------------------------------------- this process
    def changed(
        self,
        customer_id: int,
        *,
        order_ids: Iterable[int] = (),
        event_ids: Iterable[int] = (),
        rows: WrittenRows | None = None,
    ) -> None:
        """This process committed an order, return or event of the customer: reload their rows on next use.

        ``order_ids``/``event_ids`` are the rows it wrote: that reload reads them, so :meth:`tail` need not
        reload the customer for them again (it still does for anyone else's). ``rows``: what was written
        (:class:`~domain.customers.interactions.WrittenRows`), which :meth:`add_written` adds to the
        customer's kept rows instead of reading them."""
        customer_id = int(customer_id)
        written = self._written.get(customer_id, [])
        self._written[customer_id] = None if rows is None or written is None else [*written, rows]
        self._dirty.add(customer_id)
        self._read_orders.update(order_ids)
        self._read_events.update(event_ids)

    def mark_changed(self, customer_ids: Iterable[int]) -> None:
        """Reload these customers' rows on their next use (their rows may be older than the data's)."""
        self._dirty.update(customer_ids)

    def take(self, customer_id: int) -> bool:
        """Whether this process wrote for the customer since their rows were last read (then the caller
        reloads them now, with :meth:`reload`): asked once, it answers False until the next write."""
        if customer_id not in self._dirty:
            return False
        self._dirty.discard(customer_id)
        return True

    def forget(self, customer_id: int) -> None:
        """Drop the rows this process wrote for the customer and has not added yet (erased)."""
        self._written.pop(int(customer_id), None)

    def add_written(self, data: ServingData, customer_id: int) -> bool:
        """Add the rows this process wrote for the customer since their last reload to their kept rows and
        put the result in ``data.fresh``, without a read; False when that cannot be done (a write without
        its rows, the customer's rows not kept, no settled watermark yet, no model): the caller reads.

        The same rows as a read would give, to the bit: the kept ones (every row up to the last read) and
        the written ones not among them, in the canonical order. Another process's write since that read
        comes with :meth:`tail`, as it would after a read made just before it."""
        written = self._written.pop(customer_id, None)
        if not written or data.model is None or self.settled() is None:
            return False
        rows = data.kept.add(customer_id, SourcedRows.joined([w.sourced() for w in written]))
        if rows is None:
            return False
        if self._reloaded is not None:
            self._reloaded.add(customer_id)
        self._put(data, [customer_id], rows)
        return True

    # ---------------------------------------------------------------------------- other processes
    def tail(self, session: Session, data: ServingData | None, now: float) -> None:
        """Reload the rows of customers with activity above the watermark seen ``overlap`` seconds ago."""
        mark = activity_watermark(session)
        self._marks.append((now, mark))
        while len(self._marks) > 1 and self._marks[1][0] <= now - self._overlap:
            self._marks.popleft()
        since = self._marks[0][1]
        if since == mark or data is None:
            return
        dirty = set(self._dirty)  # told before this read: its rows are committed, the reload reads them
        orders, events = new_activity(session, since)
        changed = {c for c, i in orders if i not in self._read_orders}
        changed.update(c for c, i in events if i not in self._read_events)
        # This process's own writes not reloaded yet by a request: read with the rest (one reload of many
        # customers costs about a tenth a customer of reloading one, which a request does).
        changed.update(dirty)
        if changed:
            self.reload(session, data, sorted(changed))
            self._dirty.difference_update(dirty & changed)
            for customer_id in dirty & changed:  # read with the rest: their rows are in
                self._written.pop(customer_id, None)
        # Every id above ``since`` is now read (rows only grow: a new full read keeps them too); older
        # ones never come back from this query.
        self._read_orders = {i for _, i in orders}
        self._read_events = {i for _, i in events}

    def settled(self) -> Watermark | None:
        """The newest watermark seen at least ``overlap`` seconds ago, if any: every id at or below it has
        committed by now (the overlap rule; see domain.serving.kept_rows)."""
        cutoff = self._clock() - self._overlap
        settled = None
        for at, mark in tuple(self._marks):  # a copy: the check thread appends
            if at > cutoff:
                break
            settled = mark
        return settled

    # ------------------------------------------------------------------------------------- reloads
    def reload(self, session: Session, data: ServingData, customer_ids: Iterable[int]) -> None:
        """Read these customers' rows again and put them in ``data.fresh``."""
        ids = sorted({int(c) for c in customer_ids})
        reloaded = self._reloaded
        if reloaded is not None:
            reloaded.update(ids)
        self._put(data, ids, data.kept.read(session, ids, self.settled()))

    def _put(self, data: ServingData, ids: list[int], sourced: SourcedRows) -> None:
        """Put the rows of customers ``ids`` (sorted, distinct) in ``data.fresh``."""
        rows = sourced.rows
        index = IdIndex(np.asarray(ids, dtype=np.int64))
        model = data.model
        matrix = None
        if model is not None:
            matrix, _, _ = build_matrix(
                rows, self._interactions, user_index=index, item_index=model.item_index
            )
        bought = bought_matrix(rows, index)
        known = model.user_index.index_of(index.ids) if model is not None else None
        for pos, cid in enumerate(ids):
            pids = bought.indices[bought.indptr[pos] : bought.indptr[pos + 1]].astype(np.int64)
            if known is None or matrix is None:
                data.fresh[cid] = CustomerRows(cid, -1, None, pids, True)
                continue
            row = matrix if len(ids) == 1 else csr_row(matrix, pos)
            data.fresh[cid] = CustomerRows(cid, int(known[pos]), row, pids, True)

    def record_reloads(self) -> None:
        """Record the customers reloaded from now on (a swap's new data was read before their rows)."""
        self._reloaded = set()

    def recorded(self) -> set[int]:
        """The customers reloaded since :meth:`record_reloads`; stops recording."""
        reloaded, self._reloaded = self._reloaded, None
        return reloaded or set()
