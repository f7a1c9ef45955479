"""The JSON of recommended items (the ``ItemList`` schema), with each product card's part kept.

A recommendations response is ten items; six of each item's ten fields are the product card, the same in
every response until the card changes. They are serialised once per card; a response only adds the
score, source, explanation and recommendation id, and joins all the parts once. The bytes are exactly
what ``orjson.dumps`` gives for the same items as dicts (tests/api/test_item_json.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from domain.serving.recommendations import RecommendedItem

#: Cards kept per process (a few hundred bytes each); more than any catalog served here.
MAX_CARDS = 50_000


class ItemListJson:
    """``{"items": [...]}`` for a list of :class:`RecommendedItem`, cards serialised once each."""

    def __init__(self, max_cards: int = MAX_CARDS) -> None:
        self.max_cards = max_cards
        # sku -> (the card's fields, b'{"sku":...,"image_url":...,') ; checked against the item's own
        # fields, so a changed title or price is serialised again and never served stale.
        self._cards: dict[str, tuple[tuple[object, ...], bytes]] = {}
        self._sources: dict[str, bytes] = {}

    def dumps(self, items: Sequence[RecommendedItem]) -> bytes:
        dumps = orjson.dumps
        cards = self._cards
        out = [b'{"items":[']
        for it in items:
            card = it[:6]  # sku, title, price, currency, url, image_url
            found = cards.get(it.sku)
            if found is None or found[0] != card:
                found = self._card(card)
            source = self._sources.get(it.source)
            if source is None:
                source = self._sources[it.source] = b',"source":' + dumps(it.source) + b',"explanation":'
            out += (
                found[1],
                b'"score":',
                dumps(it.score),
                source,
                dumps(it.explanation),
                b',"recommendation_id":',
                dumps(it.recommendation_id),
                b"},",
            )
        if items:
            out[-1] = b"}"
        out.append(b"]}")
        return b"".join(out)

    def _card(self, card: tuple[object, ...]) -> tuple[tuple[object, ...], bytes]:
        sku, title, price, currency, url, image_url = card
        body = orjson.dumps(
            {
                "sku": sku,
                "title": title,
                "price": float(price),  # type: ignore[arg-type]
                "currency": currency,
                "url": url,
                "image_url": image_url,
            }
        )
        if len(self._cards) >= self.max_cards:
            self._cards.clear()
        found = self._cards[str(sku)] = (card, body[:-1] + b",")
        return found
