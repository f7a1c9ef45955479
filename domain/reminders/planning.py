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
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from config import Settings
from domain.db import run_once_more_on_collision
from domain.errors import DomainError
from domain.models import (
    Customer,
    GiftSelection,
    ImportantDate,
    OccasionOptIn,
    Recipient,
)
from domain.models._types import naive_utc
from domain.reminders.cutoff import CutoffSummary, apply_review_cutoff
from domain.reminders.drafting import Due, PlanSummary, draft_selections
from domain.reminders.occasions import (
    decide,
    lead_days_for,
    local_today,
    next_occurrence,
    parse_calendar,
)
from domain.serving.candidates import CandidatesFn, profile_words

log = logging.getLogger(__name__)

__all__ = [
    "CutoffSummary",
    "PlanSummary",
    "apply_review_cutoff",
    "plan_due_selections",
    "plan_selections",
    "run_planning",
]


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
    now = naive_utc(now)
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

    due: list[Due] = []

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
                Due(
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
        draft_selections(session, settings, now, (lo, hi), due, candidates_fn, summary, fail)
    summary.failed_customers = len(failed)
    summary.seconds = time.perf_counter() - started
    log.info("planned selections: %s", summary)
    return summary


def plan_due_selections(
    session: Session, settings: Settings, now: dt.datetime, *, candidates_fn: CandidatesFn | None = None
) -> PlanSummary:
    """The daily planning job: plan today's selections, then apply the VIP review cut-off."""
    summary = plan_selections(session, settings, now=now, candidates_fn=candidates_fn)
    cut = apply_review_cutoff(session, settings, now)
    summary.cutoff_approved, summary.cutoff_skipped = cut.approved, cut.skipped
    return summary


def run_planning(
    sessions: sessionmaker[Session], settings: Settings, now: dt.datetime, *, attempts: int = 3
) -> PlanSummary:
    """The daily planning job in its own transaction: all of a run's selections, or none of them.

    Two planners at once (the scheduler's and one run by hand) both plan what neither has committed; the
    unique key lets only one insert it, and the other's transaction fails whole. That one runs again: it
    now finds the selections planned (``already planned``) and plans only what is still missing.
    """

    def plan(session: Session) -> PlanSummary:
        return plan_due_selections(session, settings, now)

    return run_once_more_on_collision(sessions, plan, what="planning", attempts=attempts)
