"""What the read path does once instead of per request keeps its answers: the ETag of a cacheable list,
its Date, the latency histogram of each route (api/storefront.py, api/observe.py)."""

from __future__ import annotations

import email.utils
import time

from prometheus_client import REGISTRY

from api import storefront
from tests.api.helpers import bearer


def test_a_lists_etag_is_kept_only_while_its_items_are_the_same(client, keys, shop):
    server = bearer(keys["server"])
    path = "/v1/new-arrivals?n=3"
    first = client.get(path, headers=server)
    assert first.status_code == 200 and first.headers["ETag"].startswith('W/"')
    assert client.get(path, headers=server).headers["ETag"] == first.headers["ETag"]
    storefront._ETAGS.clear()  # computed again from the items: the same value
    assert client.get(path, headers=server).headers["ETag"] == first.headers["ETag"]
    # another query string, another ETag (request.full_path is part of it)
    assert client.get("/v1/new-arrivals?n=3&n=4", headers=server).headers["ETag"] != first.headers["ETag"]
    top = first.get_json()["items"][0]
    put = client.put(f"/v1/products/{top['sku']}", json={"price": top["price"] + 1}, headers=server)
    assert put.status_code == 200
    changed = client.get(path, headers={**server, "If-None-Match": first.headers["ETag"]})
    assert changed.status_code == 200 and changed.headers["ETag"] != first.headers["ETag"]
    assert changed.get_json()["items"][0]["price"] == top["price"] + 1


def test_a_cacheable_lists_date_is_now(client, keys, shop):
    for path in ("/v1/bestsellers?n=2", "/v1/new-arrivals?n=2"):
        before = time.time()
        resp = client.get(path, headers=bearer(keys["server"]))
        after = time.time()
        date = email.utils.parsedate_to_datetime(resp.headers["Date"]).timestamp()
        assert int(before) <= date <= after, path


def test_each_route_method_and_status_has_its_own_latency_count(client, keys, shop):
    def count(route: str, status: str) -> float:
        labels = {"route": route, "method": "GET", "status": status}
        return REGISTRY.get_sample_value("giftrec_http_request_duration_seconds_count", labels) or 0.0

    server = bearer(keys["server"])
    cases = [("storefront.similar", "200"), ("storefront.similar", "404"), ("storefront.similar", "422")]
    before = [count(*case) for case in cases]
    for path in ("MUG-1/similar?n=1", "NOPE/similar", "MUG-1/similar?n=1", "MUG-1/similar?n=0"):
        client.get(f"/v1/products/{path}", headers=server)
    assert [count(*case) - b for case, b in zip(cases, before, strict=True)] == [2, 1, 1]
