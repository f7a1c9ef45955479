"""Reminder emails: render ready/approved selections in the customer's language and queue each version once.

Consent is honoured (no consent, unsubscribed or erased: the selection is skipped with the reason), a
stopped date is never mailed, and the frequency cap across all marketing email defers a reminder (its
outbox row waits) unless the wait would run past the occasion. An edit cancels the queued email of a
selection (``domain.reminders.selections``); the next run queues the version then current, under its own
outbox key (``selection:<id>`` for version 1, ``selection:<id>:v<n>`` after).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from sqlalchemy import Select, exists, select
from sqlalchemy.orm import Session

from config import Settings
from domain.messaging.outbox import cancel_queued, enqueue, lock_customer_mail, next_marketing_slot
from domain.messaging.signing import LinkSigner
from domain.models import (
    Customer,
    GiftSelection,
    ImportantDate,
    OutboundEmail,
    Product,
    Recipient,
    SelectionPick,
    User,
)
from domain.reminders.occasions import local_midnight_utc

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
DEFAULT_LOCALE = "en"
QUEUEABLE_STATUSES = ("ready", "approved")
#: ``occasion_key`` prefix of the selections that are trigger emails (queued by ``domain.lifecycle``).
TRIGGER_KEY = "trigger:"
#: Ids per ``IN (...)`` list: well under SQLite's and PostgreSQL's parameter limits.
IN_CHUNK = 900

MONTHS = {
    "en": "January February March April May June July August September October November December".split(),
    "ru": "января февраля марта апреля мая июня июля августа сентября октября ноября декабря".split(),
}
OCCASIONS = {
    "en": {
        "birthday": "birthday",
        "wedding_anniversary": "wedding anniversary",
        "name_day": "name day",
        "company_anniversary": "company anniversary",
        "new_year": "New Year",
        "valentines_day": "Valentine's Day",
        "feb_23": "Defender of the Fatherland Day",
        "march_8": "International Women's Day",
        "mothers_day": "Mother's Day",
        "fathers_day": "Father's Day",
        "christmas": "Christmas",
    },
    "ru": {
        "birthday": "день рождения",
        "wedding_anniversary": "годовщина свадьбы",
        "name_day": "именины",
        "company_anniversary": "годовщина компании",
        "new_year": "Новый год",
        "valentines_day": "День святого Валентина",
        "feb_23": "23 Февраля",
        "march_8": "8 Марта",
        "mothers_day": "День матери",
        "fathers_day": "День отца",
        "christmas": "Рождество",
    },
}
EXPLANATIONS = {
    "en": {
        "similar_to_your_purchases": "Close to what you have chosen before",
        "matches_recipient_interests": "Matches their interests",
        "popular_before_this_occasion": "A favourite before this occasion",
        "bestseller": "One of our bestsellers",
        "chosen_by_account_manager": "Chosen for you by your account manager",
    },
    "ru": {
        "similar_to_your_purchases": "Похоже на то, что вы выбирали раньше",
        "matches_recipient_interests": "Под их увлечения",
        "popular_before_this_occasion": "Популярно перед этим праздником",
        "bestseller": "Один из хитов продаж",
        "chosen_by_account_manager": "Выбрано вашим персональным менеджером",
    },
}
TIER_NAMES = {
    "en": ["A small token", "A thoughtful gift", "Something special"],
    "ru": ["Приятная мелочь", "Продуманный подарок", "Особенный подарок"],
}
CURRENCY_SYMBOLS = {"GBP": "£", "EUR": "€", "USD": "$", "RUB": "₽"}


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    body_text: str
    body_html: str
    locale: str


def choose_locale(locale: str | None, template: str = "reminder") -> str:
    """The customer's language if a template exists for it ('ru-RU' -> 'ru'), else English."""
    language = (locale or "").replace("_", "-").split("-")[0].lower()
    if language and _has_template(template, language):
        return language
    return DEFAULT_LOCALE


