"""The OpenAPI document's last pass: what apiflask does not write from the views and schemas by itself."""

from __future__ import annotations

import copy
import json
from typing import Any

from apiflask import APIFlask

from api.errors import PROBLEM
from api.schemas import PROBLEM_SCHEMA, SCHEMA_RULES
from api.selections import MAX_SELECTION_ID

OPENAPI_VERSION = "3.1.0"
#: Responses without a body (RFC 9110): apiflask gives every status given by description a JSON placeholder.
NO_BODY = ("204", "304")
PROBLEM_REF = "#/components/schemas/Problem"
#: Path parameters by name: apiflask writes only their type, from the URL rule's converter. Customer ids
#: and SKUs are at most 64 characters (the columns they are stored in); a longer one is not found (422 for
#: the SKU of a product being created).
PATH_PARAMETERS: dict[str, dict[str, Any]] = {
    "customer_id": {
        "description": "the shop's customer id",
        "schema": {"type": "string", "minLength": 1, "maxLength": 64},
    },
    "sku": {
        "description": "the product's SKU",
        "schema": {"type": "string", "minLength": 1, "maxLength": 64},
    },
    "order_id": {
        "description": "the shop's order id",
        "schema": {"type": "string", "minLength": 1, "maxLength": 64},
    },
    "selection_id": {"schema": {"type": "integer", "minimum": 1, "maximum": MAX_SELECTION_ID}},
    "anonymous_id": {
        "description": "the browser's id before sign-in, as sent in its events",
        "schema": {"type": "string", "minLength": 1, "maxLength": 100},
    },
}
#: Headers of error responses that a client acts on.
ERROR_HEADERS: dict[str, dict[str, Any]] = {
    "401": {
        "WWW-Authenticate": {"description": "the scheme to use", "schema": {"type": "string"}},
    },
    "429": {
        "Retry-After": {
            "description": "seconds until the key's window ends",
            "schema": {"type": "integer", "minimum": 1},
        },
    },
}


def finish(spec: dict[str, Any]) -> dict[str, Any]:
    """Every error response is a problem (``application/problem+json``, one ``Problem`` schema, as
    :func:`api.errors.problem` sends it); 204 and 304 have no body; path parameters get their bounds
    (:data:`PATH_PARAMETERS`) and schemas the rules across fields of :data:`api.schemas.SCHEMA_RULES`; a
    tag shared by two blueprints is listed once."""
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for path_item in spec.get("paths", {}).values():
        for operation in path_item.values():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path" and parameter["name"] in PATH_PARAMETERS:
                    parameter.update(copy.deepcopy(PATH_PARAMETERS[parameter["name"]]))
            for status, response in operation.get("responses", {}).items():
                status = str(status)
                if status in NO_BODY:
                    response.pop("content", None)
                elif status[0] in "45":
                    response["content"] = {PROBLEM: {"schema": {"$ref": PROBLEM_REF}}}
                    if status in ERROR_HEADERS:
                        response.setdefault("headers", {}).update(copy.deepcopy(ERROR_HEADERS[status]))
    schemas["Problem"] = copy.deepcopy(PROBLEM_SCHEMA)
    # apiflask's error schemas (HTTP_ERROR_SCHEMA, VALIDATION_ERROR_SCHEMA), now that Problem replaces them
    for name in ("HTTPError", "ValidationError"):
        if name in schemas and f'"#/components/schemas/{name}"' not in json.dumps(spec["paths"]):
            del schemas[name]
    for name, rules in SCHEMA_RULES.items():
        schemas[name].update(copy.deepcopy(rules))
    tags: dict[str, dict[str, Any]] = {}
    for tag in spec.get("tags", []):
        tags.setdefault(tag["name"], {}).update(tag)
    if tags:
        spec["tags"] = list(tags.values())
    return spec


def _processor(spec: dict[Any, Any] | str) -> dict[Any, Any] | str:
    # apiflask hands its processor the document as a dict, and only then turns it into YAML if asked
    assert isinstance(spec, dict)
    return finish(spec)


def init_app(app: APIFlask) -> None:
    app.config["OPENAPI_VERSION"] = OPENAPI_VERSION
    app.spec_processor(_processor)
