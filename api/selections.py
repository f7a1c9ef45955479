"""Selection JSON for email templates: stores that send through their own platform pull the picks here."""

from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint, Schema
from apiflask.fields import Boolean, Float, Integer, List, Nested, String
from apiflask.validators import Length, OneOf
from flask import current_app

from api import auth
from api.db import get_session
from domain.errors import NotFound
from domain.messaging.outbox import record_external_send
from domain.messaging.signing import LinkSigner
from domain.models import SELECTION_STATUSES, Customer
from domain.models._types import utcnow
from domain.reminders import selections
from domain.reminders.feed import describe_selections

bp = APIBlueprint("selections", __name__, url_prefix="/v1", tag="Selections (email)")

#: Selection ids are 32-bit integers (the column's type on PostgreSQL): a larger one is not looked up. An id
#: above 2**63 - 1 was a 500: SQLite's driver cannot send it.
MAX_SELECTION_ID = 2**31 - 1

ERRORS = {
    401: "No API key, or an unknown or revoked one",
    403: "The key is not an email (or admin) key",
    404: "Unknown selection or customer",
    429: "Too many requests for this key",
}


class SelectionPickOut(Schema):
    sku = String()
    title = String()
    price = Float()
    currency = String()
    url = String(allow_none=True)
    image_url = String(allow_none=True)
    click_url = String(metadata={"description": "signed link: records the click, then redirects"})
    source = String()
    explanation = String()
    position = Integer()
    available = Boolean(metadata={"description": "still active and in stock"})


class TierOut(Schema):
    tier = Integer(metadata={"description": "1 = lowest price tier"})
    min_price = Float(allow_none=True)
    max_price = Float(allow_none=True)
    picks = List(Nested(SelectionPickOut))


class OccasionOut(Schema):
    code = String(metadata={"example": "birthday"})
    on = String(metadata={"description": "date of the occasion, ISO 8601"})
    title = String(allow_none=True)


class RecipientOut(Schema):
    name = String()
    relationship = String()


class SendingOut(Schema):
    allowed = Boolean(
        metadata={
            "description": "whether a marketing email may go to this customer now: consent given, not "
            "unsubscribed or erased, outside the frequency cap"
        }
    )
    reason = String(allow_none=True, metadata={"description": "why not, when not"})
    not_before = String(
        allow_none=True,
        metadata={"description": "ISO 8601 UTC: when the frequency cap allows the next email"},
    )


class SelectionOut(Schema):
    id = Integer()
    customer_id = String()
    status = String()
    occasion = Nested(OccasionOut)
    recipient = Nested(RecipientOut, allow_none=True)
    tiers = List(Nested(TierOut))
    stop_url = String(metadata={"description": "one-click 'stop this reminder' link"})
    unsubscribe_url = String()
    updated_at = String()
    sending = Nested(
        SendingOut, metadata={"description": "send only when allowed; then report it (POST .../sent)"}
    )


class SelectionListOut(Schema):
    selections = List(Nested(SelectionOut))


class SelectionQuery(Schema):
    status = String(validate=[Length(1, 20), OneOf(SELECTION_STATUSES)])


def _signer() -> LinkSigner:
    ctx = current_app.extensions["giftrec"]
    signer = ctx.services.get("link_signer")
    if signer is None:
        signer = ctx.services["link_signer"] = LinkSigner.from_settings(ctx.settings)
    return signer


def _describe(session: Any, found: list[Any]) -> list[dict[str, Any]]:
    settings = current_app.extensions["giftrec"].settings
    return describe_selections(
        session, _signer(), found, now=utcnow(), cap_days=settings.mail.frequency_cap_days
    )


@bp.get("/selections/<int:selection_id>")
@bp.doc(summary="One curated selection", responses=ERRORS, security=auth.SECURITY)
@auth.require("email")
@bp.output(SelectionOut)
def get_selection(selection_id: int) -> Any:
    if selection_id > MAX_SELECTION_ID:
        raise NotFound("selection", selection_id)
    session = get_session()
    selection = selections.get_selection(session, selection_id)
    return _describe(session, [selection])[0]


@bp.get("/customers/<customer_id>/selections")
@bp.doc(
    summary="A customer's curated selections",
    description="Soonest occasion first; `?status=ready` for those ready to be sent.",
    responses=ERRORS,
    security=auth.SECURITY,
)
@auth.require("email")
@bp.input(SelectionQuery, location="query", arg_name="query")
@bp.output(SelectionListOut)
def list_customer_selections(customer_id: str, query: dict[str, Any]) -> Any:
    session = get_session()
    found = selections.list_selections(session, customer_id, query.get("status"))
    return {"selections": _describe(session, found)}


class SentOut(Schema):
    recorded = Boolean(metadata={"description": "false when this selection had been reported before"})


@bp.post("/selections/<int:selection_id>/sent")
@bp.doc(
    summary="Report that the shop's email platform sent a selection",
    description=(
        "The selection becomes sent and the message counts against the customer's frequency cap, like one "
        "giftrec sent itself; anything giftrec had queued for it is cancelled. Reporting twice changes "
        "nothing."
    ),
    responses=ERRORS,
    security=auth.SECURITY,
)
@auth.require("email")
@bp.output(SentOut)
def report_sent(selection_id: int) -> Any:
    if selection_id > MAX_SELECTION_ID:
        raise NotFound("selection", selection_id)
    session = get_session()
    selection = selections.get_selection(session, selection_id)
    customer = session.get(Customer, selection.customer_id)
    assert customer is not None  # a selection's customer is never deleted (erasure deletes the selection)
    recorded = record_external_send(session, selection, customer, utcnow(), auth.actor())
    session.commit()
    return {"recorded": recorded}
