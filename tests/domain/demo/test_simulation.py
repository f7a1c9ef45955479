"""The seeded simulation: the campaign report recovers the planted uplift within its interval."""

from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy import func, select

from domain.customers.interactions import load_interactions, load_sales
from domain.db import session_scope
from domain.demo.simulation import SOURCE, simulate_uplift
from domain.lifecycle.campaigns import campaign_report
from domain.lifecycle.snapshots import load_purchase_spend
from domain.lifecycle.trigger_runs import run_triggers
from domain.messaging.mail import SmtpMailer
from domain.messaging.sending import send_outbox
from domain.models import Event, Order
from domain.serving.next_purchase import load_purchase_days
from domain.serving.training import train_model
from tests.delivery_fixtures import make_customer, make_product

NOW = dt.datetime(2011, 11, 1, 4, 0)


def test_the_report_recovers_the_planted_uplift(sessions, mail_settings, smtp_server):
    off = {f"{t}_enabled": False for t in ("replacement", "running_out", "winback", "new_arrivals")}
    triggers = dataclasses.replace(mail_settings.triggers, holdout_share=0.1, control_share=0.15, **off)
    settings = dataclasses.replace(mail_settings, triggers=triggers)
    with session_scope(sessions) as session:
        product = make_product(session, "40.00")
        for i in range(600):
            customer = make_customer(session, external_id=f"SIMTEST{i:04d}")
            at = NOW - dt.timedelta(hours=30)
            session.add(Event(customer_id=customer.id, product_id=product.id, kind="cart", occurred_at=at))
        run_triggers(session, settings, NOW)
    send_outbox(sessions, settings, SmtpMailer(settings.mail), NOW, "test")
    with session_scope(sessions) as session:
        result = simulate_uplift(
            session, settings, NOW.date(), NOW.date(), extra_probability=0.2, base_probability=0.1, seed=3
        )
        again = simulate_uplift(
            session, settings, NOW.date(), NOW.date(), extra_probability=0.2, base_probability=0.1, seed=3
        )
        assert again.orders == 0  # a re-run adds nothing
        assert (
            session.scalar(select(func.count()).select_from(Order).where(Order.source == SOURCE))
            == result.orders
        )
        report = campaign_report(session, settings, NOW.date(), NOW.date())
    [row] = report.rows
    planted = result.planted["abandoned_cart"]
    assert planted == 0.2 * 0.9  # every treated customer was emailed
    u = row.uplift
    assert not u.too_few and row.sent == row.treated
    assert u.conversion_low < planted < u.conversion_high
    assert u.conversion_low > 0  # the planted effect is large enough to be told from none
    assert u.revenue_low > 0 and u.revenue_low < planted * 40.0 < u.revenue_high
    # Regression (issue 14): the generated orders fed `giftrec train`, next purchase and RFM as real ones.
    later = NOW + dt.timedelta(days=60)
    with session_scope(sessions) as session:
        assert result.orders > 0
        rows = load_interactions(session, until=later)
        assert len(rows) == 600 and set(rows.kinds.tolist()) == {"cart"}  # the carts, no purchase
        assert len(load_sales(session, until=later)) == 0
        assert len(load_purchase_days(session, until=later)) == 0
        assert load_purchase_spend(session, later).customer_ids.size == 0
        run = train_model(session, settings, now=later)
        assert run.status == "succeeded" and run.metrics["rows"] == 600
