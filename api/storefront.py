"""The storefront API under /v1: picks, similar items, fallbacks, events, orders, catalog, erasure."""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

from apiflask import APIBlueprint
from apiflask.schema_adapters.marshmallow import parser
from flask import Response, current_app, request
from flask.typing import ResponseReturnValue
from werkzeug.http import http_date

from api import auth, fastpath, security
from api.db import get_session
from api.errors import problem
from api.item_json import ItemListJson
from api.schemas import (
    PROBLEM_SCHEMA,
    BestsellersQuery,
    CustomerSignatureHeader,
    EventBatchIn,
    EventBatchOut,
    ItemList,
    NewArrivalsQuery,
    OrderDeliveryIn,
    OrderDeliveryOut,
    OrderIn,
    OrderOut,
    ProductIn,
    ProductOut,
    RecommendationsQuery,
    SessionRecommendationsQuery,
    SimilarQuery,
    first_values,
    quick_event_batch,
    quick_listing_query,
    quick_order,
    quick_recommendations_query,
)
from domain.catalog import products
from domain.customers import erasure, events, orders
from domain.customers.interactions import WrittenRows
from domain.errors import DomainError
from domain.metrics import count_served
from domain.serving import recommendations

if TYPE_CHECKING:
    from flask.json.provider import JSONProvider
    from sqlalchemy.orm import Session

    from api.context import AppContext

log = logging.getLogger(__name__)

bp = APIBlueprint("storefront", __name__, url_prefix="/v1", tag="Storefront")

#: Event kinds a browser (widget key) may send; purchases and carts come from the shop's server.
WIDGET_EVENT_KINDS = ("view", "click")
#: Who may read a customer's picks.
PICKS_SCOPES = ("widget", "server")
#: Who may read similar items, bestsellers and new arrivals.
READ_SCOPES = ("widget", "server")
_SERVING_LOCK = threading.Lock()
_ITEM_JSON = ItemListJson()
#: A generous bound on one event's JSON (ids, SKU, dates are short): bodies above it x max_batch are 413.
MAX_BYTES_PER_EVENT = 2048
#: The largest order body the fast path reads (an order of 1,000 lines is about 100 KB); Flask reads the rest.
FAST_ORDER_BYTES = 1 << 20

ERRORS = {
    400: "Malformed request (e.g. a body that is not JSON)",
    401: "No API key, or an unknown or revoked one",
    403: "The key's scope or origin does not allow this call",
    429: "Too many requests for this key; see Retry-After",
}


def _same_body(schema: str, description: str) -> Any:
    """A second success status of a view, documented with the body of its ``@bp.output`` schema (Any: a
    ``responses`` dict of ``@bp.doc`` may mix descriptions and response objects, its type hint may not)."""
    ref = {"$ref": f"#/components/schemas/{schema}"}
    return {"description": description, "content": {"application/json": {"schema": ref}}}


def _ctx() -> Any:
    return current_app.extensions["giftrec"]