@lru_cache(maxsize=256)
def _has_template(template: str, language: str) -> bool:
    """The templates ship with the code: looked up once per process, not once per email."""
    return (TEMPLATES / "email" / template / language).is_dir()


@lru_cache(maxsize=1)
def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,  # the templates ship with the code: no stat of three files per email
    )
    return env


def render_email(template: str, locale: str, context: dict[str, Any]) -> RenderedEmail:
    """Render templates/email/<template>/<locale>/{subject.txt, body.txt, body.html}."""
    locale = choose_locale(locale, template)
    env = _environment()
    folder = f"email/{template}/{locale}"
    subject = " ".join(env.get_template(f"{folder}/subject.txt").render(context).split())
    text = env.get_template(f"{folder}/body.txt").render(context)
    html = env.get_template(f"{folder}/body.html").render(context)
    return RenderedEmail(subject, text, html, locale)


def format_money(amount: Decimal | float, currency: str, locale: str) -> str:
    symbol = CURRENCY_SYMBOLS.get(currency.upper(), currency.upper() + " ")
    if locale == "ru":
        number = f"{Decimal(amount):,.2f}".replace(",", "\u00a0").replace(".", ",")
        return f"{number}\u00a0{symbol.strip()}"
    return f"{symbol}{Decimal(amount):,.2f}"


def format_date(day: dt.date, locale: str) -> str:
    return f"{day.day} {MONTHS.get(locale, MONTHS['en'])[day.month - 1]} {day.year}"


def occasion_label(code: str, locale: str, title: str | None = None) -> str:
    if title:
        return title
    return OCCASIONS.get(locale, {}).get(code) or OCCASIONS["en"].get(code) or code.replace("_", " ")


def sold_picks(session: Session, selection: GiftSelection) -> list[tuple[SelectionPick, Product]]:
    """The selection's picks in tier and position order, with their products, leaving out products no
    longer sold (inactive or out of stock): what an email may show. One query."""
    ids = [pk.product_id for pk in selection.picks]
    products = {p.id: p for p in session.scalars(select(Product).where(Product.id.in_(ids)))}
    out = []
    for pick in sorted(selection.picks, key=lambda p: (p.tier, p.position)):
        product = products.get(pick.product_id)
        if product is not None and product.is_active and product.in_stock:
            out.append((pick, product))
    return out


def sold_picks_many(
    session: Session, selection_ids: list[int]
) -> dict[int, list[tuple[SelectionPick, Product]]]:
    """:func:`sold_picks` of many selections: {selection id: picks with products still sold}, one query
    per chunk of ids."""
    out: dict[int, list[tuple[SelectionPick, Product]]] = {}
    for start in range(0, len(selection_ids), IN_CHUNK):
        rows = session.execute(
            sold_picks_query(selection_ids[start : start + IN_CHUNK], SelectionPick, Product)
        )
        for pick, product in rows.all():
            out.setdefault(pick.selection_id, []).append((pick, product))
    return out


def sold_picks_query(selection_ids: list[int], *columns: Any) -> Select[Any]:
    """`columns` of the selections' picks whose product is still sold (active, in stock), by selection,
    tier and position."""
    return (
        select(*columns)
        .join(Product, Product.id == SelectionPick.product_id)
        .where(
            SelectionPick.selection_id.in_(selection_ids),
            Product.is_active.is_(True),
            Product.in_stock.is_(True),
        )
        .order_by(SelectionPick.selection_id, SelectionPick.tier, SelectionPick.position)
    )


def manager_name(session: Session, selection: GiftSelection, customer: Customer) -> str | None:
    """Who signs the selection's personal note: the customer's account manager, when there is a note."""
    if not selection.note or customer.account_manager_id is None:
        return None
    manager = session.get(User, customer.account_manager_id)
    return manager.name if manager is not None else None


