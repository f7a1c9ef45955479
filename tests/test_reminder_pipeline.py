"""End to end: the UCI sample, demo dates, a trained model, the scheduler's jobs and a real SMTP server.

Day by day as the scheduler would run them (train, plan, queue, send), for fixed days: a reminder arrives
exactly on its lead day, in the customer's language, with three price tiers and signed links; VIP
selections wait for their manager or the cut-off; re-running a day sends nothing; a click and an order
close the loop, and the gift is never suggested to that recipient again.
"""

from __future__ import annotations

import datetime as dt
import re
from email.message import EmailMessage
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from config import load_settings
from domain.access import api_keys
from domain.customers.imports import import_orders
from domain.db import session_scope
from domain.demo.seed import seed_demo
from domain.messaging.signing import LinkSigner
from domain.models import (
    AuditLog,
    Customer,
    Event,
    GiftGiven,
    GiftSelection,
    ImportantDate,
    OutboundEmail,
    Product,
    User,
)
from domain.reminders.planning import plan_selections
from domain.reminders.selections import approve_selection
from jobs.__main__ import build_context
from jobs.context import JobContext
from jobs.registry import JOBS
from tests.conftest import SAMPLE
from tests.delivery_fixtures import SmtpServer, smtp_server  # noqa: F401  (the real SMTP server fixture)

pytestmark = pytest.mark.slow

LEAD_DAY = dt.date(2011, 12, 1)
OCCASION = LEAD_DAY + dt.timedelta(days=7)
DAILY = ("plan-selections", "queue-reminders", "send-outbox")
TIERS = {
    "en": ("A small token", "A thoughtful gift", "Something special"),
    "ru": ("Приятная мелочь", "Продуманный подарок", "Особенный подарок"),
}
CLICK = re.compile(r"http://127\.0\.0\.1:5000/r/([\w.\-]+)")


@pytest.fixture
def settings(tmp_path, database_url, smtp_server):  # noqa: F811
    """The test settings (overriding conftest's), a small model and the real SMTP server."""
    return load_settings(
        environ={},
        database={"url": database_url},
        server={"instance_dir": str(tmp_path / "instance"), "secret_key": "pipeline-secret"},
        model={"artifact_dir": str(tmp_path / "models"), "num_threads": 1, "factors": 16, "iterations": 5},
        mail={"smtp_host": smtp_server.host, "smtp_port": smtp_server.port, "smtp_timeout": 5.0},
    )


def _run(ctx: JobContext, day: dt.date, names: tuple[str, ...] = DAILY) -> dict[str, str]:
    ctx.today = day
    return {name: JOBS[name].runner()(ctx) for name in names}


def _to(smtp: SmtpServer, address: str) -> list[EmailMessage]:
    return [m for m in smtp.messages if m["To"] == address]


def _text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())  # type: ignore[attr-defined]


def _email(session, selection_id: int) -> OutboundEmail | None:
    return session.scalar(select(OutboundEmail).where(OutboundEmail.selection_id == selection_id))


def _on_lead_day(session, locale: str, planned_before: set[int]) -> tuple[GiftSelection, Customer]:
    """A non-VIP customer's yearly date on OCCASION, planned and sent on its lead day (not caught up)."""
    rows = session.execute(
        select(GiftSelection, Customer)
        .join(Customer, Customer.id == GiftSelection.customer_id)
        .join(ImportantDate, ImportantDate.id == GiftSelection.important_date_id)
        .where(
            GiftSelection.occasion_on == OCCASION,
            GiftSelection.status == "sent",
            Customer.is_vip.is_(False),
            Customer.locale == locale,
            ImportantDate.recurrence == "yearly",
            GiftSelection.id.not_in(planned_before),
        )
        .order_by(GiftSelection.id)
    ).all()
    assert rows, f"no {locale} reminder for {OCCASION} was sent"
    selection, customer = rows[0]
    assert selection.status_reason is None  # planned on its lead day, not caught up
    return selection, customer