def _batch_size_guard(view: Callable[..., Any]) -> Callable[..., Any]:
    """Refuse an oversized batch with 413 before parsing a huge body or validating thousands of items."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        limit = _ctx().settings.api.max_batch
        max_bytes = MAX_BYTES_PER_EVENT * limit
        if request.content_length is not None and request.content_length > max_bytes:
            detail = f"the body has {request.content_length} bytes; at most {max_bytes} per batch"
            return problem(413, "Content Too Large", detail, [{"field": "events", "message": detail}])
        payload = request.get_json(silent=True)
        if isinstance(payload, dict) and isinstance(payload.get("events"), list):
            if len(payload["events"]) > limit:
                detail = f"{len(payload['events'])} events; at most {limit} per batch"
                return problem(413, "Content Too Large", detail, [{"field": "events", "message": detail}])
        return view(*args, **kwargs)

    return wrapper


# --- reads -------------------------------------------------------------------------------------------------
def _documented(apiflask_decorator: Callable[[Callable[..., Any]], Any]) -> Callable[..., Any]:
    """An apiflask ``@bp.input(...)`` or ``@bp.output(...)`` for the OpenAPI document only.

    apiflask records the schema on the function it wraps and returns a wrapper that parses the query
    string again, or serialises the view's return value, on every request (each wrapper also reads
    ``current_app``). A hot view that reads its own query string and returns a finished JSON response
    keeps the record and drops the wrapper.
    """

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        if not hasattr(view, "_spec"):
            view._spec = {}  # type: ignore[attr-defined]  # apiflask's record, shared with its wrapper
        apiflask_decorator(view)
        return view

    return decorator


def _serving(ctx: AppContext | None = None) -> recommendations.Serving:
    """The process's model store and catalog snapshot, built on first use (nothing is read until then)."""
    ctx = ctx or _ctx()
    serving = ctx.services.get("serving")
    if serving is None:
        with _SERVING_LOCK:
            serving = ctx.services.get("serving")
            if serving is None:
                serving = ctx.services["serving"] = recommendations.build_serving(ctx.settings, ctx.sessions)
    return serving


def _items(items: list[recommendations.RecommendedItem]) -> Response:
    """The items as the ItemList schema, serialised by orjson with each product card's JSON kept."""
    count_served([it.source for it in items])
    return Response(_ITEM_JSON.dumps(items), mimetype="application/json")


#: The ETags of the lists served lately, by request and items (their recommendation ids aside): a
#: cacheable list is the same until the model or the catalog changes, and hashing its text was a fifth
#: of a bestsellers request's CPU.
_ETAGS: dict[tuple[object, ...], str] = {}
_MAX_ETAGS = 4096


def _etag(full_path: str, items: list[recommendations.RecommendedItem]) -> str:
    """A weak ETag's value over the request (path and query string) and what the items are, not their
    per-response recommendation ids (computed once per request and list: :data:`_ETAGS`)."""
    key = (full_path, *(it[:-1] for it in items))
    found = _ETAGS.get(key)
    if found is not None:
        return found
    digest = hashlib.sha256(full_path.encode())
    for it in items:
        digest.update(
            repr(
                (
                    it.sku,
                    it.title,
                    str(it.price),
                    it.currency,
                    it.url,
                    it.image_url,
                    round(it.score, 6),
                    it.source,
                    it.explanation,
                )
            ).encode()
        )
    if len(_ETAGS) >= _MAX_ETAGS:
        _ETAGS.clear()
    found = _ETAGS[key] = digest.hexdigest()[:32]
    return found


_DATE: tuple[int, str] = (0, "")


def _http_date(now: float) -> str:
    """``Date``'s value for ``now`` (epoch seconds), as ``make_conditional`` writes it; formatted once a
    second (one tuple, swapped whole: threads read a consistent pair)."""
    global _DATE
    second, text = _DATE
    if second != int(now):
        second = int(now)
        text = http_date(second)
        _DATE = (second, text)
    return text


def _cached(items: list[recommendations.RecommendedItem]) -> Any:
    """Cache-Control and a weak ETag over what the items are (not their per-response recommendation ids),
    so that a conditional GET of an unchanged list is answered 304."""
    etag = _etag(request.full_path, items)
    resp = _items(items)
    resp.cache_control.max_age = _ctx().settings.api.cache_seconds
    resp.cache_control.public = True
    resp.set_etag(etag, weak=True)
    return resp.make_conditional(request)


