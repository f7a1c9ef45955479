"""Small helpers of the /v1 API tests."""

from __future__ import annotations

SHOP = "https://shop.example"


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
