"""GET /v1/customers/{id}/next-purchase: when the customer will probably buy again, and what."""

from __future__ import annotations

import threading
from typing import Any

from apiflask import APIBlueprint, Schema
from apiflask.fields import Boolean, Date, Float, Integer, List, Nested, String
from apiflask.validators import Range
from flask import current_app, jsonify

from api import auth
from domain.serving import next_purchase
from domain.serving.next_purchase_service import NextPurchaseService

bp = APIBlueprint("next_purchase", __name__, url_prefix="/v1", tag="Storefront")

_LOCK = threading.Lock()

ERRORS = {
    401: "No API key, or an unknown or revoked one",
    403: "The key's scope or origin does not allow this call",
    404: "Unknown customer",
    422: "Invalid n",
    429: "Too many requests for this key; see Retry-After",
}


class NextPurchaseQuery(Schema):
    n = Integer(load_default=10, validate=Range(1, 100), metadata={"description": "how many items"})


class NextPurchaseItemOut(Schema):
    sku = String(required=True)
    title = String(required=True)
    price = Float(required=True)
    currency = String(required=True, metadata={"example": "GBP"})
    url = String(allow_none=True)
    image_url = String(allow_none=True)
    is_new = Boolean(metadata={"description": "true: the customer has not bought it before"})
    score = Float(
        metadata={
            "description": "the ranker's estimated chance of buying it within horizon_days (the list's order)"
        }
    )
    expected_on = Date(
        allow_none=True,
        metadata={"description": "when the customer will probably buy it again (null for a new item)"},
    )
    expected_in_days = Float(allow_none=True, metadata={"description": "days from as_of to expected_on"})
    probability = Float(
        allow_none=True,
        metadata={
            "description": "model estimate of buying it within horizon_days: P(alive) x the customer's "
            "propensity to rebuy it x the chance its repurchase interval ends in the window (not calibrated)"
        },
    )
    purchases = Integer(metadata={"description": "days on which the customer bought it"})
    last_bought_on = Date(allow_none=True)


class NextPurchaseOut(Schema):
    customer_id = String()
    as_of = Date(
        metadata={
            "description": "the day predictions start from: today, or the newest order's day if that is "
            "earlier (historical data)"
        }
    )
    horizon_days = Float(metadata={"description": "window of the item probabilities"})
    purchase_days = Integer(
        metadata={"description": "days with a purchase (several orders a day count once)"}
    )
    last_purchase_on = Date(allow_none=True)
    p_alive = Float(
        allow_none=True, metadata={"description": "BG/NBD probability the customer is still active"}
    )
    expected_purchases_30d = Float(allow_none=True, metadata={"description": "BG/NBD, purchase days"})
    expected_purchases_90d = Float(allow_none=True)
    probability_30d = Float(allow_none=True, metadata={"description": "P(at least one purchase in 30 days)"})
    next_purchase_on = Date(
        allow_none=True,
        metadata={"description": "median date of the next purchase if the customer is active"},
    )
    items = List(Nested(NextPurchaseItemOut))
    note = String(
        allow_none=True,
        metadata={
            "description": (
                "why estimates are missing, when they are; or that the learned ranking is not available "
                "yet (before its first training: items bought before, ranked by their repurchase chance)"
            )
        },
    )


def next_purchase_service() -> NextPurchaseService:
    """The process's next-purchase model holder, built on first use next to the model store."""
    ctx = current_app.extensions["giftrec"]
    service = ctx.services.get("next_purchase")
    if service is None:
        with _LOCK:
            service = ctx.services.get("next_purchase")
            if service is None:
                service = NextPurchaseService(ctx.services["serving"], ctx.sessions)
                ctx.services["next_purchase"] = service
    return service


def _body(result: next_purchase.NextPurchase) -> dict[str, Any]:
    def day(value: Any) -> str | None:
        return None if value is None else value.isoformat()

    return {
        "customer_id": result.customer_id,
        "as_of": result.as_of.isoformat(),
        "horizon_days": result.horizon_days,
        "purchase_days": result.purchase_days,
        "last_purchase_on": day(result.last_purchase_on),
        "p_alive": result.p_alive,
        "expected_purchases_30d": result.expected_purchases_30d,
        "expected_purchases_90d": result.expected_purchases_90d,
        "probability_30d": result.probability_30d,
        "next_purchase_on": day(result.next_purchase_on),
        "items": [
            {
                "sku": it.sku,
                "title": it.title,
                "price": float(it.price),
                "currency": it.currency,
                "url": it.url,
                "image_url": it.image_url,
                "is_new": it.is_new,
                "score": it.score,
                "expected_on": day(it.expected_on),
                "expected_in_days": it.expected_in_days,
                "probability": it.probability,
                "purchases": it.purchases,
                "last_bought_on": day(it.last_bought_on),
            }
            for it in result.items
        ],
        "note": result.note,
    }


@bp.get("/customers/<customer_id>/next-purchase")
@bp.doc(
    summary="Next likely purchase of a customer",
    description=(
        "When the customer will probably buy again (BG/NBD: probability of being active, expected purchases "
        "in 30 and 90 days) and what: products they bought before, ranked by repurchase timing, "
        "recency-weighted frequency, items in season and what similar customers buy (the ranking "
        "`giftrec evaluate` measures), each with the chance of buying it within `horizon_days` and "
        "the expected date. Only active, in-stock products. The "
        "customer's purchase history: server keys only (a widget key is public)."
    ),
    responses=ERRORS,
    security=auth.SECURITY,
)
@auth.require("server")
@bp.input(NextPurchaseQuery, location="query", arg_name="query")
@bp.output(NextPurchaseOut)
def customer_next_purchase(customer_id: str, query: dict[str, Any]) -> Any:
    return jsonify(_body(next_purchase.next_purchase_for(next_purchase_service(), customer_id, query["n"])))


def register(app: Any) -> None:
    """Mount the blueprint with the /v1 per-key rate limit (call after the storefront blueprint)."""
    app.register_blueprint(bp)
    auth.protect(app, bp)
    # which trained ranker this process serves (and, polled, it is loaded before the first request)
    app.extensions["giftrec"].readiness_probes["next_purchase"] = lambda: next_purchase_service().status()
