"""Customers' rows a serving process keeps, so that reloading them reads only what is new.

A web process reloads a customer's rows after each of its writes for them and when its freshness check
finds another process's (:class:`~domain.serving.model_store.ModelStore`). Reading every row each time
made a reload cost grow with the customer's history: an active customer's next recommendation after each
write read them all again. :class:`KeptRows` keeps the rows it read for customers with at least
``KEEP_FROM`` of them, with a *settled* watermark, and the next reload reads only the orders and events
above it.

Settled: the store's watermark seen at least ``freshness_overlap`` seconds before the read began. Ids are
handed out before their transaction commits, so a row with an id below the newest one read can still
commit later; the freshness check assumes (and re-reads its overlap for) a commit within that many
seconds of its id. Every id at or below a watermark seen that long ago had therefore committed when the
read began, so the kept rows hold all of them; a reload reads the ids above it again, late commits
included, and keeps only the kept rows at or below it. Rows only grow: the one statement that removes
any is an erasure, whose customer is forgotten here at once (:meth:`KeptRows.forget`), and a full
re-read of the data starts a new, empty :class:`KeptRows` (it lives in
:class:`~domain.serving.data.ServingData`).

Either way the rows come in one canonical order (:class:`~domain.customers.interactions.SourcedRows`),
so a reload gives the same matrix row, bit for bit, whether it read everything or only what was new.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy.orm import Session

from domain.customers.interactions import SourcedRows, Watermark, load_customer_rows

__all__ = ["KEEP_FROM", "KeptRows"]

#: Rows from which a customer's are kept: below, reading them all costs about what reading the new ones
#: does (the statement's round trip and fixed cost dominate).
KEEP_FROM = 50
#: Rows kept at most in one process (about 70 bytes each): past it, no new customer is kept.
MAX_KEPT = 500_000


@dataclass(frozen=True)
class _Kept:
    rows: SourcedRows
    #: Every order and event of the customer with an id at or below it is in ``rows``.
    settled: Watermark


class KeptRows:
    """The rows of customers read before, by customer id (see the module docstring). Thread-safe: a
    request's reload and the freshness check's may run at once; each replaces an entry whole."""

    def __init__(self, *, keep_from: int = KEEP_FROM, max_rows: int = MAX_KEPT) -> None:
        self._keep_from = keep_from
        self._max_rows = max_rows
        self._entries: dict[int, _Kept] = {}
        self._rows = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, customer_id: object) -> bool:
        return customer_id in self._entries

    def read(self, session: Session, customer_ids: Sequence[int], settled: Watermark | None) -> SourcedRows:
        """Every row of ``customer_ids`` (sorted, distinct): kept rows at or below their settled marks, and
        from the database all the others (one statement for the customers with kept rows, one for the
        rest). ``settled``: the store's settled watermark now, None while it has none (nothing is kept)."""
        entries = self._entries if settled is not None else {}
        kept = {c: k for c in customer_ids if (k := entries.get(c)) is not None}
        parts: list[SourcedRows] = []
        if len(kept) < len(customer_ids):
            parts.append(load_customer_rows(session, [c for c in customer_ids if c not in kept]))
        if kept:
            since = Watermark(
                min(k.settled.order_id for k in kept.values()), min(k.settled.event_id for k in kept.values())
            )
            parts.extend(k.rows.upto(since) for k in kept.values())
            parts.append(load_customer_rows(session, list(kept), after=since))
        rows = SourcedRows.joined(parts)
        if settled is not None:
            self._keep(rows, settled)
        return rows

    def add(self, customer_id: int, written: SourcedRows) -> SourcedRows | None:
        """The customer's kept rows with ``written`` (rows this process just wrote for them, one
        customer's, canonical) added, kept as such; None when their rows are not kept (then read them).
        A written row already kept (a reload read it since) is not added twice: rows of one order or
        event are kept, or not, together."""
        with self._lock:
            old = self._entries.get(int(customer_id))
            if old is None:
                return None
            new = np.isin(written.sources, old.rows.sources, invert=True)
            added = written if new.all() else SourcedRows(written.rows.subset(new), written.sources[new])
            rows = SourcedRows.joined([old.rows, added])
            self._entries[int(customer_id)] = _Kept(rows, old.settled)
            self._rows += len(added)
            return rows

    def forget(self, customer_id: int) -> None:
        """Drop a customer's rows (erased: nothing of theirs stays in memory)."""
        with self._lock:
            gone = self._entries.pop(int(customer_id), None)
            if gone is not None:
                self._rows -= len(gone.rows)

    def _keep(self, rows: SourcedRows, settled: Watermark) -> None:
        ids = rows.rows.customer_ids
        if ids.size < self._keep_from:
            return
        starts = [0, *(int(i) for i in (ids[1:] != ids[:-1]).nonzero()[0] + 1), int(ids.size)]
        with self._lock:
            for start, stop in zip(starts[:-1], starts[1:], strict=True):
                if stop - start < self._keep_from:
                    continue
                cid = int(ids[start])
                old = self._entries.get(cid)
                added = stop - start - (0 if old is None else len(old.rows))
                if old is None and self._rows + added > self._max_rows:
                    continue
                if (start, stop) == (0, ids.size):
                    part = rows
                else:  # a copy: a view would keep the whole batch's arrays alive
                    at = np.arange(start, stop)
                    part = SourcedRows(rows.rows.subset(at), rows.sources[at])
                self._entries[cid] = _Kept(part, settled)
                self._rows += added
