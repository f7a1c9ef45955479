"""Curated selections as plain data for stores that render reminder emails on their own email platform."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from domain.messaging.outbox import next_marketing_slot
from domain.messaging.signing import LinkSigner
from domain.models import Customer, GiftSelection, ImportantDate, Product, Recipient
from domain.reminders.queueing import consent_problem


def _sending(session: Session, customer: Customer, now: dt.datetime, cap_days: int) -> dict[str, Any]:
    """May a marketing email go to the customer: never without consent (and the reason), else from when
    the frequency cap allows (``not_before``; None when that is now)."""
    problem = consent_problem(customer)
    if problem is not None:
        return {"allowed": False, "reason": problem, "not_before": None}
    slot = next_marketing_slot(session, customer.id, now, cap_days)
    if slot > now:
        iso = slot.isoformat(timespec="seconds") + "Z"
        return {"allowed": False, "reason": f"frequency cap: not before {iso}", "not_before": iso}
    return {"allowed": True, "reason": None, "not_before": None}


def describe_selections(
    session: Session,
    signer: LinkSigner,
    selections: Sequence[GiftSelection],
    *,
    now: dt.datetime,
    cap_days: int,
) -> list[dict[str, Any]]:
    """One dict per selection: occasion, recipient, tiers of picks with product cards and signed links,
    and whether it may be emailed now (``sending``: consent, unsubscribe, erasure, the frequency cap).

    Product links are giftrec's signed click URLs (a click is recorded, then the shopper is redirected),
    so clicks from the store's own emails are attributed like ours. A few queries per customer.
    """
    if not selections:
        return []
    product_ids = {p.product_id for s in selections for p in s.picks}
    products = (
        {p.id: p for p in session.scalars(select(Product).where(Product.id.in_(product_ids)))}
        if product_ids
        else {}
    )
    wanted = {s.customer_id for s in selections}
    people = {c.id: c for c in session.scalars(select(Customer).where(Customer.id.in_(wanted)))}
    customers = {cid: c.external_id for cid, c in people.items()}
    sending = {cid: _sending(session, c, now, cap_days) for cid, c in people.items()}
    recipient_ids = {s.recipient_id for s in selections if s.recipient_id is not None}
    recipients = (
        {r.id: r for r in session.scalars(select(Recipient).where(Recipient.id.in_(recipient_ids)))}
        if recipient_ids
        else {}
    )
    date_ids = {s.important_date_id for s in selections if s.important_date_id is not None}
    dates = (
        {d.id: d for d in session.scalars(select(ImportantDate).where(ImportantDate.id.in_(date_ids)))}
        if date_ids
        else {}
    )
    out = []
    for sel in selections:
        recipient = recipients.get(sel.recipient_id) if sel.recipient_id is not None else None
        date = dates.get(sel.important_date_id) if sel.important_date_id is not None else None
        tiers: dict[int, list[dict[str, Any]]] = {}
        for pick in sorted(sel.picks, key=lambda p: (p.tier, p.position)):
            product = products[pick.product_id]
            tiers.setdefault(pick.tier, []).append(
                {
                    "sku": product.sku,
                    "title": product.title,
                    "price": float(product.price),
                    "currency": product.currency,
                    "url": product.url,
                    "image_url": product.image_url,
                    "click_url": signer.click_url(
                        customer_id=sel.customer_id, selection_id=sel.id, product_id=product.id
                    ),
                    "source": pick.source,
                    "explanation": pick.explanation,
                    "position": pick.position,
                    "available": bool(product.is_active and product.in_stock),
                }
            )
        bounds = list(sel.tier_bounds or [])
        out.append(
            {
                "id": sel.id,
                "customer_id": customers.get(sel.customer_id),
                "status": sel.status,
                "occasion": {
                    "code": sel.occasion_code,
                    "on": sel.occasion_on.isoformat(),
                    "title": date.title if date is not None else None,
                },
                "recipient": (
                    {"name": recipient.name, "relationship": recipient.relationship_}
                    if recipient is not None
                    else None
                ),
                "tiers": [
                    {
                        "tier": tier,
                        "min_price": bounds[tier - 1][0] if tier - 1 < len(bounds) else None,
                        "max_price": bounds[tier - 1][1] if tier - 1 < len(bounds) else None,
                        "picks": picks,
                    }
                    for tier, picks in sorted(tiers.items())
                ],
                "stop_url": signer.stop_url(customer_id=sel.customer_id, occasion_key=sel.occasion_key),
                "unsubscribe_url": signer.unsubscribe_url(customer_id=sel.customer_id),
                "updated_at": sel.updated_at.isoformat(timespec="seconds") + "Z",
                "sending": (
                    sending[sel.customer_id]
                    if sel.status not in ("sent", "clicked", "purchased")
                    else {"allowed": False, "reason": "already sent", "not_before": None}
                ),
            }
        )
    return out
