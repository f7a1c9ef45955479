"""The hot path's own query reading agrees with werkzeug and with the documented schema."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from apiflask import APIFlask
from apiflask.exceptions import HTTPError
from apiflask.schema_adapters.marshmallow import parser
from werkzeug.wrappers import Request

from api.cli.serve import MAX_REQUEST_LINE
from api.schemas import (
    EventBatchIn,
    OrderIn,
    RecommendationsQuery,
    first_values,
    quick_event_batch,
    quick_order,
    quick_recommendations_query,
)

QUERY_STRINGS = [
    "",
    "n=5",
    "n=5&n=7",
    "n",
    "n=",
    "&&n=3&",
    "exclude=A%2CB,C",
    "category=Tea+cups&category=other",
    "category=Tea%20cups%2B",
    "x=%zz&y=%E2%82%AC&z=%ff&w=%",
    "k%20ey=v&k+ey=w",
    "n=1;n=2",
    "q=a=b",
    "=v&n=4",
    "min_price=1.5&max_price=2e1&exclude=",
]


@pytest.mark.parametrize("query_string", QUERY_STRINGS)
def test_first_values_read_the_query_string_as_werkzeug_does(query_string):
    args = Request({"QUERY_STRING": query_string}).args
    assert first_values(query_string) == {name: args[name] for name in args}


def test_a_query_string_with_raw_non_ascii_bytes_is_left_to_werkzeug():
    # WSGI hands over raw bytes as latin-1 text; werkzeug decodes them as UTF-8
    assert first_values("category=Th\xc3\xa9") is None


@pytest.mark.parametrize(
    "query_string",
    QUERY_STRINGS
    + [
        "n=0",
        "n=101",
        "n=ten",
        "n=%2B5",
        "n=%D9%A3",  # an Arabic-Indic three: int() reads it, the quick reader defers
        "min_price=-1",
        "min_price=nan",
        "max_price=inf",
        "min_price=5&max_price=4",
        "category=" + "x" * 101,
        "exclude=" + "A," * 1001,
        "exclude=" + "A" * 401,
        "exclude=" + "A" * 400,
        "n=100&min_price=0&max_price=0&category=Mugs",
    ],
)
def test_the_quick_reader_agrees_with_the_schema_or_defers_to_it(query_string):
    values = first_values(query_string)
    assert values is not None
    quick = quick_recommendations_query(values)
    # As the view falls back to it: the schema through apiflask's parser (unknown parameters ignored).
    with APIFlask(__name__).test_request_context("/", query_string=query_string) as ctx:
        try:
            loaded = parser.parse(RecommendationsQuery(), ctx.request, location="query")
        except HTTPError:
            assert quick is None  # the schema then answers with its documented error
            return
    if quick is not None:
        assert quick == loaded


def test_every_recommendations_request_the_document_allows_fits_in_a_request_line(client):
    """Regression: `exclude` took 2000 characters, up to 12 bytes each once percent-encoded: gunicorn
    answered such a request with an HTML 414 that the document did not describe (found by .ci/contract.sh)."""
    spec = client.get("/v1/openapi.json").json
    template = "/v1/customers/{customer_id}/recommendations"
    widest = "\U0010ffff"  # 4 bytes of UTF-8, 12 once percent-encoded
    path, query = template, []
    for param in spec["paths"][template]["get"]["parameters"]:
        if param["in"] == "header":  # not in the request line
            continue
        schema = param["schema"]
        # the longest value of each: a string at its maxLength, a float's longest text
        value = widest * schema["maxLength"] if schema["type"] == "string" else "-1.7976931348623157e+308"
        if param["in"] == "path":
            path = path.replace("{" + param["name"] + "}", quote(value, safe=""))
        else:
            query.append(f"{param['name']}={quote(value, safe='')}")
    assert "{" not in path
    assert len(f"GET {path}?{'&'.join(query)} HTTP/1.1") <= MAX_REQUEST_LINE


EVENT = {"id": "e-1", "type": "view", "sku": "85123A", "customer_id": "17850"}
LINE = {"sku": "85123A", "quantity": 2, "unit_price": 4.95}
ORDER = {"order_id": "W-1", "customer_id": "17850", "lines": [LINE]}


def _parsed(schema, body):  # type: ignore[no-untyped-def]
    """As the view falls back to it: the schema through apiflask's parser; None when it refuses."""
    with APIFlask(__name__).test_request_context("/", method="POST", json=body) as ctx:
        try:
            return parser.parse(schema, ctx.request, location="json")
        except HTTPError:
            return None


