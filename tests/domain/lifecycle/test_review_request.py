"""The review-request trigger (issue 14): only after a fast delivery, a delay after it, once per order;
never for late deliveries, erased or unsubscribed customers; control and holdout never emailed (real
SMTP server)."""

from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy import select

from domain.db import session_scope
from domain.lifecycle.trigger_runs import run_triggers
from domain.messaging.mail import SmtpMailer
from domain.messaging.sending import send_outbox
from domain.models import Customer, Order, OrderLine, TriggerAssignment
from domain.models._types import utcnow
from tests.delivery_fixtures import make_customer, make_product
from tests.domain.lifecycle.test_triggers import assignments, emails

NOW = dt.datetime(2011, 12, 1, 4, 0)
_orders = iter(range(1, 10**9))


def review_only(settings, **extra):
    """Only the review request on (3 days after a delivery within 5 days, for 7 days), no control group."""
    off = {
        f"{t}_enabled": False
        for t in ("replacement", "running_out", "winback", "new_arrivals", "abandoned_cart")
    }
    values = off | {"holdout_share": 0.0, "control_share": 0.0} | extra
    return dataclasses.replace(settings, triggers=dataclasses.replace(settings.triggers, **values))


def delivered_order(session, customer, products, ordered: dt.datetime, took_days: float) -> Order:
    order = Order(
        external_id=f"R{next(_orders)}",
        customer_id=customer.id,
        ordered_at=ordered,
        delivered_at=ordered + dt.timedelta(days=took_days),
    )
    for i, product in enumerate(products, start=1):
        order.lines.append(OrderLine(line_no=i, product_id=product.id, quantity=1, unit_price=product.price))
    session.add(order)
    session.flush()
    return order


def test_fires_after_a_fast_delivery_once_per_order_across_repeated_runs(session, settings):
    s = review_only(settings)
    vase, lamp = make_product(session, "30.00", title="Blue vase"), make_product(session, "55.00")
    fast, late = make_customer(session), make_customer(session)
    # delivered 2 days after ordering, 3 days before NOW: due today
    order = delivered_order(session, fast, [vase, lamp], NOW - dt.timedelta(days=5), 2)
    # 14 days on the way: never asked, whenever the job runs
    delivered_order(session, late, [vase], NOW - dt.timedelta(days=17), 14)
    for day in range(-1, 9):
        run_triggers(session, s, NOW + dt.timedelta(days=day))
    [a] = assignments(session, "review_request")
    assert (a.customer_id, a.window_key, a.arm, a.eligible_on) == (
        fast.id,
        f"order:{order.external_id}",
        "treatment",
        NOW.date(),
    )
    assert a.details["product_ids"] == [vase.id, lamp.id] and a.details["order_id"] == order.external_id
    [email] = emails(session)
    assert email.kind == "review_request" and email.customer_id == fast.id
    assert email.subject == "How is your order?"
    assert order.external_id in email.body_text and "Blue vase" in email.body_text
    assert "How do you like it?" in email.body_text


def test_timing_known_answers(session, settings):
    s = review_only(settings, review_request_cooldown_days=1)
    product = make_product(session, "20.00")
    # (days the order took, days since delivery on NOW) -> asked today?
    cases = {
        (5.0, 3): True,
        (5.01, 3): False,
        (0.0, 3): True,
        (1.0, 2): False,
        (1.0, 10): True,
        (1.0, 11): False,
    }
    orders = {}
    for (took, since), _ in cases.items():
        customer = make_customer(session)
        orders[(took, since)] = customer.id
        delivered_order(session, customer, [product], NOW - dt.timedelta(days=since + took), took)
    run_triggers(session, s, NOW)
    asked = {a.customer_id for a in assignments(session, "review_request")}
    assert {case: orders[case] in asked for case in cases} == cases


def test_a_second_order_gets_its_own_request_after_the_cooldown(session, settings):
    s = review_only(settings, review_request_cooldown_days=14)
    product = make_product(session, "20.00")
    customer = make_customer(session)
    delivered_order(session, customer, [product], NOW - dt.timedelta(days=5), 2)
    delivered_order(session, customer, [product], NOW - dt.timedelta(days=4), 1)  # same day: one request
    run_triggers(session, s, NOW)
    later = delivered_order(session, customer, [product], NOW + dt.timedelta(days=12), 1)
    run_triggers(session, s, NOW + dt.timedelta(days=16))
    rows = assignments(session, "review_request")
    assert len(rows) == 2 and rows[1].window_key == f"order:{later.external_id}"
    run_triggers(session, s, NOW + dt.timedelta(days=16))
    run_triggers(session, s, NOW + dt.timedelta(days=17))
    assert len(assignments(session, "review_request")) == 2


def test_never_for_erased_unsubscribed_or_unconsenting_customers(session, settings):
    s = review_only(settings)
    product = make_product(session, "20.00")
    for kw in ({"erased_at": utcnow()}, {"unsubscribed_at": utcnow()}, {"email_consent": False}):
        delivered_order(session, make_customer(session, **kw), [product], NOW - dt.timedelta(days=5), 2)
    run_triggers(session, s, NOW)
    assert assignments(session) == [] and emails(session) == []


def test_control_and_holdout_are_never_emailed_on_the_real_smtp_server(sessions, mail_settings, smtp_server):
    s = review_only(mail_settings, holdout_share=0.2, control_share=0.25)
    with session_scope(sessions) as session:
        product = make_product(session, "25.00")
        for i in range(80):
            customer = make_customer(session, external_id=f"REVIEW{i:03d}")
            delivered_order(session, customer, [product], NOW - dt.timedelta(days=5), 2)
        run_triggers(session, s, NOW)
    send_outbox(sessions, s, SmtpMailer(s.mail), NOW, "test")
    with session_scope(sessions) as session:
        rows = session.execute(
            select(TriggerAssignment.arm, Customer.email).join(
                Customer, Customer.id == TriggerAssignment.customer_id
            )
        ).all()
    by_arm: dict[str, set[str]] = {}
    for arm, email in rows:
        by_arm.setdefault(arm, set()).add(email)
    assert set(by_arm) == {"treatment", "control", "holdout"} and len(rows) == 80
    received = [to for _, tos in smtp_server.handler.envelopes for to in tos]
    assert len(received) == len(set(received)) and set(received) == by_arm["treatment"]
    assert not set(received) & (by_arm["control"] | by_arm["holdout"])
    assert all(m["Subject"] == "How is your order?" for m in smtp_server.messages)
