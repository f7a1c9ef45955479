"""GET /v1/openapi.json: an OpenAPI 3 document generated from the schemas that validate requests."""

from __future__ import annotations

import re
from urllib.parse import urljoin

import jsonschema
import pytest
from openapi_spec_validator import validate

from tests.api.helpers import ITEM_FIELDS

ENDPOINTS = {
    ("/v1/customers/{customer_id}/recommendations", "get"),
    ("/v1/products/{sku}/similar", "get"),
    ("/v1/bestsellers", "get"),
    ("/v1/new-arrivals", "get"),
    ("/v1/events", "post"),
    ("/v1/orders", "post"),
    ("/v1/orders/{order_id}", "patch"),
    ("/v1/products/{sku}", "put"),
    ("/v1/customers/{customer_id}", "delete"),
    ("/v1/selections/{selection_id}", "get"),
    ("/v1/customers/{customer_id}/selections", "get"),
    ("/v1/customers/{customer_id}/segment", "get"),
}


def test_the_spec_lists_every_endpoint_with_security(client):
    resp = client.get("/v1/openapi.json")
    assert resp.status_code == 200
    spec = resp.json
    assert spec["openapi"].startswith("3.")
    found = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    assert ENDPOINTS <= found
    assert set(spec["components"]["securitySchemes"]) == {"ApiKey", "Bearer"}
    for path, method in ENDPOINTS:
        assert spec["paths"][path][method]["security"], (path, method)


def test_the_spec_is_built_from_the_validating_schemas(client):
    spec = client.get("/v1/openapi.json").json
    schemas = spec["components"]["schemas"]
    event = schemas["EventIn"]
    assert set(event["required"]) == {"id", "type", "sku"}
    assert event["properties"]["type"]["enum"] == ["view", "cart", "purchase", "click"]
    params = {
        p["name"]: p
        for p in spec["paths"]["/v1/customers/{customer_id}/recommendations"]["get"]["parameters"]
    }
    assert {"n", "category", "min_price", "max_price", "exclude"} <= set(params)
    assert params["n"]["schema"]["maximum"] == 100
    item = schemas["Item"]["properties"]
    assert ITEM_FIELDS <= set(item)
    responses = spec["paths"]["/v1/events"]["post"]["responses"]
    assert {"200", "401", "403", "413", "422", "429"} <= set(responses)


def test_the_hot_views_keep_their_documented_shapes(client):
    """The recommendations view skips apiflask's wrappers at run time; its document must not lose them."""
    spec = client.get("/v1/openapi.json").json
    op = spec["paths"]["/v1/customers/{customer_id}/recommendations"]["get"]
    ok = op["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/ItemList"}
    assert spec["components"]["schemas"]["ItemList"]["properties"]["items"]["items"] == {
        "$ref": "#/components/schemas/Item"
    }
    assert {"401", "403", "404", "429"} <= set(op["responses"])
    assert {p["name"] for p in op["parameters"] if p["in"] == "query"} == {
        "customer_signature",
        "n",
        "category",
        "min_price",
        "max_price",
        "exclude",
    }


def test_the_docs_page_is_served(client):
    resp = client.get("/v1/docs")
    assert resp.status_code == 200
    assert b"openapi.json" in resp.data


def test_the_docs_page_loads_swagger_ui_from_the_app(client):
    """Regression: /v1/docs loaded Swagger UI from a CDN, and showed nothing offline (issue 12)."""
    resp = client.get("/v1/docs")
    html = resp.data.decode()
    refs = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert {ref.rsplit("/", 1)[-1] for ref in refs} >= {
        "swagger-ui.css",
        "swagger-ui-bundle.js",
        "swagger-ui-standalone-preset.js",
    }
    for ref in refs:
        assert "//" not in ref, ref
        with client.get(urljoin("/v1/docs", ref)) as asset:  # closes the file sent
            assert asset.status_code == 200, ref
            assert "immutable" in asset.headers["Cache-Control"]
    policy = resp.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'self' 'sha256-" in policy


def test_the_document_is_a_valid_openapi_3_1_document(client):
    spec = client.get("/v1/openapi.json").json
    assert spec["openapi"] == "3.1.0"
    validate(spec)  # raises with the first error
    assert len({tag["name"] for tag in spec["tags"]}) == len(spec["tags"])


def _walk(node, path=()):  # type: ignore[no-untyped-def]
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _walk(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, (*path, i))


def test_bounds_are_numbers(client):
    """Regression: a Decimal field's bound was written as a string (`minimum: "0.00"`) (issue 12)."""
    spec = client.get("/v1/openapi.json").json
    bounds = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")
    for path, node in _walk(spec):
        for key in bounds:
            if key in node and path[-1:] != ("properties",):
                value = node[key]
                assert isinstance(value, int | float) and not isinstance(value, bool), (path, key, value)
    price = spec["components"]["schemas"]["OrderLineIn"]["properties"]["unit_price"]
    assert price["type"] == "number" and price["minimum"] == 0.01


def test_every_error_response_is_documented_as_problem_json(client):
    spec = client.get("/v1/openapi.json").json
    problem = {"$ref": "#/components/schemas/Problem"}
    seen = 0
    for ops in spec["paths"].values():
        for op in ops.values():
            for status, response in op["responses"].items():
                if int(status) >= 400:
                    assert response["content"] == {"application/problem+json": {"schema": problem}}
                    seen += 1
                elif status in ("204", "304"):
                    assert "content" not in response
    assert seen > 40
    assert "HTTPError" not in spec["components"]["schemas"]


def test_error_responses_match_the_problem_schema(client, keys):
    spec = client.get("/v1/openapi.json").json
    problem = spec["components"]["schemas"]["Problem"]
    responses = [
        client.get("/v1/bestsellers"),  # 401
        client.get("/v1/bestsellers?n=0", headers={"X-Api-Key": keys["server"]}),  # 422
        client.post("/v1/orders", json={}, headers={"X-Api-Key": keys["widget"]}),  # 403
        client.post("/v1/events", data="{", headers={"X-Api-Key": keys["server"]}),  # 400 or 422
    ]
    for resp in responses:
        assert resp.status_code >= 400 and resp.mimetype == "application/problem+json"
        jsonschema.validate(resp.json, problem)


def test_rules_across_fields_are_in_the_schema_and_enforced(client, keys, shop):
    spec = client.get("/v1/openapi.json").json
    event = spec["components"]["schemas"]["EventIn"]
    assert event["anyOf"] == [{"required": ["customer_id"]}, {"required": ["anonymous_id"]}]
    nobody = {"id": "e1", "type": "view", "sku": "MUG-1"}
    resp = client.post("/v1/events", json={"events": [nobody]}, headers={"X-Api-Key": keys["server"]})
    assert resp.status_code == 422
    assert resp.json["errors"][0]["field"] == "events[0].customer_id"
    for body in ({**nobody, "customer_id": "C1"}, {**nobody, "anonymous_id": "browser-1"}):
        jsonschema.validate(body, event)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(nobody, event)
