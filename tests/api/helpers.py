"""Small helpers of the /v1 API tests."""

from __future__ import annotations

SHOP = "https://shop.example"


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}
