"""The Today page: selections awaiting review by deadline, overdue ones, my clients' coming dates, and the
clients lapsing (no purchase, or no contact, for too long)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from config import Settings
from domain.models import Customer, GiftSelection, ImportantDate, Order, Recipient, User
from domain.models._types import naive_utc
from domain.origin import real_orders
from domain.reminders.occasions import local_today, next_occurrence
from domain.reminders.queueing import occasion_label
from domain.review.contacts import LapsingClient, lapsing_clients
from domain.review.scope import visible

#: How far ahead the Today page lists my clients' important dates.
UPCOMING_DAYS = 30


@dataclass(frozen=True)
class ReviewItem:
    """A selection awaiting review, and what the cut-off policy will do to it if nobody acts."""

    selection_id: int
    customer_id: int
    customer_name: str
    recipient_name: str | None
    occasion: str
    occasion_on: dt.date
    cutoff_at: dt.datetime | None
    time_left: dt.timedelta | None
    picks: int
    if_nobody_acts: str


@dataclass(frozen=True)
class UpcomingDate:
    """An important date of one of my clients in the coming days, with its selection if planned."""

    customer_id: int
    customer_name: str
    recipient_id: int
    recipient_name: str
    occasion: str
    on: dt.date
    days_until: int
    selection_id: int | None
    selection_status: str | None
    days_since_purchase: int | None


@dataclass
class Today:
    now: dt.datetime
    policy: str
    awaiting: list[ReviewItem] = field(default_factory=list)
    overdue: list[ReviewItem] = field(default_factory=list)
    upcoming: list[UpcomingDate] = field(default_factory=list)
    lapsing: list[LapsingClient] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        return {
            "awaiting": len(self.awaiting),
            "overdue": len(self.overdue),
            "upcoming": len(self.upcoming),
            "no_purchase": sum(c.no_purchase for c in self.lapsing),
            "no_contact": sum(c.no_contact for c in self.lapsing),
        }


def _name(customer: Customer) -> str:
    return customer.name or f"Customer {customer.external_id}"


def policy_outcome(policy: str, cutoff_at: dt.datetime | None, now: dt.datetime) -> str:
    """What ``reminders.vip_cutoff_policy`` does to a selection nobody reviews, in words."""
    action = "sent as planned" if policy == "send" else "skipped, and you get an alert"
    if cutoff_at is None:
        return "no review deadline: nothing is sent until it is approved"
    if cutoff_at <= now:
        return f"deadline passed: the next planning run has it {action}"
    return f"at the deadline ({cutoff_at:%d %b %H:%M} UTC) it is {action}"


def today_for(session: Session, user: User, settings: Settings, now: dt.datetime) -> Today:
    """Everything on this user's Today page at ``now`` (UTC)."""
    now = naive_utc(now)
    policy = settings.reminders.vip_cutoff_policy
    out = Today(now=now, policy=policy)
    rows = session.execute(
        select(GiftSelection, Customer, Recipient, ImportantDate)
        .join(Customer, Customer.id == GiftSelection.customer_id)
        .outerjoin(Recipient, Recipient.id == GiftSelection.recipient_id)
        .outerjoin(ImportantDate, ImportantDate.id == GiftSelection.important_date_id)
        .where(GiftSelection.status == "awaiting_review", visible(user))
        .order_by(GiftSelection.review_cutoff_at.is_(None), GiftSelection.review_cutoff_at, GiftSelection.id)
    ).all()
    n_picks = dict(
        session.execute(
            select(GiftSelection.id, func.count())
            .join(GiftSelection.picks)
            .where(GiftSelection.id.in_([r.GiftSelection.id for r in rows]))
            .group_by(GiftSelection.id)
        ).all()
    )
    for selection, customer, recipient, date in rows:
        cutoff = selection.review_cutoff_at
        item = ReviewItem(
            selection_id=selection.id,
            customer_id=customer.id,
            customer_name=_name(customer),
            recipient_name=recipient.name if recipient else None,
            occasion=occasion_label(selection.occasion_code, "en", date.title if date else None),
            occasion_on=selection.occasion_on,
            cutoff_at=cutoff,
            time_left=(cutoff - now) if cutoff is not None else None,
            picks=int(n_picks.get(selection.id, 0)),
            if_nobody_acts=policy_outcome(policy, cutoff, now),
        )
        (out.overdue if cutoff is not None and cutoff <= now else out.awaiting).append(item)
    out.upcoming = upcoming_dates(session, user, now)
    reminders = settings.reminders
    out.lapsing = lapsing_clients(
        session, user, now, reminders.lapsing_purchase_days, reminders.lapsing_contact_days
    )
    return out


def upcoming_dates(
    session: Session, user: User, now: dt.datetime, days: int = UPCOMING_DAYS
) -> list[UpcomingDate]:
    """My clients' important dates (not stopped) from their today to ``days`` ahead, soonest first."""
    rows = session.execute(
        select(ImportantDate, Recipient, Customer)
        .join(Recipient, Recipient.id == ImportantDate.recipient_id)
        .join(Customer, Customer.id == Recipient.customer_id)
        .where(ImportantDate.is_stopped.is_(False), visible(user))
    ).all()
    found: list[tuple[ImportantDate, Recipient, Customer, dt.date, int]] = []
    for date, recipient, customer in rows:
        today = local_today(now, customer.time_zone)
        on = next_occurrence(
            date.month, date.day, today=today, recurrence=date.recurrence, year=date.year,
            feb29_rule=date.feb29_rule,
        )  # fmt: skip
        if on is not None and (on - today).days <= days:
            found.append((date, recipient, customer, on, (on - today).days))
    keys = {(c.id, f"date:{d.id}", on.year) for d, _, c, on, _ in found}
    selections = {
        (s.customer_id, s.occasion_key, s.year): s
        for s in session.scalars(
            select(GiftSelection).where(
                GiftSelection.important_date_id.in_([d.id for d, *_ in found]),
            )
        )
        if (s.customer_id, s.occasion_key, s.year) in keys
    }
    last_order = dict(
        session.execute(
            select(Order.customer_id, func.max(Order.ordered_at))
            .where(
                Order.customer_id.in_({c.id for *_, c, _, _ in found}),
                Order.kind == "sale",
                Order.ordered_at <= now,
                real_orders(),  # the demo's generated orders are no client's last purchase
            )
            .group_by(Order.customer_id)
        ).all()
    )
    out = []
    for date, recipient, customer, on, days_until in found:
        selection = selections.get((customer.id, f"date:{date.id}", on.year))
        last = last_order.get(customer.id)
        out.append(
            UpcomingDate(
                customer_id=customer.id,
                customer_name=_name(customer),
                recipient_id=recipient.id,
                recipient_name=recipient.name,
                occasion=occasion_label(date.kind, "en", date.title),
                on=on,
                days_until=days_until,
                selection_id=selection.id if selection else None,
                selection_status=selection.status if selection else None,
                days_since_purchase=(now.date() - last.date()).days if last is not None else None,
            )
        )
    out.sort(key=lambda u: (u.on, u.customer_name, u.recipient_name))
    return out