@bp.get("/customers/<customer_id>/recommendations")
@bp.doc(
    summary="Personal picks for a customer",
    description=(
        "Collaborative filtering on purchases and events, filled along the chain similar -> bestsellers -> "
        "new arrivals. Only active, in-stock products; never what the customer already bought. A widget key "
        "must also send the shop's signature of this customer (`X-Customer-Signature` or "
        "`customer_signature`; see docs/api.md): without one it gets 401, with a wrong or expired one 403."
    ),
    responses={**ERRORS, 404: "Unknown customer"},
    security=auth.SECURITY,
)
@auth.require(*PICKS_SCOPES)
# The schema documents the parameters (OpenAPI) and validates what the quick reader below does not
# accept, with the same errors; a well-formed query string (nearly every request of this, the API's hot
# path) skips marshmallow.
@_documented(bp.input(RecommendationsQuery, location="query", validation=False))
@_documented(bp.input(CustomerSignatureHeader, location="headers", validation=False))
@_documented(bp.output(ItemList))
def customer_recommendations(customer_id: str) -> Any:
    environ = request.environ
    refused = auth.check_customer(environ, customer_id)
    if refused is not None:
        return refused
    values = first_values(environ.get("QUERY_STRING", ""))
    query = quick_recommendations_query(request.args if values is None else values)
    if query is None:
        query = parser.parse(RecommendationsQuery(), request, location="query")
    # already in the documented shape: no second pass through marshmallow
    return _items(_recommend(auth.app_context(environ), customer_id, query))


def _recommend(
    ctx: AppContext, customer_id: str, query: dict[str, Any]
) -> list[recommendations.RecommendedItem]:
    exclude = [s.strip() for s in query["exclude_skus"].split(",") if s.strip()]
    return recommendations.recommend_for_customer(
        _serving(ctx),
        customer_id,
        query["n"],
        category=query.get("category"),
        min_price=query.get("min_price"),
        max_price=query.get("max_price"),
        exclude=exclude,
    )


#: Request headers that make a GET conditional or partial: a cacheable list's fast handler leaves such a
#: request to Flask (``make_conditional``: 304, 412, ranges).
_CONDITIONAL = (
    "HTTP_IF_NONE_MATCH",
    "HTTP_IF_MATCH",
    "HTTP_IF_MODIFIED_SINCE",
    "HTTP_IF_UNMODIFIED_SINCE",
    "HTTP_RANGE",
    "HTTP_IF_RANGE",
)


def _admitted(environ: dict[str, Any], guard: auth.Guard, scopes: tuple[str, ...]) -> bool:
    """Whether the fast path may answer as far as the guard goes: within the key's limit and a key of
    ``scopes``. The guard's order: counted first (once: Flask's guard sees this count), then the key
    checked; on False, Flask's guard and view answer with their 401/403/429."""
    environ[auth.ENV_GUARD] = guard
    return guard.limit.check(environ) is None and auth.authenticate(environ, *scopes) is None


def _fast_read(
    ctx: AppContext,
    read_query: Callable[[dict[str, str]], dict[str, Any] | None],
    produce: Callable[[AppContext, str, dict[str, Any]], list[recommendations.RecommendedItem]],
    scopes: tuple[str, ...],
    *,
    personal: bool = False,
    cacheable: bool = False,
) -> fastpath.Handler:
    """A read view for the fast path (:mod:`api.fastpath`): the same items and headers for a well-formed
    query string (``read_query``, None when not sure), a key of ``scopes`` (and, if ``personal``, allowed to
    read the customer of the path segment) within its limit; anything else (None) is answered by Flask,
    with the schema's errors, 401/403/404/429 problems and their headers. ``produce`` raises DomainError
    for what Flask answers as a problem (an unknown customer or SKU). A ``cacheable`` list carries
    :func:`_cached`'s headers; a conditional request goes to Flask."""
    guard: auth.Guard = ctx.services["api_guard"]
    cache_control = ""
    if cacheable:
        control = Response().cache_control  # werkzeug writes the header as _cached sets it
        control.max_age = ctx.settings.api.cache_seconds
        control.public = True
        cache_control = control.to_header()

    def answer(environ: dict[str, Any], segment: str) -> fastpath.Answer:
        if cacheable and any(name in environ for name in _CONDITIONAL):
            return None
        query_string = environ.get("QUERY_STRING", "")
        values = first_values(query_string)
        query = None if values is None else read_query(values)
        if query is None:
            return None
        if not _admitted(environ, guard, scopes):
            return None
        if personal and auth.check_customer(environ, segment) is not None:
            return None
        try:
            items = produce(ctx, segment, query)
        except DomainError:  # unknown customer or SKU, bad filter: Flask's problem response
            return None
        body = _ITEM_JSON.dumps(items)
        count_served([it.source for it in items])
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        if cacheable:
            # request.full_path: the path and the query string as sent (both ASCII here)
            etag = _etag(f"{environ.get('PATH_INFO', '')}?{query_string}", items)
            date = _http_date(time.time())
            headers += [("Cache-Control", cache_control), ("ETag", f'W/"{etag}"'), ("Date", date)]
        headers += [("Vary", "Origin"), *guard.headers(environ), *security.api_headers(environ)]
        return body, headers

    return answer


