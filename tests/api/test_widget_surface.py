"""What a public widget key can reach: every field of every response, against an allowed list.

A widget key sits in the shop's page source. This test lists the operations a widget key may call (from
the scopes each view requires) and every field their documented responses can carry, and fails when one
appears that is not on the list below: a new field reachable by anyone must be looked at first.
"""

from __future__ import annotations

from typing import Any

from tests.api.helpers import ITEM_FIELDS, SHOP, bearer, signed

#: operation -> every response field a widget key may see (2xx bodies; problems are the same for all).
#: An item list: the items and the version of the model that ranked them (nothing about the customer).
ITEM_LIST = {"items", "model_version", *ITEM_FIELDS}
ALLOWED: dict[str, set[str]] = {
    "GET /v1/customers/{customer_id}/recommendations": ITEM_LIST,
    "GET /v1/products/{sku}/similar": ITEM_LIST,
    "GET /v1/bestsellers": ITEM_LIST,
    "GET /v1/new-arrivals": ITEM_LIST,
    "GET /v1/sessions/{anonymous_id}/recommendations": ITEM_LIST,
    "POST /v1/events": {"recorded", "duplicates"},
}
PROBLEM_FIELDS = {"type", "title", "status", "detail", "errors", "field", "message"}


def _fields(schema: dict[str, Any], components: dict[str, Any], seen: set[str] | None = None) -> set[str]:
    seen = set() if seen is None else seen
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        if name in seen:
            return set()
        return _fields(components[name], components, seen | {name})
    out = set(schema.get("properties", {}))
    subs = list(schema.get("properties", {}).values())
    if isinstance(schema.get("items"), dict):
        subs.append(schema["items"])
    for sub in subs:
        out |= _fields(sub, components, seen)
    for key in ("allOf", "anyOf", "oneOf"):
        for sub in schema.get(key, []):
            out |= _fields(sub, components, seen)
    return out


def _widget_operations(app) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """'METHOD /path' -> endpoint, for every view whose required scopes include widget."""
    ops = {}
    for rule in app.url_map.iter_rules():
        scopes = getattr(app.view_functions[rule.endpoint], "giftrec_scopes", ())
        if "widget" not in scopes:
            continue
        path = rule.rule.replace("<", "{").replace(">", "}")
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            ops[f"{method} {path}"] = rule.endpoint
    return ops


def test_every_field_a_widget_key_can_reach_is_on_the_allowed_list(app, client):
    spec = client.get("/v1/openapi.json").json
    components = spec["components"]["schemas"]
    reachable = _widget_operations(app)
    assert set(reachable) == set(ALLOWED), "an operation open to widget keys was added or removed"
    for op in reachable:
        method, path = op.split(" ", 1)
        responses = spec["paths"][path][method.lower()]["responses"]
        for status, response in responses.items():
            for content in response.get("content", {}).values():
                fields = _fields(content["schema"], components)
                allowed = ALLOWED[op] if status.startswith("2") else PROBLEM_FIELDS
                assert fields <= allowed, (
                    f"{op} {status}: {sorted(fields - allowed)} reachable by widget keys"
                )


def _keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value).union(*(_keys(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_keys(v) for v in value))
    return set()


def test_what_a_widget_key_gets_on_the_real_sample_is_on_the_list(app, client, keys, trained):
    widget = {"X-Api-Key": keys["widget"], "Origin": SHOP}
    sku = client.get("/v1/bestsellers?n=1", headers=widget).json["items"][0]["sku"]
    answers = {
        "GET /v1/customers/{customer_id}/recommendations": client.get(
            f"/v1/customers/{trained}/recommendations?n=5",
            headers={**widget, **signed(app, keys["widget"], trained)},
        ),
        "GET /v1/products/{sku}/similar": client.get(f"/v1/products/{sku}/similar?n=5", headers=widget),
        "GET /v1/bestsellers": client.get("/v1/bestsellers?n=5", headers=widget),
        "GET /v1/new-arrivals": client.get("/v1/new-arrivals?n=5", headers=widget),
    }
    for op, resp in answers.items():
        assert resp.status_code == 200, (op, resp.json)
        assert _keys(resp.json) <= ALLOWED[op], op
    # the customer's own picks without the shop's signature: nothing personal, not even whether they exist
    for who in (trained, "NOBODY"):
        refused = client.get(f"/v1/customers/{who}/recommendations", headers=widget)
        assert refused.status_code == 401 and _keys(refused.json) <= PROBLEM_FIELDS
    assert client.get(f"/v1/customers/{trained}/next-purchase", headers=widget).status_code == 403
    assert (
        client.get(f"/v1/customers/{trained}/next-purchase", headers=bearer(keys["server"])).status_code
        == 200
    )


def test_an_anonymous_session_gets_picks_from_its_own_views(app, client, keys, trained):
    """A widget key needs no signature for a browser session's picks: they come from that session's own
    events, never from a customer's."""
    widget = {"X-Api-Key": keys["widget"], "Origin": SHOP}
    fresh = client.get("/v1/sessions/browser-new/recommendations?n=5", headers=widget)
    assert fresh.status_code == 200
    assert {item["source"] for item in fresh.json["items"]} <= {"bestsellers", "new_arrivals"}
    assert _keys(fresh.json) <= ALLOWED["GET /v1/sessions/{anonymous_id}/recommendations"]
    server = bearer(keys["server"])
    mine = client.get(f"/v1/customers/{trained}/recommendations?n=3", headers=server).json["items"]
    viewed = [item["sku"] for item in mine]
    events = [
        {"id": f"s-{i}", "type": "view", "sku": sku, "anonymous_id": "browser-7"}
        for i, sku in enumerate(viewed)
    ]
    assert client.post("/v1/events", json={"events": events}, headers=widget).status_code == 200
    picks = client.get("/v1/sessions/browser-7/recommendations?n=5", headers=widget)
    assert picks.status_code == 200, picks.json
    items = picks.json["items"]
    assert items[0]["source"] == "collaborative" and items[0]["explanation"].startswith(
        "Because you looked at"
    )
    assert len(items) == 5
    other = client.get("/v1/sessions/browser-8/recommendations?n=5", headers=widget).json["items"]
    assert [i["sku"] for i in other] != [i["sku"] for i in items], "another session's views are not used"
