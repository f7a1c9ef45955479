"""Catalog upserts from the storefront API, each with an audit-log entry."""

from __future__ import annotations

from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from domain.errors import InvalidInput
from domain.models import (
    AuditLog,
    Product,
)

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


#: The only URL schemes a product's page or image may have: they are shown in emails and redirected to.
WEB_SCHEMES = ("http", "https")


def is_web_url(value: str) -> bool:
    """An absolute http(s) URL with a host: never ``javascript:``, ``data:`` or a relative path."""
    parts = urlsplit(value.strip())
    return parts.scheme.lower() in WEB_SCHEMES and bool(parts.netloc)


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
    for name in ("url", "image_url"):
        value = getattr(data, name)
        if value is not None and not is_web_url(value):
            raise InvalidInput(name, "must be an absolute http:// or https:// URL")
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