def _fast_recommendations(ctx: AppContext) -> fastpath.Handler:
    """:func:`customer_recommendations` for the fast path."""
    return _fast_read(
        ctx,
        quick_recommendations_query,
        lambda ctx, customer_id, query: _recommend(ctx, customer_id, query),
        PICKS_SCOPES,
        personal=True,
    )


@bp.get("/sessions/<anonymous_id>/recommendations")
@bp.doc(
    summary="Picks for an anonymous browser session",
    description=(
        "From the session's own view, click and cart events (sent with this `anonymous_id`), folded into "
        "the model like a new customer, filled along similar -> bestsellers -> new arrivals; bestsellers "
        "and new arrivals for a session with no events yet. Nothing about any customer: widget keys need "
        "no signature."
    ),
    responses=ERRORS,
    security=auth.SECURITY,
)
@auth.require(*PICKS_SCOPES)
@bp.input(SessionRecommendationsQuery, location="query", arg_name="query")
@bp.output(ItemList)
def session_recommendations(anonymous_id: str, query: dict[str, Any]) -> Any:
    exclude = [s.strip() for s in query["exclude_skus"].split(",") if s.strip()]
    items = recommendations.recommend_for_session(
        _serving(),
        anonymous_id,
        query["n"],
        category=query.get("category"),
        min_price=query.get("min_price"),
        max_price=query.get("max_price"),
        exclude=exclude,
    )
    return _items(items)


@bp.get("/products/<sku>/similar")
@bp.doc(summary="Products similar to one", responses={**ERRORS, 404: "Unknown SKU"}, security=auth.SECURITY)
@auth.require(*READ_SCOPES)
@bp.input(SimilarQuery, location="query", arg_name="query")
@bp.output(ItemList)
def similar(sku: str, query: dict[str, Any]) -> Any:
    return _items(_similar(_ctx(), sku, query))


def _similar(ctx: AppContext, sku: str, query: dict[str, Any]) -> list[recommendations.RecommendedItem]:
    return recommendations.similar_products(_serving(ctx), sku, query["n"])


@bp.get("/bestsellers")
@bp.doc(
    summary="Bestsellers",
    description="Most bought available products over the last `days` days. Cacheable: ETag + max-age.",
    responses={**ERRORS, 304: "Not modified (If-None-Match)"},
    security=auth.SECURITY,
)
@auth.require(*READ_SCOPES)
@bp.input(BestsellersQuery, location="query", arg_name="query")
@bp.output(ItemList)
def get_bestsellers(query: dict[str, Any]) -> Any:
    return _cached(_bestsellers(_ctx(), "", query))


def _bestsellers(ctx: AppContext, _: str, query: dict[str, Any]) -> list[recommendations.RecommendedItem]:
    return recommendations.bestsellers(_serving(ctx), query.get("category"), query.get("days"), query["n"])


@bp.get("/new-arrivals")
@bp.doc(
    summary="New arrivals",
    description="The newest available products. Cacheable: ETag + max-age.",
    responses={**ERRORS, 304: "Not modified (If-None-Match)"},
    security=auth.SECURITY,
)
@auth.require(*READ_SCOPES)
@bp.input(NewArrivalsQuery, location="query", arg_name="query")
@bp.output(ItemList)
def get_new_arrivals(query: dict[str, Any]) -> Any:
    return _cached(_new_arrivals(_ctx(), "", query))