def _check_reminder(session, smtp, signer, selection, customer, locale) -> EmailMessage:
    """Arrived on the lead day, in the customer's language, three tiers, signed links."""
    row = _email(session, selection.id)
    assert row is not None and row.status == "sent" and row.sent_at is not None
    # sent on the lead day of the business calendar (--today); sent_at is the wall clock
    assert row.counted_at.date() == LEAD_DAY == selection.occasion_on - dt.timedelta(days=7)
    messages = _to(smtp, customer.email)
    assert len(messages) == 1
    message = messages[0]
    text = _text(message)
    if locale == "en":
        assert message["Subject"].endswith("is on 8 December 2011: gift ideas")
        assert "Stop this reminder:" in text and "Unsubscribe from all our emails:" in text
    else:
        assert message["Subject"].endswith("8 декабря 2011. Идеи подарков")
        assert "Отключить это напоминание:" in text and "Отписаться от всех наших писем:" in text
    positions = [text.index(name) for name in TIERS[locale]]
    assert positions == sorted(positions)  # three tiers, cheapest first
    tiers = [pick.tier for pick in selection.picks]
    assert sorted(set(tiers)) == [1, 2, 3] and all(2 <= tiers.count(t) <= 3 for t in (1, 2, 3))
    tokens = CLICK.findall(text)
    payloads = [signer.load("click", t) for t in tokens]
    assert {(p["c"], p["s"]) for p in payloads} == {(customer.id, selection.id)}
    assert sorted(p["p"] for p in payloads) == sorted(pick.product_id for pick in selection.picks)
    stop = re.search(r"/stop/([\w.\-]+)", text)
    unsubscribe = re.search(r"/unsubscribe/([\w.\-]+)", text)
    assert stop and unsubscribe
    assert signer.load("stop", stop.group(1)) == {"c": customer.id, "o": selection.occasion_key}
    assert signer.load("unsubscribe", unsubscribe.group(1)) == {"c": customer.id}
    assert "/unsubscribe/" in message["List-Unsubscribe"]
    return message


