"""POST /v1/events: all-or-nothing batches, idempotency, the item at fault, limits, widget rules."""

from __future__ import annotations

from sqlalchemy import func, select

from domain.models import Event
from tests.api.helpers import SHOP, bearer, signed


def _count(app) -> int:
    with app.extensions["giftrec"].sessions() as session:
        return session.scalar(select(func.count()).select_from(Event))


def _batch(n: int, start: int = 0, **extra) -> dict:
    kinds = ("view", "cart", "click", "purchase")
    return {
        "events": [
            {"id": f"ev-{i}", "type": kinds[i % 4], "sku": "MUG-1", "customer_id": "C1", **extra}
            for i in range(start, start + n)
        ]
    }


def test_a_batch_is_recorded_and_a_repeated_batch_adds_nothing(app, client, keys, shop):
    first = client.post("/v1/events", json=_batch(50), headers=bearer(keys["server"]))
    assert first.status_code == 200, first.json
    assert first.json == {"recorded": 50, "duplicates": 0}
    again = client.post("/v1/events", json=_batch(50), headers=bearer(keys["server"]))
    assert again.json == {"recorded": 0, "duplicates": 50}
    overlapping = client.post("/v1/events", json=_batch(20, start=40), headers=bearer(keys["server"]))
    assert overlapping.json == {"recorded": 10, "duplicates": 10}
    assert _count(app) == 60


def test_an_unknown_product_names_the_item_and_writes_nothing(app, client, keys, shop):
    batch = _batch(10)
    batch["events"][3]["sku"] = "NO-SUCH-SKU"
    resp = client.post("/v1/events", json=batch, headers=bearer(keys["server"]))
    assert resp.status_code == 422
    assert resp.mimetype == "application/problem+json"
    assert resp.json["errors"] == [{"field": "events[3].sku", "message": "unknown product 'NO-SUCH-SKU'"}]
    assert _count(app) == 0


def test_an_unknown_customer_is_422_not_500(app, client, keys, shop):
    batch = _batch(5)
    batch["events"][4]["customer_id"] = "WHO"
    resp = client.post("/v1/events", json=batch, headers=bearer(keys["server"]))
    assert resp.status_code == 422
    assert resp.json["errors"][0]["field"] == "events[4].customer_id"
    assert _count(app) == 0


def test_a_wrong_type_names_the_item(app, client, keys, shop):
    batch = _batch(5)
    batch["events"][2]["quantity"] = "lots"
    resp = client.post("/v1/events", json=batch, headers=bearer(keys["server"]))
    assert resp.status_code == 422
    assert resp.json["errors"] == [{"field": "events[2].quantity", "message": "Not a valid integer."}]
    assert _count(app) == 0


def test_an_unknown_event_type_is_refused(client, keys, shop):
    batch = _batch(2)
    batch["events"][1]["type"] = "wishlist"
    resp = client.post("/v1/events", json=batch, headers=bearer(keys["server"]))
    assert resp.status_code == 422
    assert resp.json["errors"][0]["field"] == "events[1].type"


def test_the_same_id_twice_in_one_batch_is_refused(app, client, keys, shop):
    batch = _batch(3)
    batch["events"][2]["id"] = "ev-0"
    resp = client.post("/v1/events", json=batch, headers=bearer(keys["server"]))
    assert resp.status_code == 422
    assert resp.json["errors"][0] == {"field": "events[2].id", "message": "repeats the id of events[0]"}
    assert _count(app) == 0


def test_malformed_json_is_400_problem(client, keys):
    resp = client.post(
        "/v1/events",
        data='{"events": [',
        headers={**bearer(keys["server"]), "Content-Type": "application/json"},
    )
    assert resp.status_code == 400
    assert resp.mimetype == "application/problem+json"


def test_a_body_that_is_not_an_object_is_refused(client, keys):
    for body in ([], "text", 7, {"events": "all"}, {"events": []}, {}):
        resp = client.post("/v1/events", json=body, headers=bearer(keys["server"]))
        assert resp.status_code in (400, 422), (body, resp.json)
        assert resp.mimetype == "application/problem+json"