@pytest.mark.parametrize(
    "body",
    [
        {"events": [EVENT]},
        {"events": [EVENT, {**EVENT, "id": "e-2", "customer_id": None, "anonymous_id": "a-1"}]},
        {"events": [{**EVENT, "quantity": 3, "source": "email", "recommendation_id": "r-1"}]},
        {"events": [{**EVENT, "occurred_at": "2011-12-04T09:00:00+01:00"}]},
        {"events": [{**EVENT, "occurred_at": "2011-12-04"}]},
        {"events": [{**EVENT, "occurred_at": "yesterday"}]},
        {"events": [{**EVENT, "quantity": "3"}]},
        {"events": [{**EVENT, "quantity": 2.0}]},
        {"events": [{**EVENT, "quantity": 2.5}]},
        {"events": [{**EVENT, "quantity": True}]},
        {"events": [{**EVENT, "quantity": 0}]},
        {"events": [{**EVENT, "type": "purchase"}]},
        {"events": [{**EVENT, "type": "buy"}]},
        {"events": [{**EVENT, "sku": ""}]},
        {"events": [{**EVENT, "sku": 12}]},
        {"events": [{**EVENT, "id": "x" * 101}]},
        {"events": [{**EVENT, "customer_id": ""}]},
        {"events": [{**EVENT, "customer_id": None}]},
        {"events": [{k: v for k, v in EVENT.items() if k != "type"}]},
        {"events": [{**EVENT, "colour": "red"}]},
        {"events": [EVENT], "more": 1},
        {"events": []},
        {"events": EVENT},
        {"events": [None]},
        {"events": ["e-1"]},
        {},
        [EVENT],
    ],
)
def test_the_quick_event_reader_agrees_with_the_schema_or_defers_to_it(body):
    quick = quick_event_batch(body)
    loaded = _parsed(EventBatchIn(), body)
    if loaded is None:
        assert quick is None  # the schema then answers with its documented error
    elif quick is not None:
        assert quick == loaded
    assert quick is not None or body != {"events": [EVENT]}, "the common body takes the quick path"


@pytest.mark.parametrize(
    "body",
    [
        ORDER,
        {**ORDER, "ordered_at": "2011-12-04T09:00:00Z", "delivered_at": "2011-12-06T10:00:00+00:00"},
        {**ORDER, "kind": "return", "currency": "eur", "country": "France"},
        {**ORDER, "lines": [LINE, {**LINE, "sku": "22423", "unit_price": "12.504"}]},
        {**ORDER, "lines": [{**LINE, "unit_price": "4.95"}]},
        {**ORDER, "lines": [{**LINE, "unit_price": 0}]},
        {**ORDER, "lines": [{**LINE, "unit_price": "NaN"}]},
        {**ORDER, "lines": [{**LINE, "unit_price": None}]},
        {**ORDER, "lines": [{**LINE, "quantity": 0}]},
        {**ORDER, "lines": [{**LINE, "quantity": "2"}]},
        {**ORDER, "lines": [{**LINE, "extra": 1}]},
        {**ORDER, "lines": [{k: v for k, v in LINE.items() if k != "sku"}]},
        {**ORDER, "lines": []},
        {**ORDER, "lines": [LINE] * 1001},
        {**ORDER, "lines": LINE},
        {**ORDER, "kind": "gift"},
        {**ORDER, "currency": "EURO"},
        {**ORDER, "country": ""},
        {**ORDER, "ordered_at": "soon"},
        {**ORDER, "order_id": None},
        {**ORDER, "note": "hi"},
        {k: v for k, v in ORDER.items() if k != "lines"},
        {k: v for k, v in ORDER.items() if k != "customer_id"},
        [ORDER],
    ],
)
def test_the_quick_order_reader_agrees_with_the_schema_or_defers_to_it(body):
    quick = quick_order(body)
    loaded = _parsed(OrderIn(), body)
    if loaded is None:
        assert quick is None
    elif quick is not None:
        assert quick == loaded
    assert quick is not None or body is not ORDER, "the common body takes the quick path"


def test_the_quick_readers_mirror_every_hook_of_their_schemas():
    """The quick readers apply each field's rules and, for an event, ``EventIn._who`` by hand: a new
    schema-level validator or load hook on these schemas would be skipped for valid-looking bodies. This
    fails until the quick reader mirrors it (then update the expected hooks here)."""
    from api.schemas import EventIn, OrderLineIn

    hooks = {
        schema.__name__: sorted(name for tag in schema._hooks.values() for name, *_ in tag)
        for schema in (EventBatchIn, EventIn, OrderIn, OrderLineIn)
    }
    assert hooks == {"EventBatchIn": [], "EventIn": ["_who"], "OrderIn": [], "OrderLineIn": []}
