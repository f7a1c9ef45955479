"""Purchase attribution: a picked product bought within the window after the reminder closes the loop."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

from sqlalchemy import func, select

from api.cli import cli
from domain.customers.orders import OrderInput, OrderLineInput, record_order
from domain.db import session_scope
from domain.messaging.attribution import attribute_purchases
from domain.models import (
    AuditLog,
    Customer,
    GiftGiven,
    GiftSelection,
    OccasionOptIn,
    Order,
    OrderLine,
    OutboundEmail,
    Product,
)
from domain.origin import SIMULATED
from tests.delivery_fixtures import make_customer, make_product, make_selection

SENT_AT = dt.datetime(2011, 12, 1, 12, 0, 5)
NOW = dt.datetime(2011, 12, 20, 3, 30)
_orders = iter(range(1, 10**9))


def _sent(session, selection: GiftSelection, *, at: dt.datetime = SENT_AT, status: str = "sent") -> None:
    """The selection's reminder email, as the outbox leaves it."""
    session.add(
        OutboundEmail(
            dedupe_key=f"selection:{selection.id}",
            kind="reminder",
            customer_id=selection.customer_id,
            selection_id=selection.id,
            to_address="someone@example.com",
            subject="gift ideas",
            body_text="...",
            status=status,
            attempts=1,
            next_attempt_at=at,
            claimed_at=at,
            sent_at=at if status == "sent" else None,
        )
    )
    selection.status = "sent" if status == "sent" else selection.status
    session.flush()


def _order(
    session,
    customer_id: int,
    products: list[Product],
    at: dt.datetime,
    kind: str = "sale",
    source: str = "import",
) -> Order:
    order = Order(
        external_id=f"T{next(_orders)}",
        customer_id=customer_id,
        kind=kind,
        ordered_at=at,
        source=source,
        lines=[
            OrderLine(line_no=i + 1, product_id=p.id, quantity=1, unit_price=p.price)
            for i, p in enumerate(products)
        ],
    )
    session.add(order)
    session.flush()
    return order


def _gifts(session) -> list[tuple[int, int, dt.date, int | None]]:
    rows = session.execute(
        select(GiftGiven.recipient_id, GiftGiven.product_id, GiftGiven.given_on, GiftGiven.selection_id)
    )
    return sorted(tuple(r) for r in rows)


def _picked(session, selection: GiftSelection, i: int) -> Product:
    return session.get(Product, selection.picks[i].product_id)


def test_a_pick_bought_in_the_window_marks_the_selection_purchased_and_records_the_gift(session, settings):
    selection = make_selection(session)
    _sent(session, selection)
    product = _picked(session, selection, 2)
    order = _order(
        session, selection.customer_id, [make_product(session, "5.00"), product], SENT_AT.replace(day=3)
    )

    summary = attribute_purchases(session, settings, NOW)

    assert (summary.matches, summary.purchased, summary.gifts, summary.already_recorded) == (1, 1, 1, 0)
    assert "selections marked purchased 1, gifts recorded 1" in summary.summary()
    session.refresh(selection)
    assert selection.status == "purchased"
    assert (
        selection.status_reason
        == f"{product.sku} bought in order {order.external_id} on 2011-12-03, 2 day(s) after the email"
    )
    gift = session.scalars(select(GiftGiven)).one()
    assert (gift.recipient_id, gift.product_id, gift.given_on) == (
        selection.recipient_id,
        product.id,
        dt.date(2011, 12, 3),
    )
    assert (gift.selection_id, gift.order_line_id) == (selection.id, order.lines[1].id)
    audit = session.scalars(select(AuditLog).where(AuditLog.action == "selection.purchased")).one()
    assert (audit.entity_id, audit.actor) == (str(selection.id), "job:attribute-purchases")
    assert audit.details["order_id"] == order.external_id and audit.details["previous_status"] == "sent"


def test_a_simulated_order_neither_marks_a_selection_purchased_nor_records_a_gift(session, settings):
    """Regression: the nightly attribution took an order `giftrec demo simulate-uplift` generated for a
    picked product as the purchase: the selection showed as purchased and the recipient as given it, so
    planning never offered it to them again. (The uplift measurement reads the orders themselves.)"""
    selection = make_selection(session)
    _sent(session, selection)
    _order(
        session,
        selection.customer_id,
        [_picked(session, selection, 0)],
        SENT_AT.replace(day=3),
        source=SIMULATED,
    )
    summary = attribute_purchases(session, settings, NOW)
    assert (summary.matches, summary.purchased, summary.gifts) == (0, 0, 0)
    session.refresh(selection)
    assert selection.status == "sent" and _gifts(session) == []