def reminder_context(
    session: Session, selection: GiftSelection, customer: Customer, signer: LinkSigner, locale: str
) -> dict[str, Any]:
    """Everything the reminder templates show; picks of products no longer sold are left out."""
    recipient = session.get(Recipient, selection.recipient_id) if selection.recipient_id else None
    date = session.get(ImportantDate, selection.important_date_id) if selection.important_date_id else None
    tiers: dict[int, list[dict[str, Any]]] = {}
    for pick, product in sold_picks(session, selection):
        explanation = EXPLANATIONS.get(locale, {}).get(pick.explanation)
        if explanation is None and locale == DEFAULT_LOCALE and " " in pick.explanation:
            explanation = pick.explanation  # a manager's own words
        tiers.setdefault(pick.tier, []).append(
            {
                "title": product.title,
                "price": format_money(product.price, product.currency, locale),
                "image_url": product.image_url,
                "url": signer.click_url(
                    customer_id=customer.id, selection_id=selection.id, product_id=product.id
                ),
                "explanation": explanation,
            }
        )
    author = manager_name(session, selection, customer)
    names = TIER_NAMES.get(locale, TIER_NAMES["en"])
    tier_list = [
        {"name": names[min(i, len(names) - 1)], "picks": picks}
        for i, (_, picks) in enumerate(sorted(tiers.items()))
    ]
    return {
        "customer_name": customer.name,
        "recipient_name": recipient.name if recipient else None,
        "occasion": occasion_label(selection.occasion_code, locale, date.title if date else None),
        "occasion_on": format_date(selection.occasion_on, locale),
        "tiers": tier_list,
        "note": selection.note,
        "note_author": author,
        "stop_url": signer.stop_url(customer_id=customer.id, occasion_key=selection.occasion_key),
        "unsubscribe_url": signer.unsubscribe_url(customer_id=customer.id),
    }


def render_reminder(
    session: Session, selection: GiftSelection, customer: Customer, signer: LinkSigner
) -> RenderedEmail:
    locale = choose_locale(customer.locale)
    return render_email("reminder", locale, reminder_context(session, selection, customer, signer, locale))


def consent_problem(customer: Customer) -> str | None:
    """Why no marketing email may go to the customer, or None."""
    if customer.erased_at is not None:
        return "customer erased"
    if not customer.email:
        return "no email address"
    if customer.unsubscribed_at is not None:
        return "customer unsubscribed"
    if not customer.email_consent:
        return "no email consent"
    return None


@dataclass
class QueueReport:
    queued: list[int] = field(default_factory=list)
    #: Queued, but held back by the frequency cap: {selection id: earliest send time}.
    deferred: dict[int, dt.datetime] = field(default_factory=dict)
    skipped: dict[int, str] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)

    def summary(self) -> str:
        return (
            f"queued {len(self.queued)} (deferred by the frequency cap {len(self.deferred)}), "
            f"skipped {len(self.skipped)}, failed {len(self.failed)}"
        )


def _skip(selection: GiftSelection, reason: str, report: QueueReport) -> None:
    selection.status, selection.status_reason = "skipped", reason
    report.skipped[selection.id] = reason


