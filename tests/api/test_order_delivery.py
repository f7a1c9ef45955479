"""The delivery time of an order (issue 14, review request): POST with the order or PATCH later, checked."""

from __future__ import annotations

import datetime as dt

from flask import jsonify
from sqlalchemy import select

from api.schemas import OrderOut
from domain.models import Order
from tests.api.helpers import bearer

ORDER = {
    "order_id": "D-1",
    "customer_id": "C1",
    "ordered_at": "2011-12-01T10:00:00+00:00",
    "lines": [{"sku": "MUG-1", "quantity": 1, "unit_price": "8.50"}],
}


def _delivered(app, order_id: str) -> dt.datetime | None:
    with app.extensions["giftrec"].sessions() as session:
        return session.scalar(select(Order.delivered_at).where(Order.external_id == order_id))


def test_an_order_takes_its_delivery_time_with_it_or_later(app, client, keys, shop):
    headers = bearer(keys["server"])
    first = client.post(
        "/v1/orders", json={**ORDER, "delivered_at": "2011-12-03T09:30:00+01:00"}, headers=headers
    )
    assert first.status_code == 201, first.json
    assert _delivered(app, "D-1") == dt.datetime(2011, 12, 3, 8, 30)
    plain = {**ORDER, "order_id": "D-2"}
    assert client.post("/v1/orders", json=plain, headers=headers).status_code == 201
    assert _delivered(app, "D-2") is None
    resp = client.patch("/v1/orders/D-2", json={"delivered_at": "2011-12-02T12:00:00Z"}, headers=headers)
    assert resp.status_code == 200, resp.json
    assert resp.json["order_id"] == "D-2" and resp.json["delivered_at"].startswith("2011-12-02T12:00:00")
    assert _delivered(app, "D-2") == dt.datetime(2011, 12, 2, 12, 0)
    # the same order posted again with its delivery: 200, the time recorded
    again = client.post("/v1/orders", json={**plain, "delivered_at": "2011-12-04T08:00:00Z"}, headers=headers)
    assert again.status_code == 200 and again.json["created"] is False
    assert _delivered(app, "D-2") == dt.datetime(2011, 12, 4, 8, 0)


def test_bad_deliveries_are_refused_naming_the_field_and_change_nothing(app, client, keys, shop):
    headers = bearer(keys["server"])
    assert client.post("/v1/orders", json=ORDER, headers=headers).status_code == 201
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).isoformat()
    for body in (
        {"delivered_at": "2011-11-30T10:00:00Z"},  # before the order
        {"delivered_at": future},
        {"delivered_at": "yesterday"},
        {},
    ):
        resp = client.patch("/v1/orders/D-1", json=body, headers=headers)
        assert resp.status_code == 422, body
        assert resp.json["errors"][0]["field"] == "delivered_at", resp.json
    assert _delivered(app, "D-1") is None
    before = {**ORDER, "order_id": "D-3", "delivered_at": "2011-11-30T10:00:00Z"}
    resp = client.post("/v1/orders", json=before, headers=headers)
    assert resp.status_code == 422 and resp.json["errors"][0]["field"] == "delivered_at"
    ret = {**ORDER, "order_id": "D-4", "kind": "return", "delivered_at": "2011-12-02T10:00:00Z"}
    resp = client.post("/v1/orders", json=ret, headers=headers)
    assert resp.status_code == 422 and resp.json["errors"][0]["field"] == "delivered_at"
    with app.extensions["giftrec"].sessions() as session:
        assert session.scalars(select(Order.external_id).order_by(Order.id)).all() == ["D-1"]
    missing = client.patch("/v1/orders/NOPE", json={"delivered_at": "2011-12-02T10:00:00Z"}, headers=headers)
    assert missing.status_code == 404
    email_key = client.patch(
        "/v1/orders/D-1", json={"delivered_at": "2011-12-02T10:00:00Z"}, headers=bearer(keys["email"])
    )
    assert email_key.status_code == 403 and _delivered(app, "D-1") is None


def test_an_order_is_answered_byte_for_byte_as_its_output_schema_writes_it(app, client, keys, shop):
    """The view writes its answer without a pass through ``OrderOut``: it must be what the schema wrote."""
    headers = bearer(keys["server"])
    body = {**ORDER, "delivered_at": "2011-12-03T09:30:00+01:00"}
    for status in (201, 200):  # created, then the same order again
        resp = client.post("/v1/orders", json=body, headers=headers)
        assert resp.status_code == status
        expected = OrderOut().dump(
            {
                "order_id": "D-1",
                "customer_id": "C1",
                "kind": "sale",
                "lines": 1,
                "created": status == 201,
                "customer_created": False,  # C1 is a customer of the shop
                "delivered_at": dt.datetime(2011, 12, 3, 8, 30),
            }
        )
        assert resp.mimetype == "application/json"
        with app.app_context():  # as apiflask's output wrapper wrote it: jsonify of the schema's dump
            assert resp.get_data() == jsonify(expected).get_data()