def test_running_again_adds_nothing(session, settings):
    selection = make_selection(session)
    _sent(session, selection)
    _order(session, selection.customer_id, [_picked(session, selection, 0)], SENT_AT + dt.timedelta(hours=2))
    assert attribute_purchases(session, settings, NOW).gifts == 1
    again = attribute_purchases(session, settings, NOW)
    assert (again.matches, again.purchased, again.gifts, again.already_recorded) == (1, 0, 0, 1)
    assert len(_gifts(session)) == 1
    assert session.scalar(select(func.count()).select_from(AuditLog)) == 1


def test_orders_outside_the_window_or_not_of_a_pick_or_of_someone_else_do_not_count(session, settings):
    selection = make_selection(session)
    _sent(session, selection)
    pick = _picked(session, selection, 0)
    other_customer = make_customer(session)
    _order(session, selection.customer_id, [pick], SENT_AT - dt.timedelta(minutes=1))  # before the email
    _order(session, selection.customer_id, [pick], SENT_AT + dt.timedelta(days=30, minutes=1))  # too late
    _order(session, selection.customer_id, [make_product(session, "9.99")], SENT_AT.replace(day=2))  # no pick
    _order(session, other_customer.id, [pick], SENT_AT.replace(day=2))  # someone else
    _order(session, selection.customer_id, [pick], SENT_AT.replace(day=2), kind="return")  # a return
    _order(session, selection.customer_id, [pick], NOW + dt.timedelta(hours=1))  # after `now`

    summary = attribute_purchases(session, settings, NOW)

    assert (summary.matches, summary.purchased, summary.gifts) == (0, 0, 0)
    assert session.get(GiftSelection, selection.id).status == "sent"
    assert _gifts(session) == []


def test_the_window_comes_from_the_settings(session, settings):
    selection = make_selection(session)
    _sent(session, selection)
    _order(session, selection.customer_id, [_picked(session, selection, 1)], SENT_AT + dt.timedelta(days=3))
    short = dataclasses.replace(
        settings, reminders=dataclasses.replace(settings.reminders, attribution_days=2)
    )
    assert attribute_purchases(session, short, NOW).purchased == 0
    assert session.get(GiftSelection, selection.id).status == "sent"
    assert attribute_purchases(session, settings, NOW).purchased == 1  # the default: 30 days


def test_only_reminded_selections_count(session, settings):
    ready = make_selection(session)  # planned, not emailed yet
    failed = make_selection(session, status="failed")
    _sent(session, failed, status="failed")
    for selection in (ready, failed):
        _order(session, selection.customer_id, [_picked(session, selection, 0)], SENT_AT.replace(day=2))
    assert attribute_purchases(session, settings, NOW).matches == 0
    assert {s.status for s in session.scalars(select(GiftSelection))} == {"ready", "failed"}


def test_clicked_becomes_purchased_and_a_second_pick_bought_later_is_recorded_too(session, settings):
    selection = make_selection(session)
    _sent(session, selection)
    selection.status = "clicked"
    session.flush()
    first, second = _picked(session, selection, 0), _picked(session, selection, 4)
    _order(session, selection.customer_id, [first, first], SENT_AT.replace(day=2))  # two lines, one gift
    assert attribute_purchases(session, settings, NOW).gifts == 1
    _order(session, selection.customer_id, [second], SENT_AT.replace(day=9))
    later = attribute_purchases(session, settings, NOW)
    assert (later.purchased, later.gifts, later.already_recorded) == (0, 1, 1)
    session.refresh(selection)
    assert selection.status == "purchased"
    rid = selection.recipient_id
    assert _gifts(session) == sorted(
        [
            (rid, first.id, dt.date(2011, 12, 2), selection.id),
            (rid, second.id, dt.date(2011, 12, 9), selection.id),
        ]
    )


def test_a_store_wide_occasion_for_nobody_in_particular_is_purchased_without_a_gift_row(session, settings):
    selection = make_selection(session)
    session.add(OccasionOptIn(customer_id=selection.customer_id, occasion_code="christmas"))
    selection.recipient_id, selection.important_date_id = None, None
    selection.occasion_key, selection.occasion_code = "occasion:christmas", "christmas"
    _sent(session, selection)
    _order(session, selection.customer_id, [_picked(session, selection, 0)], SENT_AT.replace(day=2))
    summary = attribute_purchases(session, settings, NOW)
    assert (summary.purchased, summary.gifts) == (1, 0)
    assert _gifts(session) == []


