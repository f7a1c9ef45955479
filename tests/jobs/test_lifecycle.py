"""The lifecycle job's trigger emails reach the real SMTP server for the treated only, once."""

from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy import select

from domain.db import session_scope
from domain.messaging.mail import SmtpMailer
from domain.models import Customer, OutboundEmail, TriggerAssignment
from jobs import lifecycle, send_outbox
from jobs.context import JobContext
from tests.delivery_fixtures import add_cart, make_customer, make_product

NOW = dt.datetime(2011, 12, 1, 4, 0)


def test_control_and_holdout_members_never_get_an_email(sessions, mail_settings, smtp_server):
    only_carts = {f"{t}_enabled": False for t in ("replacement", "running_out", "winback", "new_arrivals")}
    triggers = dataclasses.replace(mail_settings.triggers, holdout_share=0.2, control_share=0.2, **only_carts)
    settings = dataclasses.replace(mail_settings, triggers=triggers)
    with session_scope(sessions) as session:
        product = make_product(session, "30.00")
        for _ in range(80):
            customer = make_customer(session)
            add_cart(session, customer, product, NOW - dt.timedelta(hours=30))
    ctx = JobContext(settings, sessions, SmtpMailer(settings.mail), at=NOW)
    for _ in range(2):  # a repeated run adds and sends nothing
        lifecycle.run(ctx)
        send_outbox.run(ctx)
    with session_scope(sessions) as session:
        rows = session.execute(select(TriggerAssignment.arm, TriggerAssignment.customer_id)).all()
        address = dict(session.execute(select(OutboundEmail.customer_id, OutboundEmail.to_address)).all())
        emails = dict(session.execute(select(Customer.id, Customer.email)).all())
    assert len(rows) == 80
    by_arm: dict[str, set[str]] = {}
    for arm, cid in rows:
        by_arm.setdefault(arm, set()).add(emails[cid])
    assert set(by_arm) == {"treatment", "control", "holdout"}
    received = [to for _, tos in smtp_server.handler.envelopes for to in tos]
    assert len(received) == len(set(received))  # once each
    assert set(received) == by_arm["treatment"] == set(address.values())
    assert not set(received) & (by_arm["control"] | by_arm["holdout"])
    assert all(m["Subject"] == "You left something in your basket" for m in smtp_server.messages)
