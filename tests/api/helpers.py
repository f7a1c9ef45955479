"""Small helpers of the /v1 API tests."""

from __future__ import annotations

SHOP = "https://shop.example"


def most_active(sessions, n: int) -> list[str]:  # type: ignore[no-untyped-def]
    """The external ids of the ``n`` customers with the most orders, most first."""
    from sqlalchemy import func, select

    from domain.models import Customer, Order

    with sessions() as session:
        query = (
            select(Customer.external_id)
            .join(Order, Order.customer_id == Customer.id)
            .group_by(Customer.external_id)
            .order_by(func.count(Order.id).desc(), Customer.external_id)
            .limit(n)
        )
        return list(session.execute(query).scalars())


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


#: What every recommended item carries (issue 4), checked in responses and in the OpenAPI schema.
ITEM_FIELDS = {
    "sku",
    "title",
    "price",
    "currency",
    "url",
    "image_url",
    "score",
    "source",
    "explanation",
    "recommendation_id",
}


def signed(app, widget_key: str, customer_id: str, expires: int = 0) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """The header the shop's backend computes for ``customer_id`` with the widget key's identity secret."""
    from domain.access.api_keys import key_prefix
    from domain.access.identity import HEADER, identity_secret, sign_customer

    prefix = key_prefix(widget_key)
    assert prefix is not None
    secret = identity_secret(str(app.secret_key), prefix)
    return {HEADER: sign_customer(secret, customer_id, expires)}