def test_customer_ids_limit_the_run(session, settings):
    a, b = make_selection(session), make_selection(session)
    for selection in (a, b):
        _sent(session, selection)
        _order(session, selection.customer_id, [_picked(session, selection, 0)], SENT_AT.replace(day=2))
    assert attribute_purchases(session, settings, NOW, customer_ids=[b.customer_id]).purchased == 1
    assert (session.get(GiftSelection, a.id).status, session.get(GiftSelection, b.id).status) == (
        "sent",
        "purchased",
    )


def test_an_order_recorded_through_the_api_is_attributed_at_once(session, settings):
    selection = make_selection(session)
    _sent(session, selection)
    product = _picked(session, selection, 3)
    data = OrderInput(
        order_id="API-1",
        customer_id=session.get(Customer, selection.customer_id).external_id,
        lines=[OrderLineInput(product.sku, 1, Decimal("60.00"))],
        ordered_at=dt.datetime(2011, 12, 4, 9, 0, tzinfo=dt.UTC),
    )
    result = record_order(session, data, settings)
    assert result.created
    session.refresh(selection)
    assert selection.status == "purchased"
    assert _gifts(session) == [(selection.recipient_id, product.id, dt.date(2011, 12, 4), selection.id)]
    audit = session.scalars(select(AuditLog).where(AuditLog.action == "selection.purchased")).one()
    assert audit.actor == "order:API-1"
    assert record_order(session, data, settings).created is False  # the same order again: nothing more
    assert len(_gifts(session)) == 1


def test_the_job_runs_from_the_cli(app, runner, sessions):
    with session_scope(sessions) as s:
        selection = make_selection(s)
        _sent(s, selection)
        _order(s, selection.customer_id, [_picked(s, selection, 0)], SENT_AT.replace(day=2))
        selection_id = selection.id
    early = runner.invoke(cli, ["jobs", "run", "attribute-purchases", "--today", "2011-12-01"])
    assert early.exit_code == 0, early.output
    assert early.output.startswith("attribute-purchases (as of 2011-12-01 12:00 UTC): ")
    assert "selections marked purchased 0, gifts recorded 0" in early.output
    done = runner.invoke(cli, ["jobs", "run", "attribute-purchases", "--today", "2011-12-05"])
    assert done.exit_code == 0, done.output
    assert "selections marked purchased 1, gifts recorded 1" in done.output
    with session_scope(sessions) as s:
        assert s.get(GiftSelection, selection_id).status == "purchased"


def test_an_api_order_is_attributed_for_a_purchased_selection_too_and_not_for_one_never_sent(
    session, settings
):
    """record_order attributes only for a customer with a sent, clicked or purchased selection (it used
    to run attribution's join for every sale): a second pick bought after the first still counts, and a
    selection that was never sent buys nothing."""
    selection = make_selection(session)
    _sent(session, selection)
    first, second = _picked(session, selection, 0), _picked(session, selection, 4)
    external = session.get(Customer, selection.customer_id).external_id

    def order(order_id: str, product: Product, day: int) -> OrderInput:
        at = dt.datetime(2011, 12, day, 9, 0, tzinfo=dt.UTC)
        return OrderInput(
            order_id, external, [OrderLineInput(product.sku, 1, Decimal("9.00"))], ordered_at=at
        )

    assert record_order(session, order("API-A", first, 2), settings).created
    session.refresh(selection)
    assert selection.status == "purchased"
    assert record_order(session, order("API-B", second, 9), settings).created
    rid = selection.recipient_id
    assert _gifts(session) == sorted(
        [
            (rid, first.id, dt.date(2011, 12, 2), selection.id),
            (rid, second.id, dt.date(2011, 12, 9), selection.id),
        ]
    )

    unsent = make_selection(session)  # ready, never sent
    other = session.get(Customer, unsent.customer_id).external_id
    pick = _picked(session, unsent, 0)
    data = OrderInput("API-C", other, [OrderLineInput(pick.sku, 1, Decimal("9.00"))], ordered_at=NOW)
    assert record_order(session, data, settings).created
    session.refresh(unsent)
    assert unsent.status == "ready" and len(_gifts(session)) == 2
