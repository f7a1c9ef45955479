"""A manager adds and edits a client's recipients and their important dates (the one-click stop is in
``clients``). Every field is checked before anything is written; each change is in the audit log."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from domain.errors import InvalidInput, NotFound
from domain.models import DATE_KINDS, AuditLog, Customer, ImportantDate, Recipient, User
from domain.models.people import RECURRENCES
from domain.review.scope import customer_for, visible

MAX_NAME = 200
MAX_RELATIONSHIP = 50
MAX_INTERESTS = 20


@dataclass(frozen=True)
class RecipientInput:
    name: str
    relationship: str
    interests: str = ""


@dataclass(frozen=True)
class DateInput:
    kind: str
    month: int | None
    day: int | None
    title: str = ""
    year: int | None = None
    recurrence: str = "yearly"


def _save(
    session: Session, user: User, row: Any, values: dict[str, Any], entity: str, customer_id: int
) -> None:
    """Write ``values`` into a new (pending) or existing row and audit it: created with the values, or
    edited with before and after (an unchanged edit writes nothing)."""
    if row.id is None:
        session.add(row)
        session.flush()
        entry = AuditLog.by_user(
            user, f"{entity}.created", entity, row.id, customer_id=customer_id, **_shown(values)
        )
    else:
        before = {k: getattr(row, k) for k in values}
        if before == values:
            return
        for k, v in values.items():
            setattr(row, k, v)
        entry = AuditLog.by_user(
            user, f"{entity}.edited", entity, row.id, customer_id=customer_id,
            before=_shown(before), after=_shown(values),
        )  # fmt: skip
    session.add(entry)
    session.flush()


def _shown(values: dict[str, Any]) -> dict[str, Any]:
    """Column names as the audit log shows them (``relationship_`` is the model's name for a keyword)."""
    return {k.rstrip("_"): v for k, v in values.items()}


def _recipient_values(data: RecipientInput) -> dict[str, Any]:
    name = data.name.strip()
    if not name:
        raise InvalidInput("name", "enter the recipient's name")
    if len(name) > MAX_NAME:
        raise InvalidInput("name", f"at most {MAX_NAME} characters")
    relationship = data.relationship.strip().lower().replace(" ", "_")
    if not relationship:
        raise InvalidInput(
            "relationship", "say who they are to the client (wife, colleague, partner company...)"
        )
    if len(relationship) > MAX_RELATIONSHIP:
        raise InvalidInput("relationship", f"at most {MAX_RELATIONSHIP} characters")
    interests = [w.strip() for w in data.interests.split(",") if w.strip()]
    if len(interests) > MAX_INTERESTS or any(len(w) > 50 for w in interests):
        raise InvalidInput("interests", f"at most {MAX_INTERESTS} interests of up to 50 characters each")
    return {"name": name, "relationship_": relationship, "interests": interests}


def _recipient(session: Session, user: User, customer_id: int, recipient_id: int) -> Recipient:
    """A recipient of this client, if the user sees the client; else NotFound."""
    recipient = session.scalar(
        select(Recipient)
        .join(Customer, Customer.id == Recipient.customer_id)
        .where(Recipient.id == recipient_id, Recipient.customer_id == customer_id, visible(user))
    )
    if recipient is None:
        raise NotFound("recipient", recipient_id)
    return recipient


def save_recipient(
    session: Session, user: User, customer_id: int, data: RecipientInput, recipient_id: int | None = None
) -> Recipient:
    """Add a recipient to a client, or edit one (``recipient_id``)."""
    customer = customer_for(session, user, customer_id)
    values = _recipient_values(data)
    if recipient_id is None:
        recipient = Recipient(customer_id=customer.id, **values)
        _save(session, user, recipient, values, "recipient", customer.id)
    else:
        recipient = _recipient(session, user, customer.id, recipient_id)
        _save(session, user, recipient, values, "recipient", customer.id)
    return recipient


def _date_values(data: DateInput) -> dict[str, Any]:
    if data.kind not in DATE_KINDS:
        raise InvalidInput("kind", f"must be one of {', '.join(DATE_KINDS)}")
    if data.recurrence not in RECURRENCES:
        raise InvalidInput("recurrence", f"must be one of {', '.join(RECURRENCES)}")
    title = data.title.strip()
    if data.kind == "custom" and not title:
        raise InvalidInput("title", "name the occasion of a custom date")
    if len(title) > MAX_NAME:
        raise InvalidInput("title", f"at most {MAX_NAME} characters")
    if data.month is None or not 1 <= data.month <= 12:
        raise InvalidInput("month", "choose a month")
    if data.year is not None and not 1900 <= data.year <= 2200:
        raise InvalidInput("year", "must be between 1900 and 2200")
    if data.recurrence == "once" and data.year is None:
        raise InvalidInput("year", "a one-off date needs its year")
    # 29 February is a date in a leap year (yearly dates fall on 28 Feb or 1 Mar in other years).
    leap = data.year if data.year is not None and data.recurrence == "once" else 2000
    days = calendar.monthrange(leap, data.month)[1]
    if data.day is None or not 1 <= data.day <= days:
        raise InvalidInput("day", f"{calendar.month_name[data.month]} has days 1 to {days}")
    return {
        "kind": data.kind,
        "title": title or None,
        "month": data.month,
        "day": data.day,
        "year": data.year,
        "recurrence": data.recurrence,
    }


def save_date(
    session: Session,
    user: User,
    customer_id: int,
    recipient_id: int,
    data: DateInput,
    date_id: int | None = None,
) -> ImportantDate:
    """Add an important date to a recipient of a client, or edit one (``date_id``). A stopped date stays
    stopped: stopping is the one-click stop's business."""
    recipient = _recipient(session, user, customer_id, recipient_id)
    values = _date_values(data)
    if date_id is None:
        date = ImportantDate(recipient_id=recipient.id, **values)
    else:
        found = session.scalar(
            select(ImportantDate).where(
                ImportantDate.id == date_id, ImportantDate.recipient_id == recipient.id
            )
        )
        if found is None:
            raise NotFound("date", date_id)
        date = found
    _save(session, user, date, values, "important_date", customer_id)
    return date
