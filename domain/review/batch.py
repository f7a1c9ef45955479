"""Batch approval: the selections awaiting a manager's review, approved together from a page that shows
each email in full; each carries the version its email was shown at, and one changed since is refused by
name while the rest are approved."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from domain.errors import Conflict, InvalidInput
from domain.models import Customer, GiftSelection, ImportantDate, Recipient, User
from domain.reminders.queueing import occasion_label
from domain.reminders.selections import approve_selection
from domain.review.scope import selection_for, visible

#: The most emails one batch page shows (and one post approves).
BATCH_SIZE = 20


@dataclass
class BatchResult:
    approved: list[int] = field(default_factory=list)
    #: (selection id, its name on the page, why it was refused)
    refused: list[tuple[int, str, str]] = field(default_factory=list)


def awaiting_batch(session: Session, user: User, limit: int = BATCH_SIZE) -> list[GiftSelection]:
    """The user's selections awaiting review, soonest deadline first (those without one last)."""
    return list(
        session.scalars(
            select(GiftSelection)
            .join(Customer, Customer.id == GiftSelection.customer_id)
            .where(GiftSelection.status == "awaiting_review", visible(user))
            .order_by(
                GiftSelection.review_cutoff_at.is_(None), GiftSelection.review_cutoff_at, GiftSelection.id
            )
            .limit(limit)
        )
    )


def selection_name(session: Session, selection: GiftSelection) -> str:
    """How the pages name a selection: "Olga Ivanova: Anna's birthday, 08 Dec 2011"."""
    customer = session.get(Customer, selection.customer_id)
    recipient = session.get(Recipient, selection.recipient_id) if selection.recipient_id else None
    date = session.get(ImportantDate, selection.important_date_id) if selection.important_date_id else None
    client = (customer.name if customer else None) or f"Customer {customer.external_id if customer else '?'}"
    occasion = occasion_label(selection.occasion_code, "en", date.title if date else None)
    whose = f"{recipient.name}'s " if recipient else ""
    return f"{client}: {whose}{occasion}, {selection.occasion_on:%d %b %Y}"


def approve_batch(session: Session, user: User, versions: Mapping[int, int]) -> BatchResult:
    """Approve each selection at the version it was shown at. NotFound (and nothing approved) when one is
    not the user's to see; a selection changed or finished since is refused with its name, the others are
    approved (each in a savepoint, so a refusal undoes nothing else)."""
    if not versions:
        raise InvalidInput("selections", "there is nothing to approve")
    if len(versions) > BATCH_SIZE:
        raise InvalidInput("selections", f"at most {BATCH_SIZE} selections at once")
    targets = [selection_for(session, user, sid) for sid in sorted(versions)]
    out = BatchResult()
    for selection in targets:
        name = selection_name(session, selection)
        try:
            with session.begin_nested():
                approve_selection(session, selection.id, user, expected_version=versions[selection.id])
        except (Conflict, InvalidInput) as exc:
            why = exc.detail if isinstance(exc, InvalidInput) else exc.message
            out.refused.append((selection.id, name, why))
        else:
            out.approved.append(selection.id)
    return out
