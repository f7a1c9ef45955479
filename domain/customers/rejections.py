"""Picks an account manager took out of a selection: never offered again to that recipient, and negative
feedback for training.

The review use cases (``domain.reminders.selections``) write every edit to the audit log; a removed pick
(``selection.pick_removed``, its ``product_id``) and a replaced one (``selection.pick_swapped``, its
``old_product_id``) are *rejections*. This module reads them back in bulk, keyed by the selection's
customer and recipient: a selection for a recipient (a reminder) rejects the product for that recipient; one
without (a trigger email, a reminder for the customer themself) rejects it for the customer's own
selections. The audit log is the one record: an erased customer's selections are deleted, and with them
every rejection they carried.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from domain.models import AuditLog, GiftSelection

__all__ = ["REJECTING_ACTIONS", "Rejections", "load_rejections"]

#: Audit actions that reject a product, and the key of their details naming it.
REJECTING_ACTIONS: dict[str, str] = {
    "selection.pick_removed": "product_id",
    "selection.pick_swapped": "old_product_id",
}
#: Ids per ``IN (...)`` list: well under SQLite's and PostgreSQL's parameter limits.
IN_CHUNK = 900
#: The recipient key of a selection without a recipient (the customer's own).
OWN = -1


@dataclass(frozen=True)
class Rejections:
    """Rejections as parallel arrays, one entry per removed or replaced pick."""

    customer_ids: np.ndarray  # int64
    recipient_ids: np.ndarray  # int64, OWN (-1) for a selection without a recipient
    product_ids: np.ndarray  # int64
    timestamps: np.ndarray  # datetime64[s], naive UTC: when the manager made the edit

    def __len__(self) -> int:
        return int(self.product_ids.size)

    def products_for(self, customer_id: int, recipient_id: int | None) -> list[int]:
        """Product ids never to offer again in a selection of this customer for this recipient."""
        mask = (self.customer_ids == customer_id) & (
            self.recipient_ids == (OWN if recipient_id is None else recipient_id)
        )
        return sorted(set(self.product_ids[mask].tolist()))

    def by_key(self) -> dict[tuple[int, int], list[int]]:
        """``(customer id, recipient id or OWN) -> product ids``, for a batch of selections."""
        out: dict[tuple[int, int], list[int]] = {}
        for c, r, p in zip(
            self.customer_ids.tolist(), self.recipient_ids.tolist(), self.product_ids.tolist(), strict=True
        ):
            out.setdefault((c, r), []).append(p)
        return out


def _empty() -> Rejections:
    ints = np.zeros(0, dtype=np.int64)
    return Rejections(ints, ints.copy(), ints.copy(), np.zeros(0, dtype="datetime64[s]"))


def _chunks(values: list[int]) -> Iterable[list[int]]:
    for start in range(0, len(values), IN_CHUNK):
        yield values[start : start + IN_CHUNK]


def load_rejections(
    session: Session,
    *,
    until: dt.datetime | None = None,
    customer_ids: Collection[int] | None = None,
) -> Rejections:
    """Every rejection (optionally of some customers only, optionally made up to ``until`` inclusive).

    Two indexed reads: the audit entries of the rejecting actions, then their selections' customer and
    recipient (per chunk of ids). An entry whose selection is gone (erased customer) is dropped.
    """
    stmt = select(AuditLog.at, AuditLog.action, AuditLog.entity_id, AuditLog.details).where(
        AuditLog.action.in_(sorted(REJECTING_ACTIONS)), AuditLog.entity_type == "gift_selection"
    )
    if until is not None:
        stmt = stmt.where(AuditLog.at <= until)
    entries: list[tuple[dt.datetime, int, int]] = []
    for at, action, entity_id, details in session.execute(stmt.order_by(AuditLog.id)):
        product = (details or {}).get(REJECTING_ACTIONS[action])
        if product is None or not str(entity_id or "").isdigit():
            continue
        entries.append((at, int(entity_id), int(product)))
    if not entries:
        return _empty()
    owners: dict[int, tuple[int, int]] = {}
    wanted = None if customer_ids is None else {int(c) for c in customer_ids}
    for chunk in _chunks(sorted({sid for _, sid, _ in entries})):
        for sid, cid, rid in session.execute(
            select(GiftSelection.id, GiftSelection.customer_id, GiftSelection.recipient_id).where(
                GiftSelection.id.in_(chunk)
            )
        ):
            if wanted is None or cid in wanted:
                owners[sid] = (cid, OWN if rid is None else rid)
    kept = [(at, owners[sid], pid) for at, sid, pid in entries if sid in owners]
    if not kept:
        return _empty()
    return Rejections(
        customer_ids=np.array([o[0] for _, o, _ in kept], dtype=np.int64),
        recipient_ids=np.array([o[1] for _, o, _ in kept], dtype=np.int64),
        product_ids=np.array([p for _, _, p in kept], dtype=np.int64),
        timestamps=np.array([at.replace(tzinfo=None) for at, _, _ in kept], dtype="datetime64[s]"),
    )
