"""Purchase attribution: a picked product bought soon after its reminder marks the selection purchased.

A selection whose reminder email went out (status ``sent`` or ``clicked``) becomes ``purchased`` when the
same customer orders one of its picks within ``reminders.attribution_days`` after the email was sent.
Every picked product so bought is recorded as a :class:`~domain.models.GiftGiven` for the selection's
recipient, so planning never suggests it to that recipient again.

:func:`attribute_purchases` works in bulk (one query joins sent selections, their picks and the later
orders of their customers) and is idempotent: a selection is marked once, a gift is recorded once per
selection and product. It runs nightly (the ``attribute-purchases`` job), after an order posted through
the API (for that customer only), and by hand (`giftrec jobs run attribute-purchases`). Orders of
selections already ``purchased`` are still looked at, so a second pick bought later in the window is
recorded as given too. Returns do not undo an attribution: the gift was chosen. Never commits.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from config import Settings
from domain.models import (
    AuditLog,
    GiftGiven,
    GiftSelection,
    Order,
    OrderLine,
    OutboundEmail,
    Product,
    SelectionPick,
)
from domain.models._types import naive_utc
from domain.origin import real_orders

log = logging.getLogger(__name__)

__all__ = ["ATTRIBUTABLE_STATUSES", "AttributionSummary", "attribute_purchases"]

#: A selection in one of these states becomes ``purchased`` when one of its picks is bought in the window.
ATTRIBUTABLE_STATUSES = ("sent", "clicked")
#: Ids per ``IN (...)`` list: well under SQLite's and PostgreSQL's parameter limits.
IN_CHUNK = 900


@dataclass
class AttributionSummary:
    """What one attribution run found and recorded."""

    matches: int = 0  # order lines of a picked product, by its customer, inside the window
    purchased: int = 0  # selections newly marked purchased
    gifts: int = 0  # GiftGiven rows recorded
    already_recorded: int = 0  # matches whose gift was recorded before: nothing added
    seconds: float = 0.0

    def summary(self) -> str:
        return (
            f"selections marked purchased {self.purchased}, gifts recorded {self.gifts} "
            f"(already recorded {self.already_recorded}) from {self.matches} order line(s) of picked "
            f"products bought within the attribution window"
        )


@dataclass(frozen=True)
class _Match:
    selection_id: int
    status: str
    recipient_id: int | None
    sent_at: dt.datetime
    product_id: int
    sku: str
    order_line_id: int
    order_external_id: str
    ordered_at: dt.datetime


def _matches(session: Session, now: dt.datetime, customer_ids: Sequence[int] | None) -> list[_Match]:
    """Order lines of a selection's customer, for one of its picks, ordered after the email was sent.

    "Sent" on the business calendar (``counted_at``, the business time of the send's claim): it equals
    the wall-clock ``sent_at`` within seconds except in runs with ``--today``.
    """
    sent_at = func.coalesce(OutboundEmail.counted_at, OutboundEmail.sent_at)
    stmt = (
        select(
            GiftSelection.id,
            GiftSelection.status,
            GiftSelection.recipient_id,
            sent_at,
            SelectionPick.product_id,
            Product.sku,
            OrderLine.id,
            Order.external_id,
            Order.ordered_at,
        )
        .join(OutboundEmail, OutboundEmail.selection_id == GiftSelection.id)
        .join(SelectionPick, SelectionPick.selection_id == GiftSelection.id)
        .join(
            Order,
            (Order.customer_id == GiftSelection.customer_id)
            & (Order.kind == "sale")
            & (Order.ordered_at >= sent_at)
            & (Order.ordered_at <= now)
            # a generated order buys nothing for anyone (the campaign report reads those itself)
            & real_orders(),
        )
        .join(
            OrderLine,
            (OrderLine.order_id == Order.id) & (OrderLine.product_id == SelectionPick.product_id),
        )
        .join(Product, Product.id == SelectionPick.product_id)
        .where(
            GiftSelection.status.in_((*ATTRIBUTABLE_STATUSES, "purchased")),
            OutboundEmail.status == "sent",
            OutboundEmail.sent_at.is_not(None),
        )
    )
    rows: list[Any] = []  # sent_at is NOT NULL here, which the row type cannot say
    if customer_ids is None:
        rows.extend(session.execute(stmt))
    else:
        ids = sorted(set(customer_ids))
        for start in range(0, len(ids), IN_CHUNK):
            rows.extend(
                session.execute(stmt.where(GiftSelection.customer_id.in_(ids[start : start + IN_CHUNK])))
            )
    return [_Match(*row) for row in rows]


def attribute_purchases(
    session: Session,
    settings: Settings,
    now: dt.datetime,
    *,
    customer_ids: Sequence[int] | None = None,
    actor: str = "job:attribute-purchases",
) -> AttributionSummary:
    """Mark selections whose picks were bought within the window ``purchased`` and record the gifts.

    `now` (naive = UTC) bounds the orders looked at; `customer_ids` limits the run to some customers
    (an order just posted). Idempotent; never commits.
    """
    started = time.perf_counter()
    now = naive_utc(now)
    window = dt.timedelta(days=settings.reminders.attribution_days)
    summary = AttributionSummary()
    by_selection: dict[int, list[_Match]] = {}
    for match in _matches(session, now, customer_ids):
        if match.ordered_at <= match.sent_at + window:
            by_selection.setdefault(match.selection_id, []).append(match)
    summary.matches = sum(len(ms) for ms in by_selection.values())
    if not by_selection:
        summary.seconds = time.perf_counter() - started
        return summary

    recorded: set[tuple[int, int]] = set()  # (selection id, product id)
    given: set[tuple[int, int, dt.date]] = set()  # (recipient id, product id, given on): the unique key
    selection_ids = sorted(by_selection)
    recipient_ids = sorted({m.recipient_id for ms in by_selection.values() for m in ms if m.recipient_id})
    for start in range(0, len(selection_ids), IN_CHUNK):
        chunk = selection_ids[start : start + IN_CHUNK]
        recorded.update(
            (sid, pid)
            for sid, pid in session.execute(
                select(GiftGiven.selection_id, GiftGiven.product_id).where(GiftGiven.selection_id.in_(chunk))
            )
            if sid is not None
        )
    for start in range(0, len(recipient_ids), IN_CHUNK):
        chunk = recipient_ids[start : start + IN_CHUNK]
        given.update(
            (rid, pid, on)
            for rid, pid, on in session.execute(
                select(GiftGiven.recipient_id, GiftGiven.product_id, GiftGiven.given_on).where(
                    GiftGiven.recipient_id.in_(chunk)
                )
            )
        )

    for selection_id in selection_ids:
        matches = sorted(by_selection[selection_id], key=lambda m: (m.ordered_at, m.order_line_id))
        first = matches[0]
        if first.status in ATTRIBUTABLE_STATUSES:
            _mark_purchased(session, first, actor, summary)
        seen: set[int] = set()
        for m in matches:  # the first order line of each picked product bought
            if m.product_id in seen:
                continue
            seen.add(m.product_id)
            if m.recipient_id is None:  # a store-wide occasion for nobody in particular
                continue
            key = (m.recipient_id, m.product_id, m.ordered_at.date())
            if (selection_id, m.product_id) in recorded or key in given:
                summary.already_recorded += 1
                continue
            try:
                with session.begin_nested():
                    session.add(
                        GiftGiven(
                            recipient_id=m.recipient_id,
                            product_id=m.product_id,
                            given_on=m.ordered_at.date(),
                            order_line_id=m.order_line_id,
                            selection_id=selection_id,
                        )
                    )
            except IntegrityError:  # a concurrent attribution recorded it first
                summary.already_recorded += 1
                continue
            given.add(key)
            summary.gifts += 1
    session.flush()
    summary.seconds = time.perf_counter() - started
    log.info("attributed purchases: %s", summary)
    return summary


def _mark_purchased(session: Session, m: _Match, actor: str, summary: AttributionSummary) -> None:
    days = (m.ordered_at - m.sent_at).days
    reason = (
        f"{m.sku} bought in order {m.order_external_id} on {m.ordered_at:%Y-%m-%d}, "
        f"{days} day(s) after the email"
    )
    done = session.execute(
        update(GiftSelection)
        .where(GiftSelection.id == m.selection_id, GiftSelection.status.in_(ATTRIBUTABLE_STATUSES))
        .values(status="purchased", status_reason=reason[:300])
        .execution_options(synchronize_session="fetch")
    )
    if not getattr(done, "rowcount", 0):  # a concurrent attribution won
        return
    details: dict[str, Any] = {
        "previous_status": m.status,
        "order_id": m.order_external_id,
        "order_line_id": m.order_line_id,
        "product_id": m.product_id,
        "sku": m.sku,
        "ordered_at": m.ordered_at.isoformat(),
        "email_sent_at": m.sent_at.isoformat(),
    }
    session.add(
        AuditLog(
            actor=actor,
            action="selection.purchased",
            entity_type="gift_selection",
            entity_id=str(m.selection_id),
            details=details,
        )
    )
    summary.purchased += 1
