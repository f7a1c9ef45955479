"""The /v1 storefront endpoints: picks on the real sample, caching, catalog, orders, erasure, selections."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from domain.db import session_scope
from domain.models import (
    AuditLog,
    Customer,
    Event,
    GiftSelection,
    ImportantDate,
    Order,
    Product,
    Recipient,
    SelectionPick,
)
from tests.api.helpers import ITEM_FIELDS, SHOP, bearer, signed


@pytest.mark.slow
def test_picks_on_the_real_sample(app, client, keys, trained):
    headers = bearer(keys["server"])
    resp = client.get(f"/v1/customers/{trained}/recommendations?n=8", headers=headers)
    assert resp.status_code == 200, resp.json
    items = resp.json["items"]
    assert len(items) == 8
    assert all(set(item) == ITEM_FIELDS for item in items)
    assert items[0]["source"] == "collaborative"
    assert len({item["recommendation_id"] for item in items}) == 8
    assert len({item["sku"] for item in items}) == 8

    # Filters: price band, category-free, explicit exclusions.
    skus = [item["sku"] for item in items]
    band = client.get(
        f"/v1/customers/{trained}/recommendations?n=10&min_price=2&max_price=5&exclude={skus[0]},{skus[1]}",
        headers=headers,
    ).json["items"]
    assert band and all(2 <= item["price"] <= 5 for item in band)
    assert not {skus[0], skus[1]} & {item["sku"] for item in band}

    # Hiding a product takes effect in the next response, without retraining.
    hidden = skus[0]
    put = client.put(f"/v1/products/{hidden}", json={"is_active": False}, headers=headers)
    assert put.status_code == 200 and put.json["is_active"] is False
    again = client.get(f"/v1/customers/{trained}/recommendations?n=8", headers=headers).json["items"]
    assert hidden not in {item["sku"] for item in again}

    similar = client.get(f"/v1/products/{skus[1]}/similar?n=5", headers=headers)
    assert similar.status_code == 200
    assert len(similar.json["items"]) == 5 and skus[1] not in {i["sku"] for i in similar.json["items"]}
    assert client.get("/v1/products/NO-SUCH/similar", headers=headers).status_code == 404

    # Bestsellers and new arrivals are cacheable; a conditional GET of the same list is 304.
    for path in ("/v1/bestsellers?n=5&days=30", "/v1/new-arrivals?n=5"):
        first = client.get(path, headers=headers)
        assert first.status_code == 200 and len(first.json["items"]) == 5
        assert "max-age=300" in first.headers["Cache-Control"]
        etag = first.headers["ETag"]
        second = client.get(path, headers={**headers, "If-None-Match": etag})
        assert second.status_code == 304 and second.headers["ETag"] == etag
    best = client.get("/v1/bestsellers?n=5&days=30", headers=headers)
    top = best.json["items"][0]["sku"]
    client.put(f"/v1/products/{top}", json={"in_stock": False}, headers=headers)
    changed = client.get(
        "/v1/bestsellers?n=5&days=30", headers={**headers, "If-None-Match": best.headers["ETag"]}
    )
    assert changed.status_code == 200 and top not in {i["sku"] for i in changed.json["items"]}

    # A widget key reads picks from its own origin, and the response may be read by that page.
    widget = client.get(
        f"/v1/customers/{trained}/recommendations?n=3",
        headers={"X-Api-Key": keys["widget"], "Origin": SHOP, **signed(app, keys["widget"], trained)},
    )
    assert widget.status_code == 200 and widget.headers["Access-Control-Allow-Origin"] == SHOP

    # A click citing a recommendation id is recorded against it.
    rec = again[1]
    click = {
        "events": [
            {
                "id": "k1",
                "type": "click",
                "sku": rec["sku"],
                "customer_id": trained,
                "recommendation_id": rec["recommendation_id"],
            }
        ]
    }
    assert client.post("/v1/events", json=click, headers=headers).json == {"recorded": 1, "duplicates": 0}
    with app.extensions["giftrec"].sessions() as session:
        assert (
            session.scalar(select(Event.recommendation_id).where(Event.idempotency_key == "k1"))
            == (rec["recommendation_id"])
        )


def test_read_errors_are_problems(client, keys, shop):
    headers = bearer(keys["server"])
    unknown = client.get("/v1/customers/NOBODY/recommendations", headers=headers)
    assert unknown.status_code == 404 and unknown.mimetype == "application/problem+json"
    for query, field in (
        ("n=0", "n"),
        ("n=abc", "n"),
        ("min_price=9&max_price=1", "max_price"),
        ("min_price=-1", "min_price"),
    ):
        resp = client.get(f"/v1/customers/C1/recommendations?{query}", headers=headers)
        assert resp.status_code == 422, (query, resp.json)
        assert resp.json["errors"][0]["field"] == field
    assert client.get("/v1/bestsellers?days=0", headers=headers).json["errors"][0]["field"] == "days"
    assert client.get("/v1/bestsellers", headers=bearer(keys["email"])).status_code == 403


def test_product_upsert_creates_updates_and_audits(app, client, keys):
    headers = bearer(keys["server"])
    missing = client.put("/v1/products/NEW-1", json={"title": "Card"}, headers=headers)
    assert missing.status_code == 422 and missing.json["errors"][0]["field"] == "price"
    created = client.put(
        "/v1/products/NEW-1",
        json={
            "title": "Card",
            "price": "4.20",
            "category": "paper",
            "image_url": "https://img.example/1.jpg",
        },
        headers=headers,
    )
    assert created.status_code == 201 and created.json["price"] == 4.2
    updated = client.put("/v1/products/NEW-1", json={"price": 5, "in_stock": False}, headers=headers)
    assert updated.status_code == 200
    assert (updated.json["title"], updated.json["category"], updated.json["in_stock"]) == (
        "Card",
        "paper",
        False,
    )
    for body, field in (
        ({"price": 0}, "price"),
        ({"price": 0.004}, "price"),  # rounds to 0.00
        ({"price": 10**10}, "price"),  # above Numeric(12, 2)
        ({"price": "free"}, "price"),
        ({"currency": "G1P"}, "currency"),
        ({"is_active": "maybe"}, "is_active"),
        ({"colour": "red"}, "colour"),
        # Regression: a product URL is shown in emails and redirected to; any scheme was accepted.
        ({"url": "javascript:alert(1)"}, "url"),
        ({"url": "/relative/page"}, "url"),
        ({"image_url": "data:image/png;base64,AAAA"}, "image_url"),
    ):
        resp = client.put("/v1/products/NEW-1", json=body, headers=headers)
        assert resp.status_code == 422 and resp.json["errors"][0]["field"] == field
    with app.extensions["giftrec"].sessions() as session:
        product = session.scalars(select(Product).where(Product.sku == "NEW-1")).one()
        assert (product.price, product.in_stock) == (Decimal("5.00"), False)
        actions = session.scalars(select(AuditLog.action).order_by(AuditLog.id)).all()
    assert actions[-2:] == ["product.create", "product.update"]


def test_orders_are_idempotent_and_refuse_unknown_products(app, client, keys, shop):
    headers = bearer(keys["server"])
    order = {
        "order_id": "W-1001",
        "customer_id": "NEW-CUSTOMER",
        "ordered_at": "2011-12-01T10:00:00+01:00",
        "lines": [
            {"sku": "MUG-1", "quantity": 2, "unit_price": "8.50"},
            {"sku": "VASE-2", "quantity": 1, "unit_price": 32},
        ],
    }
    first = client.post("/v1/orders", json=order, headers=headers)
    assert first.status_code == 201, first.json
    assert first.json["customer_created"] is True and first.json["lines"] == 2
    again = client.post("/v1/orders", json=order, headers=headers)
    assert again.status_code == 200 and again.json["created"] is False
    other = {**order, "lines": [{"sku": "MUG-1", "quantity": 9, "unit_price": "8.50"}]}
    assert client.post("/v1/orders", json=other, headers=headers).status_code == 409
    bad = {
        **order,
        "order_id": "W-1002",
        "lines": [order["lines"][0], {"sku": "NOPE", "quantity": 1, "unit_price": 1}],
    }
    resp = client.post("/v1/orders", json=bad, headers=headers)
    assert resp.status_code == 422 and resp.json["errors"][0]["field"] == "lines[1].sku"
    with app.extensions["giftrec"].sessions() as session:
        orders = session.scalars(select(Order)).all()
        assert [o.external_id for o in orders] == ["W-1001"]
        assert orders[0].ordered_at == dt.datetime(2011, 12, 1, 9, 0) and orders[0].source == "api"


def test_erasing_a_customer_removes_personal_data_and_interactions(app, client, keys, shop):
    headers = bearer(keys["server"])
    ctx = app.extensions["giftrec"]
    client.post(
        "/v1/orders",
        headers=headers,
        json={
            "order_id": "E-1",
            "customer_id": "C1",
            "lines": [{"sku": "MUG-1", "quantity": 1, "unit_price": 8.5}],
        },
    )
    client.post(
        "/v1/events",
        headers=headers,
        json={"events": [{"id": "e-1", "type": "view", "sku": "VASE-2", "customer_id": "C1"}]},
    )
    with session_scope(ctx.sessions) as session:
        customer = session.scalars(select(Customer).where(Customer.external_id == "C1")).one()
        recipient = Recipient(customer_id=customer.id, name="Wife", relationship_="wife")
        session.add(recipient)
        session.flush()
        session.add(ImportantDate(recipient_id=recipient.id, kind="birthday", month=3, day=8))

    assert client.delete("/v1/customers/C1", headers=headers).status_code == 204
    assert client.delete("/v1/customers/C1", headers=headers).status_code == 204  # idempotent
    assert client.delete("/v1/customers/NOBODY", headers=headers).status_code == 404
    with ctx.sessions() as session:
        customer = session.scalars(select(Customer).where(Customer.external_id == "C1")).one()
        assert (customer.name, customer.email, customer.email_consent) == (None, None, False)
        assert customer.erased_at is not None
        assert session.scalar(select(func.count()).select_from(Event)) == 0
        assert session.scalar(select(func.count()).select_from(Recipient)) == 0
        assert session.scalar(select(func.count()).select_from(ImportantDate)) == 0
        order = session.scalars(select(Order).where(Order.external_id == "E-1")).one()
        assert order.customer_id is None  # kept for totals, invisible to training
        audit = session.scalars(select(AuditLog).where(AuditLog.action == "customer.erase")).one()
        assert audit.details["events_deleted"] == 1 and audit.actor.startswith("key:gr_")
    refused = client.post(
        "/v1/events",
        headers=headers,
        json={"events": [{"id": "e-2", "type": "view", "sku": "VASE-2", "customer_id": "C1"}]},
    )
    assert refused.status_code == 422 and "erased" in refused.json["errors"][0]["message"]


def _selection(app, code: str = "march_8") -> int:  # type: ignore[no-untyped-def]
    with session_scope(app.extensions["giftrec"].sessions) as session:
        customer = session.scalars(select(Customer).where(Customer.external_id == "C2")).one()
        recipient = Recipient(customer_id=customer.id, name="Mum", relationship_="mother")
        session.add(recipient)
        session.flush()
        products = {p.sku: p for p in session.scalars(select(Product))}
        selection = GiftSelection(
            customer_id=customer.id,
            recipient_id=recipient.id,
            occasion_key=f"occasion:{code}",
            occasion_code=code,
            occasion_on=dt.date(2012, 3, 8),
            year=2012,
            status="ready",
            tier_bounds=[[0, 20], [20, 60], [60, 200]],
        )
        selection.picks = [
            SelectionPick(
                product_id=products[sku].id,
                tier=tier,
                position=1,
                source="collaborative",
                explanation="Because she liked tea",
                price_at_pick=products[sku].price,
            )
            for tier, sku in ((1, "MUG-1"), (2, "VASE-2"), (3, "SCARF-3"))
        ]
        session.add(selection)
        session.flush()
        return selection.id


def test_email_keys_pull_selections(app, client, keys, shop):
    selection_id = _selection(app)
    email = bearer(keys["email"])
    one = client.get(f"/v1/selections/{selection_id}", headers=email)
    assert one.status_code == 200, one.json
    body = one.json
    assert (body["customer_id"], body["status"], body["recipient"]["name"]) == ("C2", "ready", "Mum")
    assert [t["tier"] for t in body["tiers"]] == [1, 2, 3]
    pick = body["tiers"][0]["picks"][0]
    assert pick["sku"] == "MUG-1" and pick["click_url"].startswith("http") and "/r/" in pick["click_url"]
    listed = client.get("/v1/customers/C2/selections?status=ready", headers=email)
    assert [s["id"] for s in listed.json["selections"]] == [selection_id]
    assert client.get("/v1/customers/C2/selections?status=sent", headers=email).json["selections"] == []
    assert client.get("/v1/customers/C2/selections?status=bogus", headers=email).status_code == 422
    assert client.get("/v1/selections/999999", headers=email).status_code == 404
    assert client.get("/v1/customers/NOBODY/selections", headers=email).status_code == 404
    assert client.get(f"/v1/selections/{selection_id}", headers=bearer(keys["server"])).status_code == 403
    assert client.get(f"/v1/selections/{selection_id}", headers=bearer(keys["admin"])).status_code == 200


def test_the_feed_says_what_may_be_emailed_and_a_reported_send_counts_against_the_cap(
    app, client, keys, shop
):
    """Regression: the email-platform feed returned selections of customers who gave no email consent and
    said nothing of consent or of the frequency cap; a platform that pulls the picks could not tell."""
    selection_id = _selection(app)
    email = bearer(keys["email"])
    ctx = app.extensions["giftrec"]

    def sending() -> dict:  # type: ignore[type-arg]
        return client.get(f"/v1/selections/{selection_id}", headers=email).json["sending"]

    assert sending() == {"allowed": False, "reason": "no email consent", "not_before": None}
    with session_scope(ctx.sessions) as session:
        session.scalars(select(Customer).where(Customer.external_id == "C2")).one().email_consent = True
    assert sending() == {"allowed": True, "reason": None, "not_before": None}

    reported = client.post(f"/v1/selections/{selection_id}/sent", headers=email)
    assert reported.status_code == 200 and reported.json == {"recorded": True}
    assert client.post(f"/v1/selections/{selection_id}/sent", headers=email).json == {"recorded": False}
    body = client.get(f"/v1/selections/{selection_id}", headers=email).json
    assert body["status"] == "sent" and body["sending"]["reason"] == "already sent"
    # another selection of the same customer now waits for the frequency cap
    second = _selection(app, "new_year")
    later = client.get(f"/v1/selections/{second}", headers=email).json["sending"]
    assert later["allowed"] is False and later["reason"].startswith("frequency cap")
    assert later["not_before"] is not None
    assert (
        client.post(f"/v1/selections/{selection_id}/sent", headers=bearer(keys["widget"])).status_code == 403
    )


def test_the_demo_page_is_served_only_in_demo_mode(settings, sessions):
    """Regression: /demo (which names a real customer) was mounted in production too."""
    from dataclasses import replace

    from api import create_app

    production = create_app(replace(settings, demo=replace(settings.demo, enabled=False)))
    try:
        assert production.test_client().get("/demo").status_code == 404
        assert production.test_client().get("/widget.js").status_code == 200
    finally:
        production.extensions["giftrec"].close()


def test_demo_page_and_widget_script_are_served(client, keys):
    script = client.get("/widget.js")
    assert script.status_code == 200 and script.mimetype == "text/javascript"
    assert b"data-giftrec-key" in script.data
    page = client.get(f"/demo?key={keys['widget']}&customer=C1")
    assert page.status_code == 200
    assert b'data-customer="C1"' in page.data and b"/widget.js" in page.data


def test_a_selection_id_beyond_the_database_integers_is_not_found(client, keys):
    """Regression: an id above 2**63 - 1 was a 500 on SQLite (its driver cannot send it)."""
    for selection_id in (2**31, 2**63, 10**30):
        resp = client.get(f"/v1/selections/{selection_id}", headers=bearer(keys["email"]))
        assert resp.status_code == 404 and resp.mimetype == "application/problem+json"
