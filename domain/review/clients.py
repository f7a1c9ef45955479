"""A client's page: profile, segment, recipients and their dates, orders, gifts given, spend by month;
stopping every reminder for a recipient in one step."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from config import Settings
from domain.errors import NotFound
from domain.lifecycle.segments import CustomerSegment, customer_segment
from domain.messaging.outbox import cancel_queued
from domain.models import (
    AuditLog,
    Customer,
    GiftGiven,
    GiftSelection,
    ImportantDate,
    OccasionOptIn,
    Order,
    OrderLine,
    Product,
    Recipient,
    User,
)
from domain.models._types import naive_utc
from domain.origin import real_orders
from domain.reminders.occasions import local_today, next_occurrence
from domain.reminders.queueing import occasion_label
from domain.review.scope import customer_for, visible

#: Selection states a stopped recipient's selections leave (to 'skipped').
OPEN_STATUSES = ("planned", "ready", "awaiting_review", "approved")
RECENT_ORDERS = 15
#: The client page's segment history: moves between RFM segments over this many days.
SEGMENT_HISTORY_DAYS = 365


@dataclass(frozen=True)
class DateView:
    date_id: int
    label: str
    month: int
    day: int
    next_on: dt.date | None
    is_stopped: bool
    stop_reason: str | None
    kind: str = "birthday"
    title: str | None = None
    year: int | None = None
    recurrence: str = "yearly"


@dataclass
class RecipientView:
    recipient: Recipient
    dates: list[DateView] = field(default_factory=list)
    gifts: list[tuple[dt.date, str]] = field(default_factory=list)

    @property
    def all_stopped(self) -> bool:
        return bool(self.dates) and all(d.is_stopped for d in self.dates)


@dataclass(frozen=True)
class OrderView:
    external_id: str
    ordered_at: dt.datetime
    kind: str
    lines: int
    total: Decimal


@dataclass
class ClientView:
    customer: Customer
    manager: User | None
    segment: CustomerSegment | None
    recipients: list[RecipientView]
    orders: list[OrderView]
    #: Net spend (sales minus returns) per calendar month, oldest first: [(first day of month, amount)].
    spend_by_month: list[tuple[dt.date, float]]
    total_spend: Decimal
    selections: list[GiftSelection]


def client_view(
    session: Session, user: User, settings: Settings, customer_id: int, now: dt.datetime
) -> ClientView:
    """Everything the client page shows; NotFound for a client the user may not see."""
    customer = customer_for(session, user, customer_id)
    try:
        segment: CustomerSegment | None = customer_segment(
            session, customer.external_id, SEGMENT_HISTORY_DAYS
        )
    except NotFound:
        segment = None
    today = local_today(naive_utc(now), customer.time_zone)
    recipients = []
    for recipient in session.scalars(
        select(Recipient).where(Recipient.customer_id == customer.id).order_by(Recipient.id)
    ):
        view = RecipientView(recipient)
        for d in session.scalars(
            select(ImportantDate).where(ImportantDate.recipient_id == recipient.id).order_by(ImportantDate.id)
        ):
            on = next_occurrence(
                d.month, d.day, today=today, recurrence=d.recurrence, year=d.year, feb29_rule=d.feb29_rule
            )
            view.dates.append(
                DateView(
                    d.id, occasion_label(d.kind, "en", d.title), d.month, d.day,
                    None if d.is_stopped else on, d.is_stopped, d.stop_reason,
                    d.kind, d.title, d.year, d.recurrence,
                )
            )  # fmt: skip
        view.dates.sort(key=lambda x: (x.next_on is None, x.next_on or dt.date.max))
        view.gifts = [
            (on, title)
            for on, title in session.execute(
                select(GiftGiven.given_on, Product.title)
                .join(Product, Product.id == GiftGiven.product_id)
                .where(GiftGiven.recipient_id == recipient.id)
                .order_by(GiftGiven.given_on.desc())
            )
        ]
        recipients.append(view)
    value = OrderLine.unit_price * OrderLine.quantity
    orders = [
        OrderView(ext, at, kind, int(n), Decimal(total or 0))
        for ext, at, kind, n, total in session.execute(
            select(Order.external_id, Order.ordered_at, Order.kind, func.count(OrderLine.id), func.sum(value))
            .join(OrderLine, OrderLine.order_id == Order.id)
            .where(Order.customer_id == customer.id, real_orders())  # not the demo's generated orders
            .group_by(Order.id, Order.external_id, Order.ordered_at, Order.kind)
            .order_by(Order.ordered_at.desc(), Order.id.desc())
        )
    ]
    monthly: dict[dt.date, float] = {}
    for o in orders:
        month = o.ordered_at.date().replace(day=1)
        monthly[month] = monthly.get(month, 0.0) + float(o.total) * (-1 if o.kind == "return" else 1)
    selections = list(
        session.scalars(
            select(GiftSelection)
            .where(GiftSelection.customer_id == customer.id)
            .order_by(GiftSelection.occasion_on.desc(), GiftSelection.id.desc())
            .limit(20)
        )
    )
    manager = session.get(User, customer.account_manager_id) if customer.account_manager_id else None
    return ClientView(
        customer=customer,
        manager=manager,
        segment=segment,
        recipients=recipients,
        orders=orders[:RECENT_ORDERS],
        spend_by_month=_fill_months(monthly),
        total_spend=Decimal(str(round(sum(monthly.values()), 2))),
        selections=selections,
    )


def _fill_months(monthly: dict[dt.date, float]) -> list[tuple[dt.date, float]]:
    """Every month from the first to the last with spend, zero where nothing was bought."""
    if not monthly:
        return []
    out, month, last = [], min(monthly), max(monthly)
    while month <= last:
        out.append((month, round(monthly.get(month, 0.0), 2)))
        month = (month + dt.timedelta(days=32)).replace(day=1)
    return out


def _count(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def stop_recipient(
    session: Session, user: User, recipient_id: int, reason: str, now: dt.datetime
) -> Recipient:
    """Stop every future reminder for a recipient at once: all their dates, store occasions opted in for
    them, open selections (skipped) and queued emails (cancelled). NotFound unless the user sees the
    client."""
    recipient = session.scalar(
        select(Recipient)
        .join(Customer, Customer.id == Recipient.customer_id)
        .where(Recipient.id == recipient_id, visible(user))
    )
    if recipient is None:
        raise NotFound("recipient", recipient_id)
    why = (reason.strip() or "recipient no longer relevant")[:200]
    now = naive_utc(now)
    dates = _count(
        session.execute(
            update(ImportantDate)
            .where(ImportantDate.recipient_id == recipient.id, ImportantDate.is_stopped.is_(False))
            .values(is_stopped=True, stopped_at=now, stop_reason=why)
            .execution_options(synchronize_session="fetch")
        )
    )
    opt_ins = _count(session.execute(delete(OccasionOptIn).where(OccasionOptIn.recipient_id == recipient.id)))
    selection_ids = select(GiftSelection.id).where(
        GiftSelection.recipient_id == recipient.id, GiftSelection.status.in_(OPEN_STATUSES)
    )
    emails = cancel_queued(session, reason=f"recipient stopped: {why}", selection_ids=selection_ids)
    skipped = _count(
        session.execute(
            update(GiftSelection)
            .where(GiftSelection.recipient_id == recipient.id, GiftSelection.status.in_(OPEN_STATUSES))
            .values(status="skipped", status_reason=f"recipient stopped by {user.name}: {why}")
            .execution_options(synchronize_session="fetch")
        )
    )
    entry = AuditLog.by_user(
        user,
        "recipient.stopped",
        "recipient",
        recipient.id,
        customer_id=recipient.customer_id,
        reason=why,
        dates_stopped=dates,
        occasion_opt_ins_removed=opt_ins,
        selections_skipped=skipped,
        emails_cancelled=emails,
    )
    entry.at = now
    session.add(entry)
    session.flush()
    return recipient
