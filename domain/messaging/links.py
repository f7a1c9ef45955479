"""Signed links in emails: product clicks, stop-this-reminder and unsubscribe; tokens cannot be forged."""

from __future__ import annotations

import datetime as dt
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from config import Settings
from domain.errors import DomainError, NotFound
from domain.messaging.outbox import cancel_queued
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


class InvalidLink(DomainError):
    """A token that was not signed by us, was altered, or names something that is gone."""

    status = 404

    def __init__(self) -> None:
        super().__init__("this link is not valid")


def load_secret_key(settings: Settings) -> str:
    """``server.secret_key``, else the key kept in the instance folder (made once, shared)."""
    if settings.server.secret_key:
        return settings.server.secret_key
    path = Path(settings.server.instance_dir) / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race
        return path.read_text().strip()
    key = secrets.token_hex(32)
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    return key


class LinkSigner:
    """HMAC-signed tokens, one salt per purpose so that a click token never works as an unsubscribe one."""

    PURPOSES = ("click", "stop", "unsubscribe")

    def __init__(self, secret_key: str, base_url: str) -> None:
        if not secret_key:
            raise ValueError("a secret key is required to sign links")
        self.base_url = base_url.rstrip("/")
        self._serializers = {
            p: URLSafeSerializer(secret_key, salt=f"giftrec.link.{p}") for p in self.PURPOSES
        }

    @classmethod
    def from_settings(cls, settings: Settings) -> LinkSigner:
        return cls(load_secret_key(settings), settings.server.base_url)

    def sign(self, purpose: str, payload: dict[str, Any]) -> str:
        return str(self._serializers[purpose].dumps(payload))

    def load(self, purpose: str, token: str) -> dict[str, Any]:
        """The payload of a token we signed for ``purpose``; :class:`InvalidLink` for anything else."""
        try:
            payload = self._serializers[purpose].loads(token)
        except BadSignature:
            raise InvalidLink() from None
        if not isinstance(payload, dict):
            raise InvalidLink()
        return payload

    def click_url(self, *, customer_id: int, selection_id: int, product_id: int) -> str:
        token = self.sign("click", {"c": customer_id, "s": selection_id, "p": product_id})
        return f"{self.base_url}/r/{token}"

    def stop_url(self, *, customer_id: int, occasion_key: str) -> str:
        return f"{self.base_url}/stop/{self.sign('stop', {'c': customer_id, 'o': occasion_key})}"

    def unsubscribe_url(self, *, customer_id: int) -> str:
        return f"{self.base_url}/unsubscribe/{self.sign('unsubscribe', {'c': customer_id})}"


def _int(payload: dict[str, Any], key: str) -> int:
    value = payload.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidLink()
    return value


@dataclass(frozen=True)
class Click:
    """Where a click goes: the product's own page, or None when the catalog has no URL for it."""

    url: str | None
    product_title: str
    locale: str


def record_click(session: Session, signer: LinkSigner, token: str, now: dt.datetime) -> Click:
    """Record a click event for the email's selection and say where to redirect."""
    payload = signer.load("click", token)
    customer_id, selection_id, product_id = _int(payload, "c"), _int(payload, "s"), _int(payload, "p")
    product = session.get(Product, product_id)
    customer = session.get(Customer, customer_id)
    if product is None or customer is None:
        raise InvalidLink()
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
    customer_id = _int(payload, "c")
    occasion_key = payload.get("o")
    customer = session.get(Customer, customer_id)
    if customer is None or not isinstance(occasion_key, str):
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
    customer = session.get(Customer, _int(signer.load("unsubscribe", token), "c"))
    if customer is None:
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
