"""What the signed links in emails do: a product click, stop-this-reminder and unsubscribe."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from domain.errors import NotFound
from domain.messaging.outbox import cancel_queued
from domain.messaging.signing import InvalidLink, LinkSigner, payload_int
from domain.models import (
    AuditLog,
    Customer,
    Event,
    GiftSelection,
    ImportantDate,
    OccasionOptIn,
    Product,
    Recipient,
)

#: Selections in these states have not gone out yet; a stop or unsubscribe ends them.
OPEN_SELECTION_STATUSES = ("planned", "ready", "awaiting_review", "approved")


@dataclass(frozen=True)
class Click:
    """Where a click goes: the product's own page, or None when the catalog has no URL for it."""

    url: str | None
    product_title: str
    locale: str


def record_click(session: Session, signer: LinkSigner, token: str, now: dt.datetime) -> Click:
    """Record a click event for the email's selection and say where to redirect.

    A click in an old email of an erased customer still opens the product's page (nothing personal in
    that) but records nothing: no event, no selection change.
    """
    payload = signer.load("click", token)
    customer_id, selection_id, product_id = (
        payload_int(payload, "c"),
        payload_int(payload, "s"),
        payload_int(payload, "p"),
    )
    product = session.get(Product, product_id)
    customer = session.get(Customer, customer_id)
    if product is None or customer is None:
        raise InvalidLink()
    if customer.erased_at is not None:
        return Click(product.url, product.title, "en")
    session.add(
        Event(
            customer_id=customer_id,
            product_id=product_id,
            kind="click",
            source="email",
            recommendation_id=f"selection:{selection_id}",
            occurred_at=now,
        )
    )
    session.execute(
        update(GiftSelection)
        .where(GiftSelection.id == selection_id, GiftSelection.status == "sent")
        .values(status="clicked")
    )
    return Click(product.url, product.title, customer.locale)


@dataclass(frozen=True)
class StopTarget:
    """What a stop link stops, for the confirmation page."""

    customer_id: int
    occasion_key: str
    recipient_name: str | None
    label: str
    locale: str
    is_stopped: bool


def describe_stop(session: Session, signer: LinkSigner, token: str) -> StopTarget:
    payload = signer.load("stop", token)
    customer_id = payload_int(payload, "c")
    occasion_key = payload.get("o")
    customer = session.get(Customer, customer_id)
    if customer is None or customer.erased_at is not None or not isinstance(occasion_key, str):
        raise InvalidLink()
    kind, _, ref = occasion_key.partition(":")
    if kind == "date" and ref.isdigit():
        row = session.execute(
            select(ImportantDate, Recipient)
            .join(Recipient, ImportantDate.recipient_id == Recipient.id)
            .where(ImportantDate.id == int(ref))
        ).first()
        if row is None or row.Recipient.customer_id != customer_id:
            raise InvalidLink()
        date, recipient = row.ImportantDate, row.Recipient
        label = date.title or date.kind.replace("_", " ")
        return StopTarget(customer_id, occasion_key, recipient.name, label, customer.locale, date.is_stopped)
    if kind == "occasion" and ref:
        opted_in = session.scalar(
            select(OccasionOptIn.id).where(
                OccasionOptIn.customer_id == customer_id, OccasionOptIn.occasion_code == ref
            )
        )
        return StopTarget(
            customer_id, occasion_key, None, ref.replace("_", " "), customer.locale, opted_in is None
        )
    raise InvalidLink()


def stop_reminder(
    session: Session, signer: LinkSigner, token: str, now: dt.datetime, reason: str = ""
) -> StopTarget:
    """Stop the reminder for good: the important date (or the store occasion's opt-in) and what is queued."""
    target = describe_stop(session, signer, token)
    why = (reason.strip() or "stopped from the reminder email")[:200]
    kind, _, ref = target.occasion_key.partition(":")
    if kind == "date":
        date = session.get(ImportantDate, int(ref))
        if date is None:  # pragma: no cover - checked by describe_stop in this transaction
            raise NotFound("important date", ref)
        if not date.is_stopped:
            date.is_stopped, date.stopped_at, date.stop_reason = True, now, why
    else:
        session.execute(
            delete(OccasionOptIn).where(
                OccasionOptIn.customer_id == target.customer_id, OccasionOptIn.occasion_code == ref
            )
        )
    selection_ids = select(GiftSelection.id).where(
        GiftSelection.customer_id == target.customer_id, GiftSelection.occasion_key == target.occasion_key
    )
    session.execute(
        update(GiftSelection)
        .where(GiftSelection.id.in_(selection_ids), GiftSelection.status.in_(OPEN_SELECTION_STATUSES))
        .values(status="skipped", status_reason=f"reminder stopped: {why}")
    )
    cancel_queued(session, reason="reminder stopped", selection_ids=selection_ids)
    session.add(
        AuditLog(
            actor=f"customer:{target.customer_id}",
            action="reminder.stop",
            entity_type="occasion",
            entity_id=target.occasion_key,
            details={"reason": why},
            at=now,
        )
    )
    return StopTarget(
        target.customer_id, target.occasion_key, target.recipient_name, target.label, target.locale, True
    )


def customer_for_unsubscribe(session: Session, signer: LinkSigner, token: str) -> Customer:
    customer = session.get(Customer, payload_int(signer.load("unsubscribe", token), "c"))
    if customer is None or customer.erased_at is not None:  # nothing left to unsubscribe, nothing to show
        raise InvalidLink()
    return customer


def unsubscribe(session: Session, signer: LinkSigner, token: str, now: dt.datetime) -> Customer:
    """Stop every marketing email to the customer, including those already queued."""
    customer = customer_for_unsubscribe(session, signer, token)
    if customer.unsubscribed_at is None:
        customer.unsubscribed_at = now
        session.add(
            AuditLog(
                actor=f"customer:{customer.id}",
                action="customer.unsubscribe",
                entity_type="customer",
                entity_id=str(customer.id),
                details={"via": "email link"},
                at=now,
            )
        )
    cancel_queued(session, reason="customer unsubscribed", customer_id=customer.id)
    session.execute(
        update(GiftSelection)
        .where(GiftSelection.customer_id == customer.id, GiftSelection.status.in_(OPEN_SELECTION_STATUSES))
        .values(status="skipped", status_reason="customer unsubscribed")
    )
    return customer