def _new_arrivals(ctx: AppContext, _: str, query: dict[str, Any]) -> list[recommendations.RecommendedItem]:
    return recommendations.new_arrivals(_serving(ctx), query.get("category"), query["n"])


# --- writes ------------------------------------------------------------------------------------------------
@bp.post("/events")
@bp.doc(
    summary="Record a batch of events",
    description=(
        "Up to `api.max_batch` (default 1,000) view, cart, purchase or click events, all-or-nothing. Each "
        "event carries a client-chosen `id`: a repeated batch records nothing new. Clicks should cite the "
        "`recommendation_id` of the item clicked. Widget keys may send view and click events only, and "
        "name a customer only with the shop's signature of that customer (`X-Customer-Signature`); "
        "otherwise an `anonymous_id`."
    ),
    responses={
        **ERRORS,
        409: "A concurrent request recorded the same ids",
        413: "More events than the batch limit",
    },
    security=auth.SECURITY,
)
@auth.require("server", "widget")
@_batch_size_guard
@_documented(bp.input(CustomerSignatureHeader, location="headers", validation=False))
@_documented(bp.input(EventBatchIn, arg_name="batch"))
@_documented(bp.output(EventBatchOut))
def post_events() -> Any:
    # A valid body is read without the schema's machinery (the guard above parsed the JSON already);
    # anything else goes through the schema for the documented errors.
    batch = quick_event_batch(request.get_json(silent=True))
    if batch is None:
        batch = parser.parse(EventBatchIn(), request, location="json")
    found = _event_inputs(request.environ, batch)
    if isinstance(found, Response):
        return found
    session = get_session()
    result = _record_events(_ctx(), session, *found)
    session.commit()
    body, _ = _events_recorded(_ctx(), result)
    return current_app.json.response(body)


def _event_inputs(
    environ: dict[str, Any], batch: dict[str, Any]
) -> Response | tuple[list[events.EventInput], bool]:
    """The batch's events to record and whether a widget key sends them; or the 401/403 problem of a
    widget key naming a customer without the shop's signature of them."""
    widget = environ[auth.ENV_KEY].scope == "widget"
    if widget:  # a browser writes only for the customer the shop signed, or anonymously
        named = sorted({ev["customer_id"] for ev in batch["events"] if ev.get("customer_id")})
        for customer in named:
            refused = auth.check_customer(environ, customer)
            if refused is not None:
                return refused
    items = [
        events.EventInput(
            idempotency_key=ev["id"],
            kind=ev["type"],
            sku=ev["sku"],
            customer_id=ev.get("customer_id"),
            anonymous_id=ev.get("anonymous_id"),
            recommendation_id=ev.get("recommendation_id"),
            quantity=ev["quantity"],
            occurred_at=ev.get("occurred_at"),
            source="widget" if widget else ev["source"],
        )
        for ev in batch["events"]
    ]
    return items, widget


def _record_events(
    ctx: AppContext, session: Session, items: list[events.EventInput], widget: bool
) -> events.BatchResult:
    """Record the events in ``session`` (the caller commits)."""
    allowed = WIDGET_EVENT_KINDS if widget else events.EVENT_KINDS
    return events.record_events(session, ctx.settings, items, allowed_kinds=allowed)


def _events_recorded(ctx: AppContext, result: events.BatchResult) -> tuple[dict[str, int], int]:
    """After the commit: the store told of each customer written for; the answer's body, EventBatchOut's
    two fields (written as its schema would, without a pass through it), and its status."""
    for customer in result.customer_ids:
        _customer_changed(
            customer, event_ids=result.event_ids.get(customer, ()), rows=result.rows.get(customer), ctx=ctx
        )
    return {"recorded": result.recorded, "duplicates": result.duplicates}, 200


