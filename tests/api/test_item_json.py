"""Recommended items serialised with kept card JSON give the same bytes as serialising them whole."""

from __future__ import annotations

from decimal import Decimal

import orjson

from api.item_json import ItemListJson
from domain.serving.recommendations import RecommendedItem


def reference(items: list[RecommendedItem]) -> bytes:
    """The ItemList shape, serialised the plain way."""
    return orjson.dumps(
        {
            "items": [
                {
                    "sku": it.sku,
                    "title": it.title,
                    "price": float(it.price),
                    "currency": it.currency,
                    "url": it.url,
                    "image_url": it.image_url,
                    "score": it.score,
                    "source": it.source,
                    "explanation": it.explanation,
                    "recommendation_id": it.recommendation_id,
                }
                for it in items
            ]
        }
    )


def item(sku: str, title: str, price: str, score: float, **kw: object) -> RecommendedItem:
    fields: dict[str, object] = {
        "sku": sku,
        "title": title,
        "price": Decimal(price),
        "currency": "GBP",
        "url": None,
        "image_url": None,
        "category": "mugs",
        "score": score,
        "source": "collaborative",
        "explanation": "Because you bought TEA MUG",
        "recommendation_id": "AbC-_12x.0c",
    }
    fields.update(kw)
    return RecommendedItem(**fields)  # type: ignore[arg-type]


ITEMS = [
    item("85123A", "WHITE HANGING HEART T-LIGHT HOLDER", "2.55", 0.709085),
    item("22423", 'REGENCY CAKESTAND 3 TIER "deluxe" \\ 50%', "12.75", 1e-07, source="similar"),
    item("X-1", "Écharpe en soie 🧣 — 丝巾", "1234.50", 12345.678901, url="https://shop.example/p?a=1&b=é"),
    item("X-2", "", "0.10", 0.0, image_url="https://cdn.example/x.jpg", source="bestsellers"),
    item("X-3", "Line\nbreak\ttab", "99", -0.5, explanation='He said "hi"\n', source="new_arrivals"),
    item("X-4", "Odd source", "5.00", 3.0, source="some_future_source", recommendation_id="r.9z"),
]


def test_the_bytes_are_those_of_the_plain_serialisation():
    out = ItemListJson()
    assert out.dumps(ITEMS) == reference(ITEMS)
    assert out.dumps(ITEMS) == reference(ITEMS)  # from the kept cards
    assert out.dumps([]) == reference([]) == b'{"items":[]}'
    assert orjson.loads(out.dumps(ITEMS))["items"][2]["title"] == "Écharpe en soie 🧣 — 丝巾"


def test_a_changed_card_is_serialised_again():
    out = ItemListJson()
    out.dumps(ITEMS)
    repriced = [ITEMS[0]._replace(price=Decimal("3.10")), ITEMS[1]._replace(title="Renamed")]
    assert out.dumps(repriced) == reference(repriced)
    assert b'"price":3.1,' in out.dumps(repriced)


def test_the_kept_cards_are_bounded():
    out = ItemListJson(max_cards=3)
    for _ in range(2):
        assert out.dumps(ITEMS) == reference(ITEMS)
        assert len(out._cards) <= 3


def test_lists_of_every_length_join_as_the_plain_serialisation():
    out = ItemListJson()
    for n in range(len(ITEMS) + 1):
        assert out.dumps(ITEMS[:n]) == reference(ITEMS[:n])
