"""GET /v1/customers/{id}/next-purchase on real UCI rows: shape, keys, errors, OpenAPI."""

# ruff: noqa: F811  (pytest fixtures imported from tests.domain.serving.fixtures are redefined as arguments)

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select

from api.cli import cli
from api.next_purchase import next_purchase_service
from domain.db import session_scope
from domain.models import Customer, Order
from tests.api.helpers import SHOP, bearer
from tests.domain.serving.fixtures import bought_skus, imported, imported_rows, sample_slice  # noqa: F401

ITEM_FIELDS = {
    "sku",
    "title",
    "price",
    "currency",
    "url",
    "image_url",
    "is_new",
    "score",
    "expected_on",
    "expected_in_days",
    "probability",
    "purchases",
    "last_bought_on",
}


def _regular(app) -> tuple[str, set[str], dt.date]:  # type: ignore[no-untyped-def]
    """The slice's customer with the most purchase days, the SKUs they bought, and the newest order day."""
    with app.extensions["giftrec"].sessions() as session:
        customer = session.execute(
            select(Customer.external_id)
            .join(Order, Order.customer_id == Customer.id)
            .where(Order.kind == "sale")
            .group_by(Customer.external_id)
            .order_by(func.count(func.distinct(func.date(Order.ordered_at))).desc(), Customer.external_id)
            .limit(1)
        ).scalar_one()
        skus = bought_skus(session, customer)
        newest = session.scalar(select(func.max(Order.ordered_at)))
    return customer, skus, newest.date()


def _learned(app) -> None:  # type: ignore[no-untyped-def]
    """`giftrec train --next-purchase`, then this process's look for it, now (until a ranker is trained
    answers come from the timing model; the web process looks every model.reload_interval seconds)."""
    trained = app.test_cli_runner().invoke(cli, args=["train", "--next-purchase"])
    assert trained.exit_code == 0, trained.output
    with app.app_context():
        next_purchase_service().refresh()


def test_next_purchase_of_a_regular_customer(app, client, keys, imported):
    customer, bought, newest = _regular(app)
    _learned(app)
    resp = client.get(f"/v1/customers/{customer}/next-purchase?n=5", headers=bearer(keys["server"]))
    assert resp.status_code == 200, resp.json
    body = resp.json
    assert body["customer_id"] == customer
    assert body["as_of"] == newest.isoformat()  # historical data: today is the newest order's day
    assert body["horizon_days"] == 30
    assert 0 < body["p_alive"] <= 1
    assert 0 < body["probability_30d"] <= body["p_alive"]
    assert body["expected_purchases_90d"] > body["expected_purchases_30d"] > 0
    assert body["purchase_days"] >= 2 and body["note"] is None
    assert body["next_purchase_on"] >= body["as_of"]
    items = body["items"]
    assert 1 <= len(items) <= 5
    assert all(set(item) == ITEM_FIELDS for item in items)
    # items bought before carry their timing; new ones (the ranker's collaborative candidates) have none
    again = [item for item in items if not item["is_new"]]
    new = [item for item in items if item["is_new"]]
    assert {item["sku"] for item in again} <= bought and not {item["sku"] for item in new} & bought
    assert all(item["expected_on"] >= body["as_of"] >= item["last_bought_on"] for item in again)
    assert all(0 < i["probability"] <= 1 for i in again)
    assert all(i["expected_on"] is i["last_bought_on"] is i["probability"] is None for i in new)
    assert all(i["purchases"] == 0 for i in new)
    # ranked by the served ranking (tests/domain/serving/test_next_purchase.py checks the order)
    scores = [i["score"] for i in items]
    assert scores == sorted(scores, reverse=True) and all(0 < s <= 1 for s in scores)

    # Regression: the public widget key read any customer's purchase counts, dates and p_alive. The
    # purchase history stays with the shop's backend (server keys).
    widget = client.get(
        f"/v1/customers/{customer}/next-purchase?n=1", headers={**bearer(keys["widget"]), "Origin": SHOP}
    )
    assert widget.status_code == 403 and widget.mimetype == "application/problem+json"
    assert "items" not in widget.json and "p_alive" not in widget.json


def test_a_hidden_product_is_no_longer_expected(app, client, keys, imported):
    customer, _, _ = _regular(app)
    headers = bearer(keys["server"])
    first = client.get(f"/v1/customers/{customer}/next-purchase?n=3", headers=headers).json["items"][0]["sku"]
    put = client.put(f"/v1/products/{first}", json={"in_stock": False}, headers=headers)
    assert put.status_code == 200
    skus = [
        i["sku"] for i in client.get(f"/v1/customers/{customer}/next-purchase", headers=headers).json["items"]
    ]
    assert first not in skus


def test_a_customer_without_purchases_gets_nulls_not_an_error(app, client, keys, imported):
    with session_scope(app.extensions["giftrec"].sessions) as session:
        session.add(Customer(external_id="NEW-1"))
    body = client.get("/v1/customers/NEW-1/next-purchase", headers=bearer(keys["server"])).json
    assert body["p_alive"] is None and body["expected_purchases_30d"] is None
    assert body["items"] == [] and body["note"] == "no purchases yet"


def test_errors_are_problems(app, client, keys, imported):
    customer, _, _ = _regular(app)
    headers = bearer(keys["server"])
    missing = client.get("/v1/customers/nobody/next-purchase", headers=headers)
    assert missing.status_code == 404
    assert missing.mimetype == "application/problem+json"
    for bad in ("0", "101", "many"):
        resp = client.get(f"/v1/customers/{customer}/next-purchase?n={bad}", headers=headers)
        assert resp.status_code == 422, bad
        assert resp.mimetype == "application/problem+json"
        assert [e["field"] for e in resp.json["errors"]] == ["n"]
    assert client.get(f"/v1/customers/{customer}/next-purchase").status_code == 401
    assert (
        client.get(f"/v1/customers/{customer}/next-purchase", headers=bearer(keys["email"])).status_code
        == 403
    )
    assert (
        client.get(f"/v1/customers/{customer}/next-purchase", headers=bearer(keys["admin"])).status_code
        == 200
    )


def test_the_endpoint_is_documented(client):
    spec = client.get("/v1/openapi.json").json
    op = spec["paths"]["/v1/customers/{customer_id}/next-purchase"]["get"]
    assert op["security"]
    assert {"200", "401", "403", "404", "422", "429"} <= set(op["responses"])
    assert {p["name"] for p in op["parameters"]} >= {"customer_id", "n"}
    out = spec["components"]["schemas"]["NextPurchaseOut"]["properties"]
    assert {"as_of", "p_alive", "expected_purchases_30d", "expected_purchases_90d", "items"} <= set(out)
    assert ITEM_FIELDS <= set(spec["components"]["schemas"]["NextPurchaseItemOut"]["properties"])