@bp.post("/orders")
@bp.doc(
    summary="Record an order or a return",
    description=(
        "Idempotent by `order_id`: sending the same order again returns 200 with `created: false`; the "
        "same id with other contents is 409. A customer id not seen before creates the customer."
    ),
    responses={
        **ERRORS,
        200: _same_body("OrderOut", "The same order was recorded before"),
        409: "Order id taken by another order",
    },
    security=auth.SECURITY,
)
@auth.require("server")
@_documented(bp.input(OrderIn, arg_name="order"))
@_documented(bp.output(OrderOut, status_code=201))
def post_order() -> Any:
    order = quick_order(request.get_json(silent=True))  # as post_events
    if order is None:
        order = parser.parse(OrderIn(), request, location="json")
    data = _order_input(order)
    session = get_session()
    result = orders.record_order(session, data, _ctx().settings)
    session.commit()
    body, status = _order_recorded(_ctx(), data, result)
    response = current_app.json.response(body)
    response.status_code = status
    return response


def _order_input(order: dict[str, Any]) -> orders.OrderInput:
    return orders.OrderInput(
        order_id=order["order_id"],
        customer_id=order["customer_id"],
        lines=[orders.OrderLineInput(ln["sku"], ln["quantity"], ln["unit_price"]) for ln in order["lines"]],
        ordered_at=order.get("ordered_at"),
        kind=order["kind"],
        currency=order["currency"],
        country=order.get("country"),
        delivered_at=order.get("delivered_at"),
    )


def _order_recorded(
    ctx: AppContext, data: orders.OrderInput, result: orders.OrderResult
) -> tuple[dict[str, Any], int]:
    """After the commit: the store told of a new order's customer; the answer's body, OrderOut's fields
    (written as its schema would, a date as ISO 8601, without a pass through it), and its status (201 for
    a new order, 200 for one recorded before)."""
    if result.created and result.customer_id is not None:
        _customer_changed(result.customer_id, order_ids=(result.order_id,), rows=result.rows, ctx=ctx)
    body = {
        "order_id": data.order_id,
        "customer_id": data.customer_id,
        "kind": result.kind,
        "lines": result.lines,
        "created": result.created,
        "customer_created": result.customer_created,
        "delivered_at": None if result.delivered_at is None else result.delivered_at.isoformat(),
    }
    return body, 201 if result.created else 200


@bp.patch("/orders/<order_id>")
@bp.doc(
    summary="Record when an order arrived",
    description=(
        "The shop posts the delivery time of a sale; sending it again corrects it. A review request goes "
        "only after an order that arrived within `triggers.review_request_max_delivery_days` of ordering."
    ),
    responses={**ERRORS, 404: "No order with this id"},
    security=auth.SECURITY,
)
@auth.require("server")
@bp.input(OrderDeliveryIn, arg_name="delivery")
@bp.output(OrderDeliveryOut)
def patch_order(order_id: str, delivery: dict[str, Any]) -> Any:
    session = get_session()
    order = orders.record_delivery(session, order_id, delivery["delivered_at"])
    session.commit()
    return {
        "order_id": order.external_id,
        "ordered_at": order.ordered_at,
        "delivered_at": order.delivered_at,
    }


@bp.put("/products/<sku>")
@bp.doc(
    summary="Create or update a product",
    description=(
        "Upsert by SKU. Creating needs `title` and `price`; on update, omitted fields keep their value. "
        "`is_active: false` or `in_stock: false` hides the product from the next response on."
    ),
    responses={**ERRORS, 200: "Updated", 201: _same_body("ProductOut", "Created")},
    security=auth.SECURITY,
)
@auth.require("server")
@bp.input(ProductIn, arg_name="product")
@bp.output(ProductOut)
def put_product(sku: str, product: dict[str, Any]) -> Any:
    data = products.ProductInput(**product)
    row, created = products.upsert_product(get_session(), sku, data, actor=auth.actor())
    get_session().commit()  # the catalog snapshot reloads from committed data
    _catalog_changed()
    body = {name: getattr(row, name) for name in products.PRODUCT_FIELDS}
    body.update(sku=row.sku, price=float(row.price), created=created)
    return body, (201 if created else 200)