def test_reminder_pipeline_end_to_end(app, client, sessions, settings, smtp_server):  # noqa: F811
    signer = LinkSigner.from_settings(settings)
    with session_scope(sessions) as s:
        import_orders(s, SAMPLE, "online-retail", instance_dir=settings.server.instance_dir)
    with session_scope(sessions) as s:
        seed_demo(s, today=LEAD_DAY)
        server_key = api_keys.create_key(s, "server", name="pipeline test")[1]
    headers = {"Authorization": f"Bearer {server_key}"}
    ctx = build_context(settings, sessions)
    trained = _run(ctx, LEAD_DAY - dt.timedelta(days=1), ("train-model",))
    assert ": succeeded" in trained["train-model"]

    # The day before the lead day: catch-ups and the dates a week later, nothing for OCCASION yet.
    _run(ctx, LEAD_DAY - dt.timedelta(days=1))
    with ctx.sessions() as s:
        planned_before = set(s.scalars(select(GiftSelection.id)))
        assert planned_before
        early = s.execute(
            select(ImportantDate.lead_days, Customer.reminder_lead_days)
            .join(GiftSelection, GiftSelection.important_date_id == ImportantDate.id)
            .join(Customer, Customer.id == GiftSelection.customer_id)
            .where(GiftSelection.occasion_on == OCCASION)
        ).all()
        assert all((a or b or 7) > 7 for a, b in early), early  # only dates with a longer lead time

    # The lead day.
    summaries = _run(ctx, LEAD_DAY)
    assert summaries["send-outbox"].startswith("sent ")
    sent_on_lead_day = len(smtp_server.messages)
    with ctx.sessions() as s:
        en, en_customer = _on_lead_day(s, "en", planned_before)
        ru, ru_customer = _on_lead_day(s, "ru", planned_before)
        en_message = _check_reminder(s, smtp_server, signer, en, en_customer, "en")
        _check_reminder(s, smtp_server, signer, ru, ru_customer, "ru")
        en_id, en_recipient, en_key = en.id, en.recipient_id, en.occasion_key
        en_external, en_picks = en_customer.external_id, {p.product_id for p in en.picks}

        # VIP selections wait for their account manager: no email yet.
        waiting = s.execute(
            select(GiftSelection.id, Customer.email, Customer.account_manager_id)
            .join(Customer, Customer.id == GiftSelection.customer_id)
            .where(GiftSelection.status == "awaiting_review", Customer.is_vip.is_(True))
            .order_by(GiftSelection.occasion_on.desc(), GiftSelection.id)
        ).all()
        assert len(waiting) >= 2, waiting
        for selection_id, email, _ in waiting:
            assert _email(s, selection_id) is None and not _to(smtp_server, email)
    (approved_id, approved_email, manager_id), (later_id, later_email, _) = waiting[0], waiting[1]

    # The same day's jobs again (the scheduler sends every few minutes): nothing more goes out.
    again = _run(ctx, LEAD_DAY)
    assert again["plan-selections"].startswith("due ") and "planned 0 " in again["plan-selections"]
    assert again["queue-reminders"].startswith("queued 0 ")
    assert again["send-outbox"].startswith("sent 0,")
    assert len(smtp_server.messages) == sent_on_lead_day

    # The manager approves one VIP selection: it goes out with the next sending round.
    with session_scope(sessions) as s:
        approve_selection(s, approved_id, s.get(User, manager_id))
    after_approval = _run(ctx, LEAD_DAY, ("queue-reminders", "send-outbox"))
    assert after_approval["send-outbox"].startswith("sent 1,")
    assert len(_to(smtp_server, approved_email)) == 1
    assert len(smtp_server.messages) == sent_on_lead_day + 1

    # The other one goes out after its cut-off, as planned (policy "send"), and not before.
    with ctx.sessions() as s:
        cutoff = s.get(GiftSelection, later_id).review_cutoff_at
    assert settings.reminders.vip_cutoff_policy == "send" and cutoff is not None
    day = LEAD_DAY + dt.timedelta(days=1)
    while True:
        _run(ctx, day)
        with ctx.sessions() as s:
            status = s.get(GiftSelection, later_id).status
            if ctx.now() < cutoff:
                assert status == "awaiting_review" and _email(s, later_id) is None
            else:
                assert status == "sent", (day, status)
                assert (
                    s.scalar(select(AuditLog.action).where(AuditLog.entity_id == str(later_id)))
                    == "selection.cutoff_approved"
                )
                break
        day += dt.timedelta(days=1)
    assert day < OCCASION and len(_to(smtp_server, later_email)) == 1

    # What next year's selection for the English recipient would hold without a purchase (rolled back).
    next_lead_day = dt.date(OCCASION.year + 1, OCCASION.month, OCCASION.day) - dt.timedelta(days=7)
    with ctx.sessions() as s:
        plan_selections(s, settings, now=dt.datetime.combine(next_lead_day, dt.time(12)))
        dry = s.scalar(
            select(GiftSelection).where(GiftSelection.occasion_key == en_key, GiftSelection.year == 2012)
        )
        assert dry is not None
        recurring = sorted(en_picks & {p.product_id for p in dry.picks})
        s.rollback()
    assert recurring, "the model suggests none of this year's picks next year: nothing to guard"
    with ctx.sessions() as s:
        product = s.get(Product, recurring[0])
        sku, price = product.sku, str(product.price)

    # The customer follows the product link: a click event, the selection clicked, a redirect to the shop.
    shop_url = f"https://shop.example.com/p/{sku}"
    assert client.put(f"/v1/products/{sku}", json={"url": shop_url}, headers=headers).status_code == 200
    token = next(t for t in CLICK.findall(_text(en_message)) if signer.load("click", t)["p"] == recurring[0])
    resp = client.get(urlsplit(f"http://127.0.0.1:5000/r/{token}").path)
    assert resp.status_code == 302 and resp.headers["Location"] == shop_url
    with ctx.sessions() as s:
        assert s.get(GiftSelection, en_id).status == "clicked"
        clicks = s.scalars(select(Event).where(Event.kind == "click", Event.source == "email")).all()
        assert [(e.product_id, e.recommendation_id) for e in clicks] == [(recurring[0], f"selection:{en_id}")]

    # Then buys it: the shop posts the order, the selection is purchased and the gift recorded.
    order = {
        "order_id": "WEB-20111203-1",
        "customer_id": en_external,
        "ordered_at": "2011-12-03T10:15:00Z",
        "lines": [{"sku": sku, "quantity": 1, "unit_price": price}],
    }
    resp = client.post("/v1/orders", json=order, headers=headers)
    assert resp.status_code == 201, resp.json
    with ctx.sessions() as s:
        selection = s.get(GiftSelection, en_id)
        assert selection.status == "purchased"
        assert selection.status_reason.startswith(f"{sku} bought in order WEB-20111203-1 on 2011-12-03")
        gift = s.scalars(select(GiftGiven).where(GiftGiven.selection_id == en_id)).one()
        assert (gift.recipient_id, gift.product_id, gift.given_on) == (
            en_recipient,
            recurring[0],
            dt.date(2011, 12, 3),
        )
    # The nightly job finds that purchase recorded (and real sample orders of other picks); again: nothing.
    nightly = LEAD_DAY + dt.timedelta(days=3)
    first = _run(ctx, nightly, ("attribute-purchases",))["attribute-purchases"]
    assert re.search(r"\(already recorded [1-9]\d*\)", first), first
    second = _run(ctx, nightly, ("attribute-purchases",))["attribute-purchases"]
    assert second.startswith("selections marked purchased 0, gifts recorded 0 "), second
    with ctx.sessions() as s:
        assert len(s.scalars(select(GiftGiven).where(GiftGiven.selection_id == en_id)).all()) == 1

    # Next year's lead day: a new selection for the same recipient, never with that gift.
    _run(ctx, next_lead_day, ("plan-selections",))
    with ctx.sessions() as s:
        next_year = s.scalar(
            select(GiftSelection).where(GiftSelection.occasion_key == en_key, GiftSelection.year == 2012)
        )
        assert (
            next_year is not None and next_year.status == "ready" and next_year.recipient_id == en_recipient
        )
        picks = {p.product_id for p in next_year.picks}
        assert picks and recurring[0] not in picks
        given = set(s.scalars(select(GiftGiven.product_id).where(GiftGiven.recipient_id == en_recipient)))
        assert not picks & given
