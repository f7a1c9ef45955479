"""Batch planning of curated gift selections for every customer whose occasion is due today.

``plan_selections`` works in a fixed number of bulk queries, whatever the number of customers:

1. the largest lead time in use, to bound the window of occasion dates worth looking at;
2. important dates whose month/day falls in that window (with their recipients and customers), and
   opt-ins to store-wide occasions falling in it;
3. the selections that already exist in the window (the unique key makes re-running a no-op);
4. for the due customers and recipients only: their order lines and the gifts already given (chunked
   ``IN`` lists);
5. candidates, a batch at a time, from the injectable candidates function; then bulk inserts.

Each occurrence is judged in the customer's own time zone (``domain.reminders.occasions``). A customer
whose data breaks planning (an unknown time zone, inconsistent budget...) is logged and counted, and the batch
carries on. Domain functions never commit: the job's ``session_scope`` does.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
from sqlalchemy import Table, func, insert, select
from sqlalchemy.orm import Session

from config import Settings
from domain.errors import DomainError
from domain.models import (
    AuditLog,
    Customer,
    GiftGiven,
    GiftSelection,
    ImportantDate,
    OccasionOptIn,
    Order,
    OrderLine,
    Recipient,
    SelectionPick,
)
from domain.models._types import utcnow
from domain.reminders.occasions import (
    Decision,
    decide,
    lead_days_for,
    local_midnight_utc,
    local_today,
    next_occurrence,
    parse_calendar,
)
from domain.serving.candidates import CandidateRows, CandidatesFn, Catalog, default_candidates, profile_words
from recommender.curation import CurationError, curate, tier_bounds

log = logging.getLogger(__name__)

__all__ = ["CutoffSummary", "PlanSummary", "apply_review_cutoff", "plan_due_selections", "plan_selections"]

#: Selections scored per call of the candidates function (bounds memory: rows x items floats).
BATCH = 256
#: Ids per ``IN (...)`` list: well under SQLite's and PostgreSQL's parameter limits.
IN_CHUNK = 900
JOB_ACTOR = "job:plan-selections"


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
class CutoffSummary:
    approved: int = 0
    skipped: int = 0


@dataclass
class _Due:
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


def _naive_utc(now: dt.datetime) -> dt.datetime:
    return now.astimezone(dt.UTC).replace(tzinfo=None) if now.tzinfo is not None else now


def _chunks(values: Sequence[int], size: int = IN_CHUNK) -> Iterator[Sequence[int]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _month_days(lo: dt.date, hi: dt.date) -> set[int]:
    """``month * 100 + day`` codes whose occurrence can fall in [lo, hi] (29 Feb, days past month end)."""
    codes: set[int] = set()
    day = lo
    while day <= hi:
        codes.add(day.month * 100 + day.day)
        if (day + dt.timedelta(days=1)).month != day.month:  # last day of its month: 31 Apr -> 30 Apr
            codes.update(day.month * 100 + d for d in range(day.day + 1, 32))
        if day.month == 3 and day.day == 1:  # 29 Feb under the mar1 rule
            codes.add(229)
        day += dt.timedelta(days=1)
    return codes


def _max_lead(session: Session, default: int) -> int:
    per_date = select(func.max(ImportantDate.lead_days)).scalar_subquery()
    per_customer = select(func.max(Customer.reminder_lead_days)).scalar_subquery()
    a, b = session.execute(select(per_date, per_customer)).one()
    return max(default, a or 0, b or 0)


def plan_selections(
    session: Session,
    settings: Settings,
    *,
    now: dt.datetime,
    candidates_fn: CandidatesFn | None = None,
) -> PlanSummary:
    """Create today's curated selections (and skipped records) for every customer; idempotent.

    `now` is the UTC instant of the run (naive = UTC); each customer's own time zone turns it into
    "today". `candidates_fn` scores the catalogue for a batch of selections; the default blends the
    trained model, the recipient's profile, the season and bestsellers (``domain.serving.candidates``).
    """
    started = time.perf_counter()
    now = _naive_utc(now)
    rs = settings.reminders
    summary = PlanSummary()
    calendar = parse_calendar(rs.calendar)
    max_lead = _max_lead(session, rs.lead_days)
    # Every zone's "today" is within a day of UTC's; the occurrence is at most max_lead days later.
    lo, hi = now.date() - dt.timedelta(days=1), now.date() + dt.timedelta(days=max_lead + 1)

    # What planning needs of the recipient (for the picks) and the customer (for the clock and review).
    profile_columns = (
        Recipient.interests,
        Recipient.gender,
        Recipient.birth_on,
        Recipient.budget_min,
        Recipient.budget_max,
        Customer.id.label("customer_id"),
        Customer.time_zone,
        Customer.is_vip,
        Customer.reminder_lead_days,
    )
    date_rows = session.execute(
        select(
            ImportantDate.id,
            ImportantDate.kind,
            ImportantDate.month,
            ImportantDate.day,
            ImportantDate.year,
            ImportantDate.recurrence,
            ImportantDate.feb29_rule,
            ImportantDate.lead_days,
            Recipient.id.label("recipient_id"),
            *profile_columns,
        )
        .join(Recipient, Recipient.id == ImportantDate.recipient_id)
        .join(Customer, Customer.id == Recipient.customer_id)
        .where(
            ImportantDate.is_stopped.is_(False),
            Customer.unsubscribed_at.is_(None),
            Customer.erased_at.is_(None),
            (ImportantDate.month * 100 + ImportantDate.day).in_(sorted(_month_days(lo, hi))),
        )
        .order_by(ImportantDate.id)
    ).all()
    codes_in_window = [
        o.code for o in calendar.values() if any(lo <= o.on(y) <= hi for y in {lo.year, hi.year})
    ]
    opt_in_rows: list[Any] = []
    if codes_in_window:
        opt_in_rows = list(
            session.execute(
                select(
                    OccasionOptIn.occasion_code,
                    OccasionOptIn.recipient_id,
                    *profile_columns,
                )
                .join(Customer, Customer.id == OccasionOptIn.customer_id)
                .outerjoin(Recipient, Recipient.id == OccasionOptIn.recipient_id)
                .where(
                    OccasionOptIn.occasion_code.in_(codes_in_window),
                    Customer.unsubscribed_at.is_(None),
                    Customer.erased_at.is_(None),
                )
                .order_by(OccasionOptIn.id)
            ).all()
        )
    summary.candidates = len(date_rows) + len(opt_in_rows)
    existing = {
        (r[0], r[1], r[2])
        for r in session.execute(
            select(GiftSelection.customer_id, GiftSelection.occasion_key, GiftSelection.year).where(
                GiftSelection.occasion_on.between(lo, hi)
            )
        )
    }

    failed: set[int] = set()

    def fail(customer_id: int, exc: Exception) -> None:
        log.warning("planning failed for customer %s: %s", customer_id, exc)
        if customer_id not in failed:
            failed.add(customer_id)
            if len(summary.failures) < 20:
                summary.failures.append(f"customer {customer_id}: {exc}")

    due: list[_Due] = []

    def consider(
        row: Any,
        key: str,
        code: str,
        occurrence: Callable[[dt.date], dt.date | None],
        date_id: int | None,
        date_lead: int | None,
    ) -> None:
        try:
            today = local_today(now, row.time_zone)
            on = occurrence(today)
            if on is None:
                return
            lead = lead_days_for(date_lead, row.reminder_lead_days, rs.lead_days)
            decision = decide(on, today, lead, rs.catch_up_min_days)
            if decision is None:
                return
            if (row.customer_id, key, on.year) in existing:
                summary.existing += 1
                return
            budget = (
                float(row.budget_min) if row.budget_min is not None else None,
                float(row.budget_max) if row.budget_max is not None else None,
            )
            words = profile_words(row.interests, row.gender, row.birth_on, on)
            due.append(
                _Due(
                    row.customer_id,
                    row.recipient_id,
                    date_id,
                    key,
                    code,
                    decision,
                    row.time_zone,
                    bool(row.is_vip),
                    budget,
                    words,
                )
            )
        except (DomainError, ValueError) as exc:
            fail(row.customer_id, exc)

    for row in date_rows:

        def occurs(today: dt.date, r: Any = row) -> dt.date | None:
            return next_occurrence(
                r.month, r.day, today=today, recurrence=r.recurrence, year=r.year, feb29_rule=r.feb29_rule
            )

        consider(row, f"date:{row.id}", row.kind, occurs, row.id, row.lead_days)
    for row in opt_in_rows:
        occasion = calendar[row.occasion_code]
        consider(row, f"occasion:{row.occasion_code}", row.occasion_code, occasion.next_on, None, None)

    summary.due = len(due) + summary.existing
    summary.customers = len({d.customer_id for d in due})
    if due:
        _build(session, settings, now, (lo, hi), due, candidates_fn, summary, fail)
    summary.failed_customers = len(failed)
    summary.seconds = time.perf_counter() - started
    log.info("planned selections: %s", summary)
    return summary


def _build(
    session: Session,
    settings: Settings,
    now: dt.datetime,
    window: tuple[dt.date, dt.date],
    due: list[_Due],
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
            .where(Order.kind == "sale", Order.customer_id.in_(ids), Order.ordered_at < now)
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
                    given.get(d.recipient_id or -1, []) + recent.get(d.customer_id, [])
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
    _insert(session, selection_rows, pick_rows)


def _selection_row(
    d: _Due,
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


def _insert(
    session: Session,
    selections: list[dict[str, Any]],
    picks: list[list[dict[str, Any]]],
) -> None:
    """Bulk insert in chunks. Only one scheduler runs jobs (a lock in the database); should a second
    planner race this one anyway, the unique key fails its transaction and nothing is half-written."""
    for start in range(0, len(selections), 1000):
        _insert_rows(session, selections[start : start + 1000], picks[start : start + 1000])


def _insert_rows(session: Session, rows: list[dict[str, Any]], picks: list[list[dict[str, Any]]]) -> None:
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


def apply_review_cutoff(session: Session, settings: Settings, now: dt.datetime) -> CutoffSummary:
    """VIP selections still awaiting review at their cut-off: approve as is (``send``) or skip and alert.

    Skipping writes an audit-log entry for the customer's account manager (``selection.cutoff_skipped``,
    with ``alert: true``); approving writes ``selection.cutoff_approved``.
    """
    now = _naive_utc(now)
    policy = settings.reminders.vip_cutoff_policy
    out = CutoffSummary()
    rows = session.execute(
        select(GiftSelection, Customer.account_manager_id)
        .join(Customer, Customer.id == GiftSelection.customer_id)
        .where(GiftSelection.status == "awaiting_review", GiftSelection.review_cutoff_at <= now)
        .order_by(GiftSelection.id)
    ).all()
    for selection, manager_id in rows:
        details: dict[str, Any] = {
            "customer_id": selection.customer_id,
            "account_manager_id": manager_id,
            "occasion_on": selection.occasion_on.isoformat(),
            "review_cutoff_at": (selection.review_cutoff_at or now).isoformat(),
            "policy": policy,
        }
        if policy == "skip":
            selection.status = "skipped"
            selection.status_reason = "not reviewed by the account manager before the cut-off"
            action = "selection.cutoff_skipped"
            details["alert"] = True
            out.skipped += 1
        else:
            selection.status = "approved"
            selection.status_reason = "not reviewed before the cut-off: sent as planned"
            action = "selection.cutoff_approved"
            out.approved += 1
        session.add(
            AuditLog(
                actor=JOB_ACTOR,
                action=action,
                entity_type="gift_selection",
                entity_id=str(selection.id),
                details=details,
            )
        )
    session.flush()
    return out


def plan_due_selections(
    session: Session, settings: Settings, now: dt.datetime, *, candidates_fn: CandidatesFn | None = None
) -> PlanSummary:
    """The daily planning job: plan today's selections, then apply the VIP review cut-off."""
    summary = plan_selections(session, settings, now=now, candidates_fn=candidates_fn)
    cut = apply_review_cutoff(session, settings, now)
    summary.cutoff_approved, summary.cutoff_skipped = cut.approved, cut.skipped
    return summary
