"""Request and response schemas of the /v1 API: they validate input and generate the OpenAPI document."""

from __future__ import annotations

import decimal
import math
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

import werkzeug.urls  # noqa: F401 - registers the 'werkzeug.url_quote' error handler used below
from apiflask import Schema
from apiflask.fields import Boolean, DateTime, Decimal, Float, Integer, List, Nested, String
from apiflask.validators import Length, OneOf, Range, Regexp
from marshmallow import ValidationError, missing, validates_schema
from marshmallow.fields import Field

from domain.models import EVENT_KINDS, ORDER_KINDS

SKU = Length(1, 64)
#: ISO 4217: three letters (stored upper-case).
CURRENCY = Regexp(r"^[A-Za-z]{3}$", error="must be a three-letter ISO 4217 code")
#: Prices are stored as Numeric(12, 2): a positive amount in cents, below 10^10.
MIN_PRICE = decimal.Decimal("0.01")
MAX_PRICE = decimal.Decimal("9999999999.99")


class Money(Decimal):
    """An amount with two decimal places (more are rounded), read from a JSON number (or a numeric string)
    into a :class:`decimal.Decimal`; written, and documented with its bounds, as a JSON number.

    marshmallow's Decimal writes Decimals, which JSON sends as strings: the OpenAPI document said
    ``minimum: "0.00"``, a string where a number belongs (regression: issue 12)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("places", 2)
        kwargs.setdefault("validate", Range(min=MIN_PRICE, max=MAX_PRICE))
        super().__init__(**kwargs)

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:  # float | None
        number = super()._serialize(value, attr, obj, **kwargs)
        return None if number is None else float(number)


# --- problems ----------------------------------------------------------------------------------------------
class FieldError(Schema):
    field = String(allow_none=True, metadata={"description": "the input at fault, e.g. events[3].sku"})
    message = String()


class Problem(Schema):
    """RFC 9457 problem details, served as application/problem+json (documented by PROBLEM_SCHEMA)."""

    type = String(metadata={"example": "about:blank"})
    title = String(metadata={"example": "Invalid input"})
    status = Integer(metadata={"example": 422})
    detail = String()
    errors = List(Nested(FieldError))


#: The OpenAPI schema of every error response (api.errors.problem writes them); OpenAPI 3.1.
PROBLEM_SCHEMA = {
    "type": "object",
    "description": "RFC 9457 problem details, served as application/problem+json",
    "properties": {
        "type": {"type": "string", "example": "about:blank"},
        "title": {"type": "string", "example": "Invalid input"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599, "example": 422},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "description": "the inputs at fault, each with what is wrong with it",
            "items": {
                "type": "object",
                "properties": {
                    "field": {"type": ["string", "null"], "description": "e.g. events[3].sku"},
                    "message": {"type": "string"},
                },
                "required": ["field", "message"],
            },
        },
    },
    "required": ["type", "title", "status"],
}


# --- recommendations (read) --------------------------------------------------------------------------------
class PriceFilters(Schema):
    category = String(validate=Length(1, 100), metadata={"description": "only this category"})
    min_price = Float(validate=Range(min=0), metadata={"description": "lowest price, inclusive"})
    max_price = Float(
        validate=Range(min=0), metadata={"description": "highest price, inclusive; not below min_price"}
    )

    @validates_schema
    def _bounds(self, data: dict[str, Any], **_: Any) -> None:
        low, high = data.get("min_price"), data.get("max_price")
        if low is not None and high is not None and low > high:
            raise ValidationError("must not be below min_price", "max_price")


#: Characters of ``exclude``: with every other parameter at its longest too, percent-encoded 4-byte
#: characters throughout, the request line stays under the 8190 bytes web servers read (`giftrec serve`
#: raises gunicorn's limit to that); 2000 let a request the document allowed end in gunicorn's HTML 414.
MAX_EXCLUDE = 400


class CustomerSignatureHeader(Schema):
    """Documents the signed customer identity a widget key sends (checked by api.auth.check_customer)."""

    customer_signature = String(
        data_key="X-Customer-Signature",
        validate=[Length(max=77), Regexp(r"^([0-9]{1,12}\.)?[0-9a-f]{64}$")],
        metadata={
            "description": "widget keys: the shop's signature of the customer, `<expires>.<hex>` "
            "(HMAC-SHA256 of `<expires>:<customer_id>` with the key's identity secret; docs/api.md)"
        },
    )


class SessionRecommendationsQuery(PriceFilters):
    n = Integer(load_default=10, validate=Range(1, 100), metadata={"description": "how many items"})
    exclude_skus = String(
        data_key="exclude",
        load_default="",
        validate=Length(max=MAX_EXCLUDE),
        metadata={"description": "comma-separated SKUs to leave out (e.g. what is in the cart)"},
    )


class RecommendationsQuery(SessionRecommendationsQuery):
    customer_signature = String(
        validate=[Length(max=77), Regexp(r"^([0-9]{1,12}\.)?[0-9a-f]{64}$")],
        metadata={
            "description": "widget keys: the shop's signature of this customer, `<expires>.<hex>` (or send "
            "the X-Customer-Signature header); see docs/api.md"
        },
    )


def first_values(query_string: str) -> dict[str, str] | None:
    """The first value of each parameter of a WSGI ``QUERY_STRING``, exactly as werkzeug's
    ``request.args`` reads it (``+`` is a space, percent escapes decoded, invalid ones kept, blank values
    kept); None for a query string with non-ASCII bytes, left to werkzeug. ``request.args`` builds a
    MultiDict whose ``get`` raises and catches an exception for each absent parameter: on the API's hot
    path that was a tenth of a request."""
    if not query_string.isascii():
        return None
    out: dict[str, str] = {}
    for part in query_string.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        if "+" in part or "%" in part:
            name = unquote(name.replace("+", " "), errors="werkzeug.url_quote")
            value = unquote(value.replace("+", " "), errors="werkzeug.url_quote")
        out.setdefault(name, value)
    return out


def quick_recommendations_query(args: Mapping[str, str]) -> dict[str, Any] | None:
    """What ``RecommendationsQuery().load(args)`` returns, for a well-formed query string; else None.

    The schema takes about a tenth of a recommendations request's time: this reads the five parameters
    the way its fields do (``int``/``float`` of the text, the same bounds, unknown keys ignored, the first
    of repeated keys) and answers None for anything it is not sure of (out of range, not finite, not
    plain digits...), which the caller then hands to the schema for the documented errors.
    """
    out: dict[str, Any] = {"n": 10, "exclude_skus": ""}
    n = args.get("n")
    if n is not None:
        if not (n.isascii() and n.isdigit() and len(n) <= 3):
            return None
        out["n"] = int(n)
        if not 1 <= out["n"] <= 100:
            return None
    for name in ("min_price", "max_price"):
        text = args.get(name)
        if text is not None:
            try:
                value = float(text)
            except ValueError:
                return None
            if not (math.isfinite(value) and value >= 0):
                return None
            out[name] = value
    if "min_price" in out and "max_price" in out and out["min_price"] > out["max_price"]:
        return None
    category = args.get("category")
    if category is not None:
        if not 1 <= len(category) <= 100:
            return None
        out["category"] = category
    exclude = args.get("exclude")
    if exclude is not None:
        if len(exclude) > MAX_EXCLUDE:
            return None
        out["exclude_skus"] = exclude
    return out


class SimilarQuery(Schema):
    n = Integer(load_default=10, validate=Range(1, 100))


class BestsellersQuery(Schema):
    category = String(validate=Length(1, 100))
    days = Integer(validate=Range(1, 3650), metadata={"description": "look-back window (default: setting)"})
    n = Integer(load_default=10, validate=Range(1, 100))


class NewArrivalsQuery(Schema):
    category = String(validate=Length(1, 100))
    n = Integer(load_default=10, validate=Range(1, 100))


#: The integer parameters of the listing queries (SimilarQuery, BestsellersQuery, NewArrivalsQuery): bounds.
_LISTING_INTS = {"n": (1, 100), "days": (1, 3650)}


def quick_listing_query(args: Mapping[str, str], names: tuple[str, ...]) -> dict[str, Any] | None:
    """What the listing schema with the parameters ``names`` (of ``n``, ``days``, ``category``) loads from
    a well-formed query string (``n`` defaults to 10, unknown keys ignored, the first of repeated keys);
    None for anything it is not sure of, which the caller hands to the schema for the documented errors.
    As :func:`quick_recommendations_query`, for the fast path of similar items, bestsellers and new
    arrivals."""
    out: dict[str, Any] = {"n": 10}
    for name in names:
        text = args.get(name)
        if text is None:
            continue
        if name == "category":
            if not 1 <= len(text) <= 100:
                return None
            out[name] = text
            continue
        low, high = _LISTING_INTS[name]
        if not (text.isascii() and text.isdigit() and len(text) <= len(str(high))):
            return None
        value = out[name] = int(text)
        if not low <= value <= high:
            return None
    return out


class Item(Schema):
    sku = String(required=True)
    title = String(required=True)
    price = Float(required=True)
    currency = String(required=True, metadata={"example": "GBP"})
    url = String(allow_none=True)
    image_url = String(allow_none=True)
    score = Float()
    source = String(
        metadata={
            "description": "collaborative, similar, bestsellers or new_arrivals: what produced the item"
        }
    )
    explanation = String(metadata={"description": "one line for the shopper"})
    recommendation_id = String(
        metadata={"description": "cite it in a later click event so that the click is attributed"}
    )


class ItemList(Schema):
    items = List(Nested(Item))
    model_version = String(allow_none=True, metadata={"description": "model that answered, if any"})


# --- events ------------------------------------------------------------------------------------------------
class EventIn(Schema):
    id = String(
        required=True,
        validate=Length(1, 100),
        metadata={"description": "idempotency id chosen by the client: sending it again adds nothing"},
    )
    type = String(required=True, validate=OneOf(EVENT_KINDS))
    sku = String(required=True, validate=SKU)
    customer_id = String(validate=Length(1, 64), metadata={"description": "the shop's customer id"})
    anonymous_id = String(validate=Length(1, 100), metadata={"description": "browser id before sign-in"})
    recommendation_id = String(validate=Length(1, 64))
    quantity = Integer(load_default=1, validate=Range(1, 100_000))
    occurred_at = DateTime(
        metadata={"description": "ISO 8601, not in the future; default: when the server received it"}
    )
    source = String(load_default="api", validate=Length(1, 30))

    @validates_schema
    def _who(self, data: dict[str, Any], **_: Any) -> None:
        if not data.get("customer_id") and not data.get("anonymous_id"):
            raise ValidationError("either customer_id or anonymous_id is required", "customer_id")


#: What the OpenAPI document says of a schema beyond its fields: rules across fields, which apispec cannot
#: derive from a ``validates_schema`` (api.openapi adds them).
SCHEMA_RULES: dict[str, dict[str, Any]] = {
    "EventIn": {"anyOf": [{"required": ["customer_id"]}, {"required": ["anonymous_id"]}]},  # EventIn._who
}


class EventBatchIn(Schema):
    events = List(Nested(EventIn), required=True, validate=Length(min=1))


def _leaf_fields(schema: Schema) -> dict[str, Field]:
    """``schema``'s fields that hold one value (no list, no nesting), by name; checked to be plain: no
    ``data_key`` or ``attribute`` renaming them, which :func:`_quick_fields` does not apply."""
    fields = {name: f for name, f in schema.load_fields.items() if not isinstance(f, List | Nested)}
    assert all(f.data_key is None and f.attribute is None for f in fields.values()), schema
    return fields


def _quick_fields(fields: dict[str, Field], data: Any, others: frozenset[str] = frozenset()) -> Any:
    """What a schema with the leaf ``fields`` loads from the JSON object ``data`` when all of it is valid,
    else None; the keys ``others`` are left to the caller (neither read nor refused).

    Each value goes through its own field's ``deserialize`` (type, null, validators: the schema's exact
    rules); what the schema's ``load`` adds per call (its error store, hooks, the nested schemas and lists)
    costs more than the fields, and is replaced by: no unknown key (marshmallow's default refuses them),
    every required field present, the load defaults filled in. Anything not valid answers None, and the
    caller hands the body to the schema for the documented errors."""
    if type(data) is not dict:
        return None
    out: dict[str, Any] = {}
    try:
        for key, value in data.items():
            field = fields.get(key)
            if field is None:
                if key in others:
                    continue
                return None
            out[key] = field.deserialize(value)
    except ValidationError:
        return None
    for name, field in fields.items():
        if name not in out:
            if field.required:
                return None
            if field.load_default is not missing:
                out[name] = field.load_default() if callable(field.load_default) else field.load_default
    return out


_EVENT_FIELDS = _leaf_fields(EventIn())


def quick_event_batch(payload: Any) -> dict[str, Any] | None:
    """What ``EventBatchIn().load(payload)`` returns for a valid body; None for anything else, which the
    caller hands to the schema (for a one-event batch the schema was about a tenth of the write's CPU)."""
    if type(payload) is not dict or len(payload) != 1 or type(payload.get("events")) is not list:
        return None
    events = []
    for item in payload["events"]:
        event = _quick_fields(_EVENT_FIELDS, item)
        if event is None or not (event.get("customer_id") or event.get("anonymous_id")):  # EventIn._who
            return None
        events.append(event)
    return {"events": events} if events else None


class EventBatchOut(Schema):
    recorded = Integer(metadata={"description": "events stored by this call"})
    duplicates = Integer(metadata={"description": "events whose id was already stored: ignored"})


# --- orders ------------------------------------------------------------------------------------------------
class OrderLineIn(Schema):
    sku = String(required=True, validate=SKU)
    quantity = Integer(required=True, validate=Range(1, 100_000))
    unit_price = Money(required=True)


class OrderIn(Schema):
    order_id = String(required=True, validate=Length(1, 64))
    customer_id = String(required=True, validate=Length(1, 64))
    ordered_at = DateTime()
    delivered_at = DateTime(
        metadata={"description": "when the order arrived (a sale only); may also come later by PATCH"}
    )
    kind = String(load_default="sale", validate=OneOf(ORDER_KINDS))
    currency = String(load_default="GBP", validate=CURRENCY)
    country = String(validate=Length(1, 64))
    lines = List(Nested(OrderLineIn), required=True, validate=Length(1, 1000))


_ORDER_FIELDS = _leaf_fields(OrderIn())
_ORDER_LINE_FIELDS = _leaf_fields(OrderLineIn())


def quick_order(payload: Any) -> dict[str, Any] | None:
    """What ``OrderIn().load(payload)`` returns for a valid body; None for anything else, which the caller
    hands to the schema (as :func:`quick_event_batch`)."""
    order = _quick_fields(_ORDER_FIELDS, payload, frozenset({"lines"}))
    lines = None if order is None else payload.get("lines")
    if type(lines) is not list or not 1 <= len(lines) <= 1000:
        return None
    order["lines"] = []
    for item in lines:
        line = _quick_fields(_ORDER_LINE_FIELDS, item)
        if line is None:
            return None
        order["lines"].append(line)
    return order


class OrderOut(Schema):
    order_id = String()
    customer_id = String()
    kind = String()
    lines = Integer(metadata={"description": "number of lines"})
    created = Boolean(metadata={"description": "false when the same order had been recorded before"})
    customer_created = Boolean()
    delivered_at = DateTime(allow_none=True)


class OrderDeliveryIn(Schema):
    delivered_at = DateTime(
        required=True,
        metadata={"description": "when the order arrived; not before the order, not in the future"},
    )


class OrderDeliveryOut(Schema):
    order_id = String()
    ordered_at = DateTime()
    delivered_at = DateTime()


# --- catalog -----------------------------------------------------------------------------------------------
class ProductIn(Schema):
    title = String(validate=Length(1, 300))
    description = String()
    category = String(validate=Length(1, 100))
    brand = String(validate=Length(1, 100))
    price = Money()
    currency = String(validate=CURRENCY)
    url = String(validate=Length(1, 500))
    image_url = String(validate=Length(1, 500))
    is_active = Boolean(metadata={"description": "false hides the product from every response at once"})
    in_stock = Boolean()
    delivery_days = Integer(validate=Range(0, 365))
    tags = List(String(validate=Length(1, 50)), validate=Length(max=50))


class ProductOut(Schema):
    sku = String()
    title = String()
    description = String(allow_none=True)
    category = String(allow_none=True)
    brand = String(allow_none=True)
    price = Float()
    currency = String()
    url = String(allow_none=True)
    image_url = String(allow_none=True)
    is_active = Boolean()
    in_stock = Boolean()
    delivery_days = Integer()
    tags = List(String())
    created = Boolean()
