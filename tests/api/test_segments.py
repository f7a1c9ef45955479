"""GET /v1/customers/{id}/segment: server and admin keys only, the newest snapshot and its moves, problems."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from config import RfmSettings
from domain.db import session_scope
from domain.lifecycle.snapshots import take_snapshot
from domain.models import Customer, Order, OrderLine, Product
from tests.api.helpers import SHOP, bearer

DAY1, DAY2 = dt.date(2011, 12, 1), dt.date(2011, 12, 8)
FIXED = RfmSettings(recency_scoring="fixed", frequency_scoring="fixed", monetary_scoring="fixed")


@pytest.fixture
def snapshots(app) -> None:  # type: ignore[no-untyped-def]
    """C1 buys once (new), then again a week later (potential loyalist); C2 bought long ago; C3 never."""
    sessions = app.extensions["giftrec"].sessions
    with session_scope(sessions) as session:
        product = Product(sku="P", title="A gift", price=Decimal("40.00"))
        c1, c2 = Customer(external_id="C1"), Customer(external_id="C2")
        session.add_all([product, c1, c2, Customer(external_id="C3")])
        session.flush()
        for n, (customer, at) in enumerate(((c1, "2011-12-01"), (c2, "2010-10-01"), (c1, "2011-12-08"))):
            order = Order(
                external_id=f"O{n}", customer_id=customer.id, ordered_at=dt.datetime.fromisoformat(at)
            )
            order.lines.append(
                OrderLine(line_no=1, product_id=product.id, quantity=1, unit_price=Decimal(40))
            )
            session.add(order)
    for day in (DAY1, DAY2):
        with session_scope(sessions) as session:
            take_snapshot(session, FIXED, day)


def test_a_server_key_gets_segment_scores_value_and_moves(client, keys, snapshots):
    resp = client.get("/v1/customers/C1/segment", headers=bearer(keys["server"]))
    assert resp.status_code == 200, resp.json
    body = resp.json
    assert body["customer_id"] == "C1"
    assert (body["taken_on"], body["as_of"], body["segment_since"]) == ("2011-12-08",) * 3
    assert body["segment"] == "potential_loyalist"
    assert body["scores"] == {"r": 5, "f": 2, "m": 1}
    assert (body["recency_days"], body["frequency"], body["monetary"]) == (0, 2, 80.0)
    assert body["horizon_days"] == 365
    assert set(body) >= {"expected_purchases", "clv"}
    assert body["moves"] == [{"on": "2011-12-08", "from": "new", "to": "potential_loyalist"}]


def test_an_admin_key_may_read_it_too(client, keys, snapshots):
    resp = client.get("/v1/customers/C2/segment", headers=bearer(keys["admin"]))
    assert resp.status_code == 200
    assert resp.json["segment"] == "lost" and resp.json["moves"] == []


@pytest.mark.parametrize("scope", ["widget", "email"])
def test_widget_and_email_keys_are_refused(client, keys, snapshots, scope):
    resp = client.get("/v1/customers/C1/segment", headers={**bearer(keys[scope]), "Origin": SHOP})
    assert resp.status_code == 403
    assert resp.mimetype == "application/problem+json"
    assert f"a {scope} key cannot call this endpoint" in resp.json["detail"]


def test_problems_for_no_key_unknown_customer_and_no_snapshot(client, keys, snapshots):
    assert client.get("/v1/customers/C1/segment").status_code == 401
    for customer, detail in (("nobody", "customer nobody not found"), ("C3", "RFM snapshot of customer C3")):
        resp = client.get(f"/v1/customers/{customer}/segment", headers=bearer(keys["server"]))
        assert resp.status_code == 404
        assert resp.mimetype == "application/problem+json"
        assert detail in resp.json["detail"]


def test_the_endpoint_is_in_the_openapi_document(client):
    spec = client.get("/v1/openapi.json").json
    operation = spec["paths"]["/v1/customers/{customer_id}/segment"]["get"]
    assert {"200", "401", "403", "404"} <= set(operation["responses"])
