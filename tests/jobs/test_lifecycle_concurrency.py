"""Two nightly lifecycle runs at once (the scheduler's and one run by hand): each firing recorded once, on
abandoned carts alone and with all six triggers firing on one day (the frequency cap held)."""

# ruff: noqa: F811  (pytest fixtures imported from tests.domain.serving.fixtures are redefined as arguments)

from __future__ import annotations

import datetime as dt
from collections import Counter

from sqlalchemy import select

from domain.db import session_scope
from domain.models import Customer, Order, OrderLine, OutboundEmail, TriggerAssignment
from tests.delivery_fixtures import add_cart, make_customer, make_product, make_snapshot
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


# -------------------------------------------------------------------------------------- every trigger
K = 12  # customers per trigger
NOON = dt.datetime.combine(TODAY, dt.time(12))  # the job's `now` for `--today`
_orders = iter(range(1, 10**9))


def _buy(session, customer, product, at: dt.datetime, delivered: dt.datetime | None = None) -> None:
    order = Order(
        external_id=f"L{next(_orders)}", customer_id=customer.id, ordered_at=at, delivered_at=delivered
    )
    order.lines.append(OrderLine(line_no=1, product_id=product.id, quantity=1, unit_price=product.price))
    session.add(order)


def _every_trigger(sessions) -> set[tuple[int, str]]:
    """Data on which each of the six triggers fires on TODAY for K customers; the (customer, trigger)
    pairs expected. The job takes today's RFM snapshot first (fixed recency cuts: 30, 90, 180, 365 days),
    so segments come from the orders; only yesterday's snapshot is planted, for the win-back move."""
    expected: set[tuple[int, str]] = set()
    with session_scope(sessions) as session:
        bags = [make_product(session, p, category="bags") for p in ("40.00", "70.00", "95.00", "150.00")]
        tea = make_product(session, "8.00", category="tea")
        cards = make_product(session, "4.00", category="cards")
        vase = make_product(session, "30.00", category="vases")
        for price in ("15.00", "25.00", "60.00"):
            make_product(session, price, category="new", created_at=NOON - dt.timedelta(days=3))
        for _ in range(K):
            # replacement: a bag 600 days ago (lifetime 540-720); the same customer left a cart too,
            # which the frequency cap keeps from a second email
            customer = make_customer(session)
            _buy(session, customer, bags[2], NOON - dt.timedelta(days=600))
            add_cart(session, customer, vase, NOON - dt.timedelta(hours=30))
            expected |= {(customer.id, "replacement"), (customer.id, "abandoned_cart")}
            # running out: tea every 30 days, the last 27 days ago (due from 2 days ago); 4 purchases, 27
            # days: champions, so new arrivals fire too
            customer = make_customer(session)
            for k in range(4):
                _buy(session, customer, tea, NOON - dt.timedelta(days=27 + 30 * k))
            expected |= {(customer.id, "running_out"), (customer.id, "new_arrivals")}
            # win-back: loyal yesterday; 3 purchase days, the last 220 days ago: at risk today
            customer = make_customer(session)
            for days in (220, 260, 300):
                _buy(session, customer, cards, NOON - dt.timedelta(days=days))
            make_snapshot(session, customer.id, TODAY - dt.timedelta(days=1), "loyal")
            expected.add((customer.id, "winback"))
            # abandoned cart alone
            customer = make_customer(session)
            add_cart(session, customer, vase, NOON - dt.timedelta(hours=30))
            expected.add((customer.id, "abandoned_cart"))
            # review request: delivered 2 days after the order, 3 days ago
            customer = make_customer(session)
            ordered = NOON - dt.timedelta(days=5, hours=1)
            _buy(session, customer, vase, ordered, delivered=ordered + dt.timedelta(days=2))
            expected.add((customer.id, "review_request"))
    return expected


def test_two_lifecycle_runs_at_once_with_every_trigger_firing_record_each_once_within_the_cap(
    sessions, settings, smtp_server, tmp_path
):
    expected = _every_trigger(sessions)
    env = giftrec_env(settings, smtp_server, tmp_path) | {
        "GIFTREC_RFM_RECENCY_SCORING": "fixed",
        "GIFTREC_TRIGGERS_REPLACEMENT_LIFETIMES": "bags: 540-720",
    }
    log = tmp_path / "children.log"
    statuses = run_twice_at_once(env, log, RUN)
    with session_scope(sessions) as session:
        rows = session.execute(
            select(
                TriggerAssignment.customer_id,
                TriggerAssignment.trigger,
                TriggerAssignment.window_key,
                TriggerAssignment.arm,
                TriggerAssignment.selection_id,
            )
        ).all()
        emails = session.execute(
            select(OutboundEmail.customer_id, OutboundEmail.kind, OutboundEmail.selection_id).where(
                OutboundEmail.status != "cancelled"
            )
        ).all()
    assert statuses == [0, 0], log.read_text()[-8000:]
    assert {(cid, trigger) for cid, trigger, *_ in rows} == expected  # every trigger fired, none else
    assert set(Counter((cid, trigger, window) for cid, trigger, window, *_ in rows).values()) == {1}
    assert set(Counter((cid, kind) for cid, kind, _ in emails).values()) <= {1}
    # the frequency cap (3 days): one trigger email per customer on one day, whatever fired for them
    assert set(Counter(cid for cid, _, _ in emails).values()) <= {1}
    treated = {selection for *_, arm, selection in rows if arm == "treatment"}
    assert {selection for *_, selection in emails} <= treated  # control and holdout never emailed
    assert {kind for _, kind, _ in emails} >= {"replacement", "running_out", "winback", "review_request"}
