"""Drafting: due occasions and their candidates become selection rows in three price tiers, bulk-inserted.

Called by :func:`domain.reminders.planning.plan_selections` once it knows what is due.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
from sqlalchemy import Table, insert, select
from sqlalchemy.orm import Session

from config import Settings
from domain.customers.rejections import OWN, load_rejections
from domain.errors import DomainError
from domain.models import (
    GiftGiven,
    GiftSelection,
    Order,
    OrderLine,
    SelectionPick,
)
from domain.models._types import utcnow
from domain.origin import real_orders
from domain.reminders.occasions import (
    Decision,
    local_midnight_utc,
)
from domain.serving.candidates import CandidateRows, CandidatesFn, Catalog, default_candidates
from recommender.curation import CurationError, curate, tier_bounds

log = logging.getLogger(__name__)

#: Selections scored per call of the candidates function (bounds memory: rows x items floats).
BATCH = 256
#: Ids per ``IN (...)`` list: well under SQLite's and PostgreSQL's parameter limits.
IN_CHUNK = 900


def _chunks(values: Sequence[int], size: int = IN_CHUNK) -> Iterator[Sequence[int]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


@dataclass
class PlanSummary:
    """What one planning run looked at and did."""

    candidates: int = 0  # dates and opt-ins whose month/day fell in the window
    due: int = 0  # occurrences to act on today (planned + skipped + failed selections)
    existing: int = 0  # due, but a selection already existed: nothing added
    customers: int = 0  # distinct customers with something due
    planned: int = 0  # selections created with picks
    ready: int = 0
    awaiting_review: int = 0
    caught_up: int = 0  # planned after their lead day
    skipped: int = 0  # recorded as skipped: too late to catch up
    empty: int = 0  # recorded as failed: nothing in the catalogue qualified
    picks: int = 0
    failed_customers: int = 0  # logged; the batch carried on
    failures: list[str] = field(default_factory=list)
    cutoff_approved: int = 0
    cutoff_skipped: int = 0
    seconds: float = 0.0

    @property
    def selections(self) -> int:
        """Rows written to gift_selections (every status)."""
        return self.planned + self.skipped + self.empty


@dataclass
class Due:
    customer_id: int
    recipient_id: int | None
    important_date_id: int | None
    occasion_key: str
    occasion_code: str
    decision: Decision
    time_zone: str
    is_vip: bool
    budget: tuple[float | None, float | None]
    profile: list[str]


def draft_selections(
    session: Session,
    settings: Settings,
    now: dt.datetime,
    window: tuple[dt.date, dt.date],
    due: list[Due],
    candidates_fn: CandidatesFn | None,
    summary: PlanSummary,
    fail: Callable[[int, Exception], None],
) -> None:
    rs = settings.reminders
    catalog = Catalog.load(session)
    if candidates_fn is None:
        candidates_fn = default_candidates(session, settings, now=now, catalog=catalog, window=window)
    customers = sorted({d.customer_id for d in due})
    recipients = sorted({d.recipient_id for d in due if d.recipient_id is not None})
    recent_since = now - dt.timedelta(days=rs.recent_purchase_days)

    # Order lines of the due customers: gift spending, all spending, recent purchases.
    gift_spent: dict[int, list[float]] = defaultdict(list)
    all_spent: dict[int, list[float]] = defaultdict(list)
    recent: dict[int, list[int]] = defaultdict(list)
    given: dict[int, list[int]] = defaultdict(list)
    for ids in _chunks(customers):
        for cid, pid, price, at, rid in session.execute(
            select(
                Order.customer_id,
                OrderLine.product_id,
                OrderLine.unit_price,
                Order.ordered_at,
                Order.recipient_id,
            )
            .join(Order, Order.id == OrderLine.order_id)
            # the demo's generated orders are no gift given, no purchase and no spending of anyone's
            .where(Order.kind == "sale", Order.customer_id.in_(ids), Order.ordered_at < now, real_orders())
        ):
            if cid is None:  # pragma: no cover - filtered by the IN list
                continue
            all_spent[cid].append(float(price))
            if rid is not None:
                gift_spent[cid].append(float(price))
                given[rid].append(pid)
            if at >= recent_since:
                recent[cid].append(pid)
    for ids in _chunks(recipients):
        for rid, pid in session.execute(
            select(GiftGiven.recipient_id, GiftGiven.product_id).where(GiftGiven.recipient_id.in_(ids))
        ):
            given[rid].append(pid)
    # what a manager took out of a selection for the same recipient is never offered to them again
    rejected = load_rejections(session, customer_ids=customers).by_key()
    available = catalog.available
    catalog_tiers = tier_bounds(None, catalog_prices=catalog.prices[available]) if available.any() else None

    selection_rows: list[dict[str, Any]] = []
    pick_rows: list[list[dict[str, Any]]] = []
    plan = [d for d in due if d.decision.action == "plan"]
    for d in due:
        if d.decision.action == "skip":
            selection_rows.append(_selection_row(d, "skipped", d.decision.reason, None, None))
            pick_rows.append([])
            summary.skipped += 1
    for start in range(0, len(plan), BATCH):
        batch = plan[start : start + BATCH]
        rows = CandidateRows(
            customer_ids=np.array([d.customer_id for d in batch], dtype=np.int64),
            recipient_ids=np.array([d.recipient_id or -1 for d in batch], dtype=np.int64),
            profiles=[d.profile for d in batch],
            occasion_codes=[d.occasion_code for d in batch],
            occasion_on=[d.decision.occasion_on for d in batch],
        )
        cands = candidates_fn(catalog, rows)
        for i, d in enumerate(batch):
            try:
                spent = gift_spent.get(d.customer_id, [])
                if len(spent) < 3:
                    spent = all_spent.get(d.customer_id, [])
                if d.budget != (None, None) or len(spent) >= 3 or catalog_tiers is None:
                    bounds = tier_bounds(spent, budget_min=d.budget[0], budget_max=d.budget[1])
                else:  # the same for everyone without a history: computed once
                    bounds = catalog_tiers
                exclude = catalog.index_of(
                    given.get(d.recipient_id or -1, [])
                    + recent.get(d.customer_id, [])
                    + rejected.get((d.customer_id, d.recipient_id or OWN), [])
                )
                picks = curate(
                    cands.scores[i],
                    cands.sources[i],
                    prices=catalog.prices,
                    categories=catalog.categories,
                    available=available,
                    bounds=bounds,
                    delivery_days=catalog.delivery_days,
                    days_until=d.decision.days_until,
                    exclude=exclude,
                    picks_per_tier=rs.picks_per_tier,
                    min_picks=min(2, rs.picks_per_tier),
                )
            except (DomainError, CurationError, ValueError) as exc:
                fail(d.customer_id, exc)
                continue
            if not picks:
                why = "no active, in-stock product can be delivered in time within the price tiers"
                selection_rows.append(_selection_row(d, "failed", why, bounds.as_list(), None))
                pick_rows.append([])
                summary.empty += 1
                continue
            status = "awaiting_review" if d.is_vip else "ready"
            cutoff = (
                local_midnight_utc(
                    d.decision.occasion_on - dt.timedelta(days=rs.vip_cutoff_days), d.time_zone
                )
                if d.is_vip
                else None
            )
            reason = d.decision.reason if d.decision.is_catch_up else None
            selection_rows.append(
                _selection_row(d, status, reason, bounds.as_list(), cutoff, cands.model_run_id)
            )
            pick_rows.append(
                [
                    {
                        "product_id": int(catalog.product_ids[p.item_idx]),
                        "tier": p.tier + 1,
                        "position": p.position + 1,
                        "score": round(p.score, 6),
                        "source": p.source,
                        "explanation": p.explanation,
                        "price_at_pick": catalog.prices[p.item_idx],
                        "is_manual": False,
                    }
                    for p in picks
                ]
            )
            summary.planned += 1
            summary.caught_up += d.decision.is_catch_up
            summary.ready += status == "ready"
            summary.awaiting_review += status == "awaiting_review"
            summary.picks += len(picks)
    insert_selections(session, selection_rows, pick_rows)


def _selection_row(
    d: Due,
    status: str,
    reason: str | None,
    bounds: list[list[float]] | None,
    cutoff: dt.datetime | None,
    model_run_id: int | None = None,
) -> dict[str, Any]:
    return {
        "customer_id": d.customer_id,
        "recipient_id": d.recipient_id,
        "important_date_id": d.important_date_id,
        "occasion_key": d.occasion_key,
        "occasion_code": d.occasion_code,
        "occasion_on": d.decision.occasion_on,
        "year": d.decision.occasion_on.year,
        "status": status,
        "status_reason": reason,
        "model_run_id": model_run_id,
        "tier_bounds": bounds or [],
        "review_cutoff_at": cutoff,
    }


def insert_selections(
    session: Session,
    selections: list[dict[str, Any]],
    picks: list[list[dict[str, Any]]],
) -> list[int]:
    """Bulk insert in chunks (the selections, then the picks of each); returns the new selections' ids in
    order. Only one scheduler runs jobs (a lock in the database); should a second planner race this one
    anyway, the unique key fails its transaction and nothing is half-written."""
    ids: list[int] = []
    for start in range(0, len(selections), 1000):
        ids += _insert_rows(session, selections[start : start + 1000], picks[start : start + 1000])
    return ids


def _insert_rows(
    session: Session, rows: list[dict[str, Any]], picks: list[list[dict[str, Any]]]
) -> list[int]:
    now = utcnow()
    for row in rows:
        row["created_at"] = row["updated_at"] = now
    table, pick_table = cast(Table, GiftSelection.__table__), cast(Table, SelectionPick.__table__)
    ids = (
        session.execute(insert(table).returning(table.c.id, sort_by_parameter_order=True), rows)
        .scalars()
        .all()
    )
    flat = [dict(p, selection_id=sid) for sid, ps in zip(ids, picks, strict=True) for p in ps]
    if flat:
        session.execute(insert(pick_table), flat)
    return list(ids)