def test_an_oversized_batch_is_413_and_writes_nothing(app, client, keys, shop):
    limit = app.extensions["giftrec"].settings.api.max_batch
    resp = client.post("/v1/events", json=_batch(limit + 1), headers=bearer(keys["server"]))
    assert resp.status_code == 413
    assert resp.json["errors"][0]["field"] == "events"
    assert _count(app) == 0
    full = client.post("/v1/events", json=_batch(limit), headers=bearer(keys["server"]))
    assert full.json == {"recorded": limit, "duplicates": 0}


def test_widget_keys_send_views_and_clicks_from_their_origin_only(app, client, keys, shop):
    widget = {"X-Api-Key": keys["widget"], "Origin": SHOP}
    click = {
        "events": [
            {
                "id": "c-1",
                "type": "click",
                "sku": "VASE-2",
                "anonymous_id": "browser-1",
                "recommendation_id": "rec-123",
            }
        ]
    }
    ok = client.post("/v1/events", json=click, headers=widget)
    assert ok.status_code == 200, ok.json
    assert ok.headers["Access-Control-Allow-Origin"] == SHOP
    purchase = {"events": [{"id": "p-1", "type": "purchase", "sku": "VASE-2", "customer_id": "C1"}]}
    as_c1 = {**widget, **signed(app, keys["widget"], "C1")}
    assert client.post("/v1/events", json=purchase, headers=as_c1).status_code == 422
    elsewhere = client.post("/v1/events", json=click, headers={**widget, "Origin": "https://evil.example"})
    assert elsewhere.status_code == 403
    assert elsewhere.json["errors"][0]["field"] == "Origin"
    with app.extensions["giftrec"].sessions() as session:
        event = session.scalars(select(Event)).one()
    assert (event.kind, event.source, event.recommendation_id) == ("click", "widget", "rec-123")


def test_email_keys_cannot_write_events(client, keys, shop):
    resp = client.post("/v1/events", json=_batch(1), headers=bearer(keys["email"]))
    assert resp.status_code == 403


def test_a_huge_body_is_413_before_it_is_parsed(app, client, keys, shop):
    limit = app.extensions["giftrec"].settings.api.max_batch
    body = '{"events": [' + ",".join(['{"id": "' + "x" * 3000 + '"}'] * limit) + "]}"
    resp = client.post(
        "/v1/events", data=body, headers={**bearer(keys["server"]), "Content-Type": "application/json"}
    )
    assert resp.status_code == 413 and resp.mimetype == "application/problem+json"
    assert _count(app) == 0


def test_concurrent_twin_batches_record_each_event_once(app, keys, shop):
    """Regression guard: two storefront servers retrying the same batch at once must not double-write,
    and the loser must get a clean answer (duplicates or 409), never a 500."""
    import threading

    statuses: list[int] = []
    barrier = threading.Barrier(4)

    def post() -> None:
        client = app.test_client()
        barrier.wait()
        resp = client.post("/v1/events", json=_batch(200), headers=bearer(keys["server"]))
        statuses.append(resp.status_code)

    threads = [threading.Thread(target=post) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 200 in statuses and set(statuses) <= {200, 409}, statuses
    assert _count(app) == 200


def test_a_widget_writes_for_the_signed_customer_only(app, client, keys, shop):
    """Regression: a widget key (public, in the page source) posted view and click events for any customer,
    which shifted their picks and the training data. Refused events record nothing."""
    widget = {"X-Api-Key": keys["widget"], "Origin": SHOP}

    def view(customer: str, n: int) -> dict:  # type: ignore[type-arg]
        return {
            "events": [{"id": f"v-{customer}-{n}", "type": "view", "sku": "VASE-2", "customer_id": customer}]
        }

    as_c1 = {**widget, **signed(app, keys["widget"], "C1")}
    missing = client.post("/v1/events", json=view("C1", 1), headers=widget)
    assert missing.status_code == 401 and missing.json["errors"][0]["field"] == "X-Customer-Signature"
    other = client.post("/v1/events", json=view("C2", 2), headers=as_c1)
    assert other.status_code == 403 and "C2" in other.json["detail"]
    both = {"events": view("C1", 3)["events"] + view("C2", 4)["events"]}
    assert client.post("/v1/events", json=both, headers=as_c1).status_code == 403
    assert _count(app) == 0, "nothing recorded for a refused batch"
    own = client.post("/v1/events", json=view("C1", 5), headers=as_c1)
    assert own.status_code == 200 and own.json["recorded"] == 1
    assert client.post("/v1/events", json=view("C2", 6), headers=bearer(keys["server"])).status_code == 200