def _queue_one(
    session: Session,
    settings: Settings,
    signer: LinkSigner,
    selection: GiftSelection,
    now: dt.datetime,
    report: QueueReport,
) -> None:
    customer = session.get(Customer, selection.customer_id)
    if customer is None:  # pragma: no cover - the foreign key cascades
        return
    problem = consent_problem(customer)
    if problem:
        return _skip(selection, problem, report)
    if selection.important_date_id is not None:
        date = session.get(ImportantDate, selection.important_date_id)
        if date is None or date.is_stopped:
            return _skip(selection, "reminder stopped", report)
    deadline = email_deadline(selection.occasion_on, customer.time_zone, settings)
    if now >= deadline:
        return _skip(selection, "the occasion came before the email could be queued", report)
    lock_customer_mail(session, customer.id)  # two queueing runs side by side see each other's rows
    _give_way(session, customer.id)
    slot = next_marketing_slot(session, customer.id, now, settings.mail.frequency_cap_days)
    if slot > now and slot >= deadline:
        return _skip(
            selection,
            f"frequency cap: no marketing email allowed before {slot:%Y-%m-%d %H:%M} UTC, after the occasion",
            report,
        )
    locale = choose_locale(customer.locale)
    context = reminder_context(session, selection, customer, signer, locale)
    if not context["tiers"]:
        return _skip(selection, "no pick is still active and in stock", report)
    email = render_email("reminder", locale, context)
    row = enqueue(
        session,
        dedupe_key=outbox_key(selection),
        kind="reminder",
        to_address=str(customer.email),
        subject=email.subject,
        body_text=email.body_text,
        body_html=email.body_html,
        customer_id=customer.id,
        selection_id=selection.id,
        not_before=slot,
        deadline_at=deadline,
    )
    if row is None:
        return
    report.queued.append(selection.id)
    if slot > now:
        report.deferred[selection.id] = slot
        selection.status_reason = f"email deferred by the frequency cap until {slot:%Y-%m-%d %H:%M} UTC"


def _give_way(session: Session, customer_id: int) -> None:
    """Reminders win: the customer's trigger emails not yet sent are skipped and their queued mail cancelled,
    so that the frequency cap holds this reminder's place."""
    reason = "a reminder wins: one is on its way to this customer"
    open_triggers = list(
        session.scalars(
            select(GiftSelection.id).where(
                GiftSelection.customer_id == customer_id,
                GiftSelection.occasion_key.startswith(TRIGGER_KEY),
                GiftSelection.status.in_(("planned", "ready", "awaiting_review", "approved")),
            )
        )
    )
    if not open_triggers:
        return
    cancel_queued(session, reason=reason, selection_ids=open_triggers)
    for selection in session.scalars(select(GiftSelection).where(GiftSelection.id.in_(open_triggers))):
        selection.status, selection.status_reason = "skipped", reason


def email_deadline(occasion_on: dt.date, time_zone: str, settings: Settings) -> dt.datetime:
    """When a reminder must have left: local midnight of the occasion minus ``mail.deadline_margin_hours``."""
    margin = dt.timedelta(hours=settings.mail.deadline_margin_hours)
    return local_midnight_utc(occasion_on, time_zone) - margin


def outbox_key(selection: GiftSelection) -> str:
    """The outbox's dedupe key of this version of the selection's email."""
    if selection.version <= 1:
        return f"selection:{selection.id}"
    return f"selection:{selection.id}:v{selection.version}"


def queue_reminders(
    session: Session,
    settings: Settings,
    now: dt.datetime,
    *,
    signer: LinkSigner | None = None,
    selection_ids: list[int] | None = None,
) -> QueueReport:
    """Queue one reminder email per ready/approved selection that has none but cancelled ones (all of
    them, or those of ``selection_ids``); never commits."""
    signer = signer or LinkSigner.from_settings(settings)
    has_email = exists().where(
        OutboundEmail.selection_id == GiftSelection.id,
        OutboundEmail.kind == "reminder",
        OutboundEmail.status != "cancelled",
    )
    stmt = select(GiftSelection).where(
        GiftSelection.status.in_(QUEUEABLE_STATUSES),
        ~GiftSelection.occasion_key.startswith(TRIGGER_KEY),  # trigger emails: domain.lifecycle
        ~has_email,
    )
    if selection_ids is not None:
        stmt = stmt.where(GiftSelection.id.in_(selection_ids))
    selections = session.scalars(stmt.order_by(GiftSelection.occasion_on, GiftSelection.id)).all()
    report = QueueReport()
    for selection in selections:
        try:
            with session.begin_nested():
                _queue_one(session, settings, signer, selection, now, report)
        except Exception as exc:  # one bad selection is logged and counted; the batch carries on
            log.exception("queue_reminders: selection %s failed", selection.id)
            report.failed[selection.id] = f"{type(exc).__name__}: {exc}"
    return report
