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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from config import Settings
from domain.messaging.outbox import IN_CHUNK, enqueue_many, next_marketing_slots
from domain.messaging.signing import LinkSigner
from domain.models import (
    Customer,
    GiftSelection,
    OutboundEmail,
    Product,
    SelectionPick,
    TriggerAssignment,
    User,
)
from domain.reminders.queueing import (
    QUEUEABLE_STATUSES,
    TIER_NAMES,
    TRIGGER_KEY,
    RenderedEmail,
    choose_locale,
    consent_problem,
    format_money,
    manager_name,
    outbox_key,
    render_email,
    sold_picks_query,
)

__all__ = [
    "TRIGGER_KEY",
    "TriggerQueueReport",
    "queue_trigger_emails",
    "reminder_blocks",
    "render_trigger_email",
    "reminder_blocks_many",
]

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
    return reminder_blocks_many(session, settings, [customer_id], now).get(customer_id)


def reminder_blocks_many(
    session: Session, settings: Settings, customer_ids: Iterable[int], now: dt.datetime
) -> dict[int, str]:
    """:func:`reminder_blocks` of many customers: {customer id: why} for those who must give way.

    Two queries per chunk of ids: the open reminders and the newest marketing email of each customer.
    """
    ids = sorted(set(customer_ids))
    out: dict[int, str] = {}
    for start in range(0, len(ids), IN_CHUNK):
        chunk = ids[start : start + IN_CHUNK]
        for cid in session.scalars(
            select(GiftSelection.customer_id)
            .where(
                GiftSelection.customer_id.in_(chunk),
                ~GiftSelection.occasion_key.startswith(TRIGGER_KEY),
                GiftSelection.status.in_(OPEN_REMINDER_STATUSES),
                GiftSelection.occasion_on >= now.date(),
            )
            .distinct()
        ):
            out[cid] = "a reminder wins: one is on its way to this customer"
    for cid, slot in next_marketing_slots(session, ids, now, settings.mail.frequency_cap_days).items():
        out.setdefault(cid, _cap_reason(slot))
    return out


def _cap_reason(slot: dt.datetime) -> str:
    return f"frequency cap: no marketing email allowed before {slot:%Y-%m-%d %H:%M} UTC"


@dataclass
class TriggerQueueReport:
    queued: list[int] = field(default_factory=list)
    skipped: dict[int, str] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)

    def summary(self) -> str:
        queued, skipped, failed = len(self.queued), len(self.skipped), len(self.failed)
        return f"trigger emails queued {queued}, skipped {skipped}, failed {failed}"


@dataclass
class _Preloaded:
    """What the emails of a batch of selections need, read in bulk before any is rendered."""

    customers: dict[int, Customer]
    blocks: dict[int, str]
    details: dict[int, dict[str, Any]]
    #: {selection id: its picks of products still sold, in tier and position order}, as plain rows
    picks: dict[int, list[Any]]


def _preload(
    session: Session, settings: Settings, selections: Sequence[GiftSelection], now: dt.datetime
) -> _Preloaded:
    """A fixed number of queries per chunk of ids, none per selection."""
    customer_ids = sorted({s.customer_id for s in selections})
    selection_ids = [s.id for s in selections]
    customers: dict[int, Customer] = {}
    for start in range(0, len(customer_ids), IN_CHUNK):
        chunk = customer_ids[start : start + IN_CHUNK]
        customers.update((c.id, c) for c in session.scalars(select(Customer).where(Customer.id.in_(chunk))))
    noted = {customers[s.customer_id].account_manager_id for s in selections if s.note}
    managers = sorted(m for m in noted if m is not None)
    if managers:  # into the session's identity map: manager_name's session.get then reads no row
        session.scalars(select(User).where(User.id.in_(managers))).all()
    details: dict[int, dict[str, Any]] = {}
    for start in range(0, len(selection_ids), IN_CHUNK):
        for sid, extra in session.execute(
            select(TriggerAssignment.selection_id, TriggerAssignment.details).where(
                TriggerAssignment.selection_id.in_(selection_ids[start : start + IN_CHUNK])
            )
        ):
            if sid is not None:
                details[sid] = dict(extra or {})
    return _Preloaded(
        customers=customers,
        blocks=reminder_blocks_many(session, settings, customer_ids, now),
        details=details,
        picks=_sold_picks(session, selection_ids),
    )


