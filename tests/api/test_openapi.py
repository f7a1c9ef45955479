"""GET /v1/openapi.json: an OpenAPI 3 document generated from the schemas that validate requests."""

from __future__ import annotations

import re
from urllib.parse import urljoin

from tests.api.helpers import ITEM_FIELDS

ENDPOINTS = {
    ("/v1/customers/{customer_id}/recommendations", "get"),
    ("/v1/products/{sku}/similar", "get"),
    ("/v1/bestsellers", "get"),
    ("/v1/new-arrivals", "get"),
    ("/v1/events", "post"),
    ("/v1/orders", "post"),
    ("/v1/products/{sku}", "put"),
    ("/v1/customers/{customer_id}", "delete"),
    ("/v1/selections/{selection_id}", "get"),
    ("/v1/customers/{customer_id}/selections", "get"),
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