@bp.delete("/customers/<customer_id>")
@bp.doc(
    summary="Erase a customer",
    description=(
        "Erases the customer's personal data, recipients, dates, selections, emails and events; orders are "
        "kept for the shop's totals but detached, so the next training no longer sees the customer."
    ),
    responses={**ERRORS, 204: "Erased (or already erased)", 404: "Unknown customer"},
    security=auth.SECURITY,
)
@auth.require("server")
@bp.output({}, status_code=204)
def delete_customer(customer_id: str) -> ResponseReturnValue:
    session = get_session()
    result = erasure.erase_customer(session, customer_id, actor=auth.actor())
    session.commit()
    serving = _ctx().services.get("serving")
    if serving is not None:  # other workers forget the id within the model store's freshness interval
        recommendations.customer_erased(serving, customer_id)
    _customer_changed(result.customer_id)
    return "", 204


def _fast_write(
    ctx: AppContext,
    provider: JSONProvider,
    scopes: tuple[str, ...],
    read: Callable[[Any], Any],
    write: Callable[[dict[str, Any], Any, Session], Any],
    recorded: Callable[[Any], tuple[dict[str, Any], int]],
    max_bytes: int,
) -> fastpath.Handler:
    """A write view for the fast path (:mod:`api.fastpath`). ``read`` turns the parsed JSON body into the
    view's input, None when not sure (the schema's errors); then, as the view's guard does, the request is
    counted and its key checked against ``scopes``; ``write`` records the input in a session of its own
    (None: Flask answers, e.g. a widget key's refused customer), and after the commit ``recorded`` tells
    the store and gives the answer's JSON body and status, as the view's. A failure before the commit
    leaves nothing stored and Flask's view does the same write again, answering with its error (a
    conflict, an unknown SKU); after it, the write is answered."""
    guard: auth.Guard = ctx.services["api_guard"]

    def answer(environ: dict[str, Any], _: str) -> fastpath.Answer:
        payload = fastpath.json_body(environ, max_bytes)
        found = None if payload is None else read(payload)
        if found is None:
            return None
        if not _admitted(environ, guard, scopes):
            return None
        session = ctx.sessions()
        try:
            written = write(environ, found, session)
            if written is None:
                return None
            session.commit()
            environ[fastpath.ENV_COMMITTED] = True
        except Exception:  # noqa: BLE001 - rolled back: Flask's view writes again and answers the error
            log.debug("a fast write failed before its commit; Flask answers", exc_info=True)
            session.rollback()
            return None
        finally:
            session.close()
        out, status = recorded(written)
        # The view's response: the JSON as Flask writes it, then the guard's and the security headers.
        response = cast(Response, provider.response(out))
        response.status_code = status  # the status line as werkzeug writes it ("201 CREATED")
        body = response.get_data()
        headers = [("Content-Type", response.content_type), ("Content-Length", str(len(body)))]
        headers += [("Vary", "Origin"), *guard.headers(environ), *security.api_headers(environ)]
        return fastpath.Answered(body, headers, response.status)

    return answer


def _fast_events(ctx: AppContext, provider: JSONProvider) -> fastpath.Handler:
    """:func:`post_events` for the fast path."""
    limit = ctx.settings.api.max_batch

    def read(payload: Any) -> dict[str, Any] | None:
        batch = quick_event_batch(payload)
        return None if batch is None or len(batch["events"]) > limit else batch

    def write(environ: dict[str, Any], batch: dict[str, Any], session: Session) -> events.BatchResult | None:
        found = _event_inputs(environ, batch)
        return None if isinstance(found, Response) else _record_events(ctx, session, *found)

    return _fast_write(
        ctx,
        provider,
        ("server", "widget"),
        read,
        write,
        functools.partial(_events_recorded, ctx),
        MAX_BYTES_PER_EVENT * limit,
    )