def _sold_picks(session: Session, selection_ids: list[int]) -> dict[int, list[Any]]:
    """What the emails show of each selection's picks whose product is still sold: one query per chunk
    of ids, read as plain rows (no ORM object per pick and product: a run has a hundred thousand)."""
    out: dict[int, list[Any]] = {}
    for start in range(0, len(selection_ids), IN_CHUNK):
        chunk = selection_ids[start : start + IN_CHUNK]
        for row in session.execute(
            sold_picks_query(
                chunk,
                SelectionPick.selection_id,
                SelectionPick.tier,
                SelectionPick.explanation,
                Product.id,
                Product.title,
                Product.price,
                Product.currency,
                Product.image_url,
            )
        ):
            out.setdefault(row.selection_id, []).append(row)
    return out


def _context(
    session: Session,
    selection: GiftSelection,
    customer: Customer,
    signer: LinkSigner,
    settings: Settings,
    loaded: _Preloaded,
) -> dict[str, Any]:
    trigger = selection.occasion_code
    details = loaded.details.get(selection.id, {})
    tiers: dict[int, list[dict[str, Any]]] = {}
    for pick in loaded.picks.get(selection.id, []):
        tiers.setdefault(pick.tier, []).append(
            {
                "title": pick.title,
                "price": format_money(pick.price, pick.currency, "en"),
                "image_url": pick.image_url,
                "url": signer.click_url(
                    customer_id=customer.id, selection_id=selection.id, product_id=pick.id
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


def _message(
    session: Session,
    settings: Settings,
    signer: LinkSigner,
    selection: GiftSelection,
    now: dt.datetime,
    loaded: _Preloaded,
) -> dict[str, Any] | str:
    """The selection's outbox message (the keyword arguments of ``enqueue``), or why it is skipped."""
    customer = loaded.customers.get(selection.customer_id)
    if customer is None:  # pragma: no cover - the foreign key cascades
        return "customer gone"
    problem = consent_problem(customer) or loaded.blocks.get(customer.id)
    if problem:
        return problem
    trigger = selection.occasion_code
    context = _context(session, selection, customer, signer, settings, loaded)
    if not context["sections"] and trigger != "winback":
        return "no pick is still active and in stock"
    template = str(getattr(settings.triggers, f"{trigger}_template", trigger))
    email = render_email(template, choose_locale(customer.locale, template), context)
    return {
        "dedupe_key": outbox_key(selection),
        "kind": trigger,
        "to_address": str(customer.email),
        "subject": email.subject,
        "body_text": email.body_text,
        "body_html": email.body_html,
        "customer_id": customer.id,
        "selection_id": selection.id,
        "not_before": now,
    }


def queue_trigger_emails(
    session: Session, settings: Settings, now: dt.datetime, *, signer: LinkSigner | None = None
) -> TriggerQueueReport:
    """Queue one email per ready/approved trigger selection without one (cancelled ones aside); never
    commits.

    Everything the emails need is read in bulk first, the messages are rendered in selection order (a
    customer's first email of the run puts the rest of theirs behind the frequency cap, as the cap would
    once it is queued), and written in bulk; a key already in the outbox is left out by the database.
    """
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
    if not selections:
        return report
    loaded = _preload(session, settings, selections, now)
    cap_days = settings.mail.frequency_cap_days
    capped = _cap_reason(now + dt.timedelta(days=cap_days))
    messages: list[dict[str, Any]] = []
    for selection in selections:
        try:
            outcome = _message(session, settings, signer, selection, now, loaded)
        except Exception as exc:  # one bad selection is logged and counted; the batch carries on
            log.exception("queue_trigger_emails: selection %s failed", selection.id)
            report.failed[selection.id] = f"{type(exc).__name__}: {exc}"
            continue
        if isinstance(outcome, str):
            selection.status, selection.status_reason = "skipped", outcome[:300]
            report.skipped[selection.id] = outcome
            continue
        messages.append(outcome)
        report.queued.append(selection.id)
        if cap_days > 0:  # this email now counts against the customer's cap
            loaded.blocks.setdefault(selection.customer_id, capped)
    enqueue_many(session, messages)
    return report


def render_trigger_email(
    session: Session,
    settings: Settings,
    selection: GiftSelection,
    now: dt.datetime,
    *,
    signer: LinkSigner | None = None,
) -> RenderedEmail:
    """The email :func:`queue_trigger_emails` would render for a trigger selection at ``now``: its
    trigger's template and context, read as the queueing reads them. For the review page's preview: it
    checks neither consent nor the frequency cap, and queues nothing."""
    signer = signer or LinkSigner.from_settings(settings)
    loaded = _preload(session, settings, [selection], now)
    customer = loaded.customers[selection.customer_id]
    context = _context(session, selection, customer, signer, settings, loaded)
    template = str(getattr(settings.triggers, f"{selection.occasion_code}_template", selection.occasion_code))
    return render_email(template, choose_locale(customer.locale, template), context)
