"""Two nightly lifecycle runs at once (the scheduler's and one run by hand): each firing recorded once."""

# ruff: noqa: F811  (pytest fixtures imported from tests.domain.serving.fixtures are redefined as arguments)

from __future__ import annotations

import datetime as dt
from collections import Counter

from sqlalchemy import select

from domain.db import session_scope
from domain.models import Customer, OutboundEmail, TriggerAssignment
from tests.delivery_fixtures import add_cart, make_customer, make_product
from tests.domain.serving.fixtures import settings  # noqa: F401
from tests.jobs.test_kill_loop import run_twice_at_once
from tests.jobs.test_send_outbox import giftrec_env

TODAY = dt.date(2011, 12, 1)
RUN = f"jobs run lifecycle --today {TODAY:%Y-%m-%d}"
CUSTOMERS = 300


def _carts(sessions) -> None:
    """Abandoned carts: every customer fires the cart trigger on TODAY."""
    with session_scope(sessions) as session:
        product = make_product(session, "30.00")
        for _ in range(CUSTOMERS):
            customer = make_customer(session)
            add_cart(
                session, customer, product, dt.datetime.combine(TODAY, dt.time(0)) - dt.timedelta(hours=30)
            )


def test_two_lifecycle_runs_at_once_record_each_firing_once_and_both_succeed(
    sessions, settings, smtp_server, tmp_path
):
    _carts(sessions)
    log = tmp_path / "children.log"
    statuses = run_twice_at_once(giftrec_env(settings, smtp_server, tmp_path), log, RUN)
    with session_scope(sessions) as session:
        firings = select(TriggerAssignment.customer_id, TriggerAssignment.trigger)
        keys = Counter(session.execute(firings).all())
        queued = Counter(session.scalars(select(OutboundEmail.customer_id)).all())
        customers = set(session.scalars(select(Customer.id)))
    assert statuses == [0, 0], log.read_text()[-8000:]  # the one that lost the race did not fail
    assert {cid for cid, _ in keys} == customers  # none missing
    assert set(keys.values()) == {1}  # none twice
    assert set(queued.values()) <= {1}  # one email at most per customer
