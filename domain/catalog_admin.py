"""Catalog upserts and customer erasure from the storefront API, each with an audit-log entry."""

from __future__ import annotations

from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from domain.errors import InvalidInput, NotFound
from domain.models import (
    AuditLog,
    Customer,
    Event,
    GiftGiven,
    GiftSelection,
    ImportantDate,
    OccasionOptIn,
    Order,
    OrderLine,
    OutboundEmail,
    Product,
    Recipient,
)
from domain.models._types import utcnow

#: Fields a product upsert may set; ``None`` in :class:`ProductInput` means "not given".
PRODUCT_FIELDS = (
    "title",
    "description",
    "category",
    "brand",
    "price",
    "currency",
    "url",
    "image_url",
    "is_active",
    "in_stock",
    "delivery_days",
    "tags",
)


@dataclass(frozen=True, slots=True)
class ProductInput:
    """A catalog upsert. On create ``title`` and ``price`` are required; on update omitted fields stay."""

    title: str | None = None
    description: str | None = None
    category: str | None = None
    brand: str | None = None
    price: Decimal | None = None
    currency: str | None = None
    url: str | None = None
    image_url: str | None = None
    is_active: bool | None = None
    in_stock: bool | None = None
    delivery_days: int | None = None
    tags: list[str] | None = None


def upsert_product(session: Session, sku: str, data: ProductInput, *, actor: str) -> tuple[Product, bool]:
    """Create or update the product ``sku``; returns it and whether it was created.

    Hiding a product (``is_active=False`` or ``in_stock=False``) is visible to the serving layer as soon as
    the request commits: it reads availability through the catalog snapshot, not the trained model.
    """
    sku = sku.strip()
    if not sku or len(sku) > 64:
        raise InvalidInput("sku", "must be 1 to 64 characters")
    if data.price is not None and data.price.quantize(Decimal("0.01")) <= 0:
        raise InvalidInput("price", "must be greater than 0")
    if data.currency is not None and (len(data.currency) != 3 or not data.currency.isalpha()):
        raise InvalidInput("currency", "must be a three-letter ISO 4217 code")
    if data.delivery_days is not None and data.delivery_days < 0:
        raise InvalidInput("delivery_days", "must be 0 or more")
    product = session.scalar(select(Product).where(Product.sku == sku))
    created = product is None
    given = {f.name: getattr(data, f.name) for f in fields(data) if getattr(data, f.name) is not None}
    if "currency" in given:
        given["currency"] = given["currency"].upper()
    if "price" in given:
        given["price"] = given["price"].quantize(Decimal("0.01"))
    if product is None:
        for required in ("title", "price"):
            if required not in given:
                raise InvalidInput(required, f"is required to create product {sku!r}")
        product = Product(sku=sku, **given)
        session.add(product)
        changed: dict[str, Any] = {k: str(v) if isinstance(v, Decimal) else v for k, v in given.items()}
    else:
        changed = {}
        for name, value in given.items():
            if getattr(product, name) != value:
                changed[name] = str(value) if isinstance(value, Decimal) else value
                setattr(product, name, value)
    session.flush()
    if changed:
        session.add(
            AuditLog(
                actor=actor,
                action="product.create" if created else "product.update",
                entity_type="product",
                entity_id=sku,
                details={"changed": changed},
            )
        )
    return product, created


@dataclass(frozen=True, slots=True)
class ErasureResult:
    customer_id: int
    already_erased: bool
    events_deleted: int
    recipients_deleted: int
    selections_deleted: int
    emails_deleted: int
    orders_detached: int


def erase_customer(session: Session, external_id: str, *, actor: str) -> ErasureResult:
    """Erase a customer's personal data and interactions; the next training no longer sees them.

    Name, email and country are blanked and consent withdrawn; recipients (with their dates and gifts),
    selections, opt-ins, queued or past emails and events are deleted; orders stay for the shop's totals
    but are detached (``customer_id`` NULL, like guest sales), so popularity still counts them while no
    model learns this customer again. The row stays, marked ``erased_at``, so that the shop's id is not
    re-used by accident. Erasing twice changes nothing more.
    """
    customer = session.scalar(select(Customer).where(Customer.external_id == external_id))
    if customer is None:
        raise NotFound("customer", external_id)
    if customer.erased_at is not None:
        return ErasureResult(customer.id, True, 0, 0, 0, 0, 0)
    cid = customer.id

    def count(model: Any, *where: Any) -> int:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)

    recipient_ids = list(session.scalars(select(Recipient.id).where(Recipient.customer_id == cid)))
    result = ErasureResult(
        customer_id=cid,
        already_erased=False,
        events_deleted=count(Event, Event.customer_id == cid),
        recipients_deleted=len(recipient_ids),
        selections_deleted=count(GiftSelection, GiftSelection.customer_id == cid),
        emails_deleted=count(OutboundEmail, OutboundEmail.customer_id == cid),
        orders_detached=count(Order, Order.customer_id == cid),
    )
    # Children first: the explicit deletes do not depend on ON DELETE CASCADE being enforced.
    session.execute(delete(OutboundEmail).where(OutboundEmail.customer_id == cid))
    session.execute(delete(GiftSelection).where(GiftSelection.customer_id == cid))
    session.execute(delete(OccasionOptIn).where(OccasionOptIn.customer_id == cid))
    session.execute(delete(Event).where(Event.customer_id == cid))
    session.execute(update(Order).where(Order.customer_id == cid).values(customer_id=None, recipient_id=None))
    if recipient_ids:
        session.execute(delete(GiftGiven).where(GiftGiven.recipient_id.in_(recipient_ids)))
        session.execute(delete(ImportantDate).where(ImportantDate.recipient_id.in_(recipient_ids)))
        session.execute(delete(Recipient).where(Recipient.id.in_(recipient_ids)))
    now = utcnow()
    customer.name = None
    customer.email = None
    customer.country = None
    customer.email_consent = False
    customer.is_vip = False
    customer.account_manager_id = None
    customer.reminder_lead_days = None
    customer.unsubscribed_at = customer.unsubscribed_at or now
    customer.erased_at = now
    session.add(
        AuditLog(
            actor=actor,
            action="customer.erase",
            entity_type="customer",
            entity_id=str(cid),
            details={
                "events_deleted": result.events_deleted,
                "recipients_deleted": result.recipients_deleted,
                "selections_deleted": result.selections_deleted,
                "emails_deleted": result.emails_deleted,
                "orders_detached": result.orders_detached,
            },
        )
    )
    session.flush()
    session.expire_all()
    return result


def demo_shopper(session: Session) -> tuple[str | None, str | None]:
    """A customer with the most order lines and the product they bought most: what the demo page shows."""
    row = session.execute(
        select(Customer.external_id, func.count(OrderLine.id).label("n"))
        .join(Order, Order.customer_id == Customer.id)
        .join(OrderLine, OrderLine.order_id == Order.id)
        .where(Customer.erased_at.is_(None), Order.kind == "sale")
        .group_by(Customer.external_id)
        .order_by(func.count(OrderLine.id).desc(), Customer.external_id)
        .limit(1)
    ).first()
    if row is None:
        return None, None
    sku = session.scalar(
        select(Product.sku)
        .join(OrderLine, OrderLine.product_id == Product.id)
        .join(Order, Order.id == OrderLine.order_id)
        .join(Customer, Customer.id == Order.customer_id)
        .where(Customer.external_id == row[0], Product.is_active.is_(True))
        .group_by(Product.sku)
        .order_by(func.sum(OrderLine.quantity).desc(), Product.sku)
        .limit(1)
    )
    return row[0], sku