def _fast_order(ctx: AppContext, provider: JSONProvider) -> fastpath.Handler:
    """:func:`post_order` for the fast path."""

    def write(
        _: dict[str, Any], order: dict[str, Any], session: Session
    ) -> tuple[orders.OrderInput, orders.OrderResult]:
        data = _order_input(order)
        return data, orders.record_order(session, data, ctx.settings)

    return _fast_write(
        ctx,
        provider,
        ("server",),
        quick_order,
        write,
        lambda written: _order_recorded(ctx, *written),
        FAST_ORDER_BYTES,
    )


def _catalog_changed() -> None:
    """After a committed product change: this process's next response sees it (others within seconds)."""
    serving = _ctx().services.get("serving")
    if serving is not None:
        recommendations.catalog_changed(serving)


def _customer_changed(
    customer_id: int,
    *,
    order_ids: Iterable[int] = (),
    event_ids: Iterable[int] = (),
    rows: WrittenRows | None = None,
    ctx: AppContext | None = None,
) -> None:
    """After a committed order, event or erasure: the next picks for this customer reflect it
    (``order_ids``/``event_ids``: the rows written, which this process need not reload again; ``rows``:
    their interaction rows, which it adds to the customer's without reading them). ``ctx``: the app's,
    outside a request of Flask's."""
    serving = (ctx or _ctx()).services.get("serving")
    if serving is not None:
        recommendations.customer_changed(
            serving, customer_id, order_ids=order_ids, event_ids=event_ids, rows=rows
        )


def register(app: Any) -> None:
    """Mount the /v1 API, its OpenAPI security schemes and problem schemas, the limits and the widget."""
    from api import next_purchase, segments, selections, widget

    app.config["SECURITY_SCHEMES"] = auth.SECURITY_SCHEMES
    app.config["HTTP_ERROR_SCHEMA"] = PROBLEM_SCHEMA
    app.config["VALIDATION_ERROR_SCHEMA"] = PROBLEM_SCHEMA
    app.register_blueprint(bp)
    app.register_blueprint(selections.bp)
    auth.protect(app, bp, selections.bp)
    ctx = app.extensions["giftrec"]
    if ctx.settings.api.fast_path:
        # Each read's Flask view answers whatever its fast handler declines (api/fastpath.py).
        for rule, handler, view in (
            (
                "/customers/<customer_id>/recommendations",
                _fast_recommendations(ctx),
                customer_recommendations,
            ),
            (
                "/products/<sku>/similar",
                _fast_read(ctx, functools.partial(quick_listing_query, names=("n",)), _similar, READ_SCOPES),
                similar,
            ),
            (
                "/bestsellers",
                _fast_read(
                    ctx,
                    functools.partial(quick_listing_query, names=("n", "category", "days")),
                    _bestsellers,
                    READ_SCOPES,
                    cacheable=True,
                ),
                get_bestsellers,
            ),
            (
                "/new-arrivals",
                _fast_read(
                    ctx,
                    functools.partial(quick_listing_query, names=("n", "category")),
                    _new_arrivals,
                    READ_SCOPES,
                    cacheable=True,
                ),
                get_new_arrivals,
            ),
        ):
            fastpath.route(app, f"{bp.url_prefix}{rule}", handler, endpoint=f"{bp.name}.{view.__name__}")
        writes = (
            ("/events", _fast_events(ctx, app.json), post_events),
            ("/orders", _fast_order(ctx, app.json), post_order),
        )
        for rule, handler, view in writes:
            endpoint = f"{bp.name}.{view.__name__}"
            fastpath.route(app, f"{bp.url_prefix}{rule}", handler, endpoint=endpoint, method="POST")
    next_purchase.register(app)
    segments.register(app)
    app.register_blueprint(widget.bp)

    def banner(base: str) -> list[str]:
        key = widget.demo_key(ctx.settings)
        if key:
            return [f"  demo widget key   {key}"]
        return ["  demo widget key   none yet: run `giftrec keys demo --origin " + base + "`"]

    ctx.services.setdefault("banner_hooks", []).append(banner)
