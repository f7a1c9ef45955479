"""The campaign report on a hand-made table: counts by arm, the window, and statsmodels' own interval."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import update
from statsmodels.stats.proportion import confint_proportions_2indep

from domain.lifecycle.campaigns import campaign_report
from domain.models import Event, GiftSelection, Order, OrderLine, OutboundEmail, TriggerAssignment
from tests.delivery_fixtures import make_customer, make_product, make_selection

NOW = dt.datetime(2011, 11, 1, 4, 0)
_n = iter(range(1, 10**9))


def _buy(session, customer_id, product, at, amount="50.00"):
    order = Order(external_id=f"R{next(_n)}", customer_id=customer_id, ordered_at=at)
    order.lines.append(OrderLine(line_no=1, product_id=product.id, quantity=1, unit_price=Decimal(amount)))
    session.add(order)


def _assign(session, trigger, arm, *, selection_id=None):
    customer = make_customer(session)
    session.add(
        TriggerAssignment(
            customer_id=customer.id,
            trigger=trigger,
            window_key="w",
            eligible_on=NOW.date(),
            eligible_at=NOW,
            period="2011Q4",
            arm=arm,
            selection_id=selection_id,
        )
    )
    return customer


@pytest.fixture
def table(session):
    """winback: 40 treated (12 buy in the window), 30 control + 5 holdout (5 buy); new_arrivals: 5 and 1."""
    product = make_product(session, "50.00")
    treated = [_assign(session, "winback", "treatment") for _ in range(40)]
    control = [_assign(session, "winback", "control") for _ in range(30)]
    control += [_assign(session, "winback", "holdout") for _ in range(5)]
    for c in treated[:12] + control[:5]:
        _buy(session, c.id, product, NOW + dt.timedelta(days=5))
    _buy(session, treated[12].id, product, NOW + dt.timedelta(days=31))  # after the 30-day window
    _buy(session, treated[13].id, product, NOW - dt.timedelta(days=1))  # before eligibility
    _buy(session, treated[0].id, product, NOW + dt.timedelta(days=6), "25.00")  # a second order counts too
    for c in treated[:3]:  # three emails sent, one clicked
        selection = GiftSelection(
            customer_id=c.id,
            occasion_key=f"trigger:winback:{c.id}",
            occasion_code="winback",
            occasion_on=NOW.date(),
            year=2011,
            status="sent",
        )
        session.add(selection)
        session.flush()
        session.add(
            OutboundEmail(
                dedupe_key=f"selection:{selection.id}",
                customer_id=c.id,
                selection_id=selection.id,
                kind="winback",
                to_address=c.email,
                subject="s",
                body_text="b",
                status="sent",
                sent_at=NOW,
            )
        )
        session.execute(
            update(TriggerAssignment)
            .where(TriggerAssignment.customer_id == c.id)
            .values(selection_id=selection.id)
        )
    session.add(Event(customer_id=treated[0].id, kind="click", source="email", occurred_at=NOW,
                      recommendation_id=f"selection:{selection.id}"))  # fmt: skip
    for arm in ["treatment"] * 5 + ["control"]:
        _assign(session, "new_arrivals", arm)
    reminder = make_selection(session, status="sent")
    reminder.created_at = NOW
    session.flush()
    return treated, control


def test_counts_by_arm_and_the_uplift_against_statsmodels(session, settings, table):
    s = dataclasses.replace(settings, triggers=dataclasses.replace(settings.triggers, min_group_size=30))
    report = campaign_report(session, s, NOW.date(), NOW.date())
    rows = {r.campaign: r for r in report.rows}
    assert set(rows) == {"trigger:winback", "trigger:new_arrivals", "reminder:birthday"}
    w = rows["trigger:winback"]
    assert (w.eligible, w.treated, w.control, w.holdout) == (75, 40, 35, 5)
    assert (w.sent, w.clicked) == (3, 1)
    assert (w.ordered_treated, w.ordered_control) == (12, 5)
    assert (w.revenue_treated, w.revenue_control) == (625.0, 250.0)
    u = w.uplift
    low, high = confint_proportions_2indep(12, 40, 5, 35, method="newcomb", compare="diff")
    assert u.conversion_diff == pytest.approx(12 / 40 - 5 / 35)
    assert (u.conversion_low, u.conversion_high) == pytest.approx((low, high))
    assert u.revenue_diff == pytest.approx(625 / 40 - 250 / 35)
    assert u.revenue_low < u.revenue_diff < u.revenue_high
    assert u.incremental_revenue == pytest.approx((625 / 40 - 250 / 35) * 40)
    assert rows["trigger:new_arrivals"].uplift.too_few
    assert rows["reminder:birthday"].uplift is None and rows["reminder:birthday"].eligible == 1


def test_nothing_outside_the_period(session, settings, table):
    assert (
        campaign_report(
            session, settings, NOW.date() + dt.timedelta(days=1), NOW.date() + dt.timedelta(days=9)
        ).rows
        == []
    )
