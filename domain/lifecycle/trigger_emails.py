"""Trigger emails into the outbox: the same consent check, frequency cap and sending guarantees as reminders.

A trigger selection that is ``ready`` (or ``approved`` by the account manager) is rendered from its
trigger's template (``triggers.<name>_template`` under ``templates/email/``) and queued once per version
(``domain.reminders.queueing.outbox_key``). It is skipped, with the reason, when the customer may not be
emailed, and when a reminder stands beside it: **reminders win**, so a trigger email never goes while the
customer has a reminder open or any marketing email inside the frequency cap (it does not wait for the cap
either: a late trigger email is a different email).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from config import Settings
from domain.messaging.outbox import enqueue, next_marketing_slot
from domain.messaging.signing import LinkSigner
from domain.models import Customer, GiftSelection, OutboundEmail, TriggerAssignment
from domain.reminders.queueing import (
    QUEUEABLE_STATUSES,
    TIER_NAMES,
    TRIGGER_KEY,
    choose_locale,
    consent_problem,
    format_money,
    manager_name,
    outbox_key,
    render_email,
    sold_picks,
)

__all__ = ["TRIGGER_KEY", "TriggerQueueReport", "queue_trigger_emails", "reminder_blocks"]

log = logging.getLogger(__name__)

#: Reminder selections still on their way to the customer: while one is open, no trigger email goes.
OPEN_REMINDER_STATUSES = ("planned", "ready", "awaiting_review", "approved")

EXPLANATIONS = {
    "similar_to_your_purchases": "Close to what you have chosen before",
    "bestseller": "One of our bestsellers",
    "popular_before_this_occasion": "A favourite at this time of year",
    "matches_recipient_interests": "Matches your interests",
    "chosen_by_account_manager": "Chosen for you by your account manager",
    "running_out": "You may be running low",
    "left_in_cart": "Still in your basket",
    "review_this_product": "How do you like it?",
}
SECTION_NAMES = {
    "abandoned_cart": ["Still in your basket", "You may also like"],
    "running_out": ["Time to restock"],
    "new_arrivals": ["Just arrived, picked for you"],
    "winback": ["Picked for you"],
    "review_request": ["Your order"],
}


def reminder_blocks(session: Session, settings: Settings, customer_id: int, now: dt.datetime) -> str | None:
    """Why a trigger email must give way to a reminder (or to the frequency cap), or None."""
    open_reminder = session.scalar(
        select(GiftSelection.id)
        .where(
            GiftSelection.customer_id == customer_id,
            ~GiftSelection.occasion_key.startswith(TRIGGER_KEY),
            GiftSelection.status.in_(OPEN_REMINDER_STATUSES),
            GiftSelection.occasion_on >= now.date(),
        )
        .limit(1)
    )
    if open_reminder is not None:
        return "a reminder wins: one is on its way to this customer"
    slot = next_marketing_slot(session, customer_id, now, settings.mail.frequency_cap_days)
    if slot > now:
        return f"frequency cap: no marketing email allowed before {slot:%Y-%m-%d %H:%M} UTC"
    return None


@dataclass
class TriggerQueueReport:
    queued: list[int] = field(default_factory=list)
    skipped: dict[int, str] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)

    def summary(self) -> str:
        queued, skipped, failed = len(self.queued), len(self.skipped), len(self.failed)
        return f"trigger emails queued {queued}, skipped {skipped}, failed {failed}"


def _context(
    session: Session, selection: GiftSelection, customer: Customer, signer: LinkSigner, settings: Settings
) -> dict[str, Any]:
    trigger = selection.occasion_code
    assignment = session.scalar(
        select(TriggerAssignment).where(TriggerAssignment.selection_id == selection.id)
    )
    details = dict(assignment.details) if assignment is not None else {}
    tiers: dict[int, list[dict[str, Any]]] = {}
    for pick, product in sold_picks(session, selection):
        tiers.setdefault(pick.tier, []).append(
            {
                "title": product.title,
                "price": format_money(product.price, product.currency, "en"),
                "image_url": product.image_url,
                "url": signer.click_url(
                    customer_id=customer.id, selection_id=selection.id, product_id=product.id
                ),
                "explanation": EXPLANATIONS.get(pick.explanation)
                or (pick.explanation if " " in pick.explanation else None),
            }
        )
    names = SECTION_NAMES.get(trigger, TIER_NAMES["en"])
    sections = [
        {"name": names[min(i, len(names) - 1)], "picks": picks}
        for i, (_, picks) in enumerate(sorted(tiers.items()))
    ]
    author = manager_name(session, selection, customer)
    return {
        "customer_name": customer.name,
        "sections": sections,
        "category": details.get("category"),
        "order_id": details.get("order_id"),
        "discount_code": settings.triggers.winback_discount_code or None,
        "note": selection.note,
        "note_author": author,
        "unsubscribe_url": signer.unsubscribe_url(customer_id=customer.id),
    }


def _queue_one(
    session: Session, settings: Settings, signer: LinkSigner, selection: GiftSelection, now: dt.datetime
) -> str | None:
    """Queue the selection's email; returns why it was skipped instead, or None."""
    customer = session.get(Customer, selection.customer_id)
    if customer is None:  # pragma: no cover - the foreign key cascades
        return "customer gone"
    problem = consent_problem(customer) or reminder_blocks(session, settings, customer.id, now)
    if problem:
        return problem
    trigger = selection.occasion_code
    context = _context(session, selection, customer, signer, settings)
    if not context["sections"] and trigger != "winback":
        return "no pick is still active and in stock"
    template = str(getattr(settings.triggers, f"{trigger}_template", trigger))
    email = render_email(template, choose_locale(customer.locale, template), context)
    enqueue(
        session,
        dedupe_key=outbox_key(selection),
        kind=trigger,
        to_address=str(customer.email),
        subject=email.subject,
        body_text=email.body_text,
        body_html=email.body_html,
        customer_id=customer.id,
        selection_id=selection.id,
        not_before=now,
    )
    return None


def queue_trigger_emails(
    session: Session, settings: Settings, now: dt.datetime, *, signer: LinkSigner | None = None
) -> TriggerQueueReport:
    """Queue one email per ready/approved trigger selection without one (cancelled ones aside); never
    commits."""
    signer = signer or LinkSigner.from_settings(settings)
    has_email = exists().where(
        OutboundEmail.selection_id == GiftSelection.id, OutboundEmail.status != "cancelled"
    )
    selections = session.scalars(
        select(GiftSelection)
        .where(
            GiftSelection.occasion_key.startswith(TRIGGER_KEY),
            GiftSelection.status.in_(QUEUEABLE_STATUSES),
            ~has_email,
        )
        .order_by(GiftSelection.id)
    ).all()
    report = TriggerQueueReport()
    for selection in selections:
        try:
            with session.begin_nested():
                reason = _queue_one(session, settings, signer, selection, now)
                if reason is None:
                    report.queued.append(selection.id)
                else:
                    selection.status, selection.status_reason = "skipped", reason[:300]
                    report.skipped[selection.id] = reason
        except Exception as exc:  # one bad selection is logged and counted; the batch carries on
            log.exception("queue_trigger_emails: selection %s failed", selection.id)
            report.failed[selection.id] = f"{type(exc).__name__}: {exc}"
    return report
