"""GET /v1/customers/{id}/segment: a customer's RFM segment, scores, value and recent segment moves."""

from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint, Schema
from apiflask.fields import Date, Float, Integer, List, Nested, String
from flask import current_app, jsonify

from api import auth
from api.db import get_session
from domain.lifecycle.segments import CustomerSegment, customer_segment

bp = APIBlueprint("segments", __name__, url_prefix="/v1", tag="Lifecycle")

ERRORS = {
    401: "No API key, or an unknown or revoked one",
    403: "The key is not a server (or admin) key",
    404: "Unknown or erased customer, or no RFM snapshot of them yet",
    429: "Too many requests for this key; see Retry-After",
}


class SegmentMoveOut(Schema):
    on = Date(metadata={"description": "the first snapshot day in the new segment"})
    from_segment = String(data_key="from")
    to_segment = String(data_key="to")


class SegmentOut(Schema):
    customer_id = String()
    taken_on = Date(metadata={"description": "day of the newest nightly RFM snapshot"})
    as_of = Date(metadata={"description": "the data's clock: taken_on, or the newest order's day if earlier"})
    segment = String(metadata={"description": "first matching rule of rfm.segments, or `others`"})
    segment_since = Date(metadata={"description": "first snapshot day of the current segment in the window"})
    scores = Nested(
        Schema.from_dict({"r": Integer(), "f": Integer(), "m": Integer()})(),
        metadata={"description": "1-5 each, 5 = most recent / most purchase days / highest spend"},
    )
    recency_days = Integer(metadata={"description": "days since the last purchase day, at as_of"})
    frequency = Integer(metadata={"description": "purchase days (several orders a day count once)"})
    monetary = Float(metadata={"description": "net spend: sales minus returns"})
    expected_purchases = Float(
        allow_none=True, metadata={"description": "BG/NBD purchase days within horizon_days"}
    )
    clv = Float(
        allow_none=True,
        metadata={"description": "lifetime value over horizon_days, discounted (BG/NBD x Gamma-Gamma)"},
    )
    horizon_days = Integer()
    moves = List(
        Nested(SegmentMoveOut), metadata={"description": "segment changes in the window, newest first"}
    )


def _body(seg: CustomerSegment, horizon_days: int) -> dict[str, Any]:
    return {
        "customer_id": seg.customer_id,
        "taken_on": seg.taken_on.isoformat(),
        "as_of": seg.as_of.isoformat(),
        "segment": seg.segment,
        "segment_since": seg.segment_since.isoformat(),
        "scores": {"r": seg.r_score, "f": seg.f_score, "m": seg.m_score},
        "recency_days": seg.recency_days,
        "frequency": seg.frequency,
        "monetary": float(seg.monetary),
        "expected_purchases": seg.expected_purchases,
        "clv": None if seg.clv is None else float(seg.clv),
        "horizon_days": horizon_days,
        "moves": [{"on": m.on.isoformat(), "from": m.from_segment, "to": m.to_segment} for m in seg.moves],
    }


@bp.get("/customers/<customer_id>/segment")
@bp.doc(
    summary="RFM segment and value of a customer",
    description=(
        "From the newest nightly RFM snapshot: the segment, the recency / frequency / monetary scores, the "
        "expected purchases and lifetime value over `horizon_days`, and the segment moves of the last "
        "`rfm.history_days` days. Personal: server keys only."
    ),
    responses=ERRORS,
    security=auth.SECURITY,
)
@auth.require("server")
@bp.output(SegmentOut)
def get_customer_segment(customer_id: str) -> Any:
    rfm = current_app.extensions["giftrec"].settings.rfm
    seg = customer_segment(get_session(), customer_id, rfm.history_days)
    return jsonify(_body(seg, rfm.clv_horizon_days))


def register(app: Any) -> None:
    """Mount the blueprint with the /v1 per-key rate limit (call after the storefront blueprint)."""
    app.register_blueprint(bp)
    auth.protect(app, bp)
