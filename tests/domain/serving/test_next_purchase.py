"""Next purchase from orders: what counts as a purchase, the data's clock, and when the model is refitted."""

# ruff: noqa: F811  (pytest fixtures imported from tests.domain.serving.fixtures are redefined as arguments)

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from config import Settings
from domain.catalog.products import ProductInput, upsert_product
from domain.customers.sources import read_order_lines
from domain.db import session_scope
from domain.errors import InvalidInput, NotFound
from domain.models import Customer, Order, OrderLine, Product
from domain.serving.evaluation import (
    _next_purchase_lists,
    history_from_lines,
    purchase_days_of,
    training_rows,
)
from domain.serving.next_purchase import (
    PREPARING,
    FittedNextPurchase,
    NextPurchaseService,
    fit_next_purchase,
    load_purchase_days,
    next_purchase_for,
)
from domain.serving.recommendations import Serving
from domain.serving.training import train_model
from recommender.evaluation import make_split, temporal_cut
from tests.domain.serving.fixtures import (  # noqa: F401
    FakeClock,
    add_order,
    bought_skus,
    clock,
    imported,
    imported_rows,
    sample_slice,
    serving,
    settings,
)

EPOCH = dt.date(1970, 1, 1)


def _day(value: dt.date) -> int:
    return (value - EPOCH).days


@pytest.fixture
def shop(session: Session) -> Session:
    for sku in ("A", "B", "C"):
        upsert_product(
            session, sku, ProductInput(title=f"Product {sku}", price=Decimal("5.00")), actor="test"
        )
    session.flush()
    return session


def test_purchase_days_leave_out_returns_and_guests_and_merge_one_day(shop: Session):
    add_order(shop, "C1", ["A", "A", "B"], order_id="o1", at=dt.datetime(2011, 3, 1, 9, 0))
    add_order(shop, "C1", ["A"], order_id="o2", at=dt.datetime(2011, 3, 1, 23, 59))  # same day: one purchase
    add_order(shop, "C1", ["C"], order_id="r1", at=dt.datetime(2011, 3, 2, 10, 0), kind="return")
    add_order(shop, "C1", ["A"], order_id="o3", at=dt.datetime(2011, 3, 20, 0, 0))
    guest = Order(
        external_id="g1", customer_id=None, kind="sale", ordered_at=dt.datetime(2011, 3, 5), source="api"
    )
    guest.lines.append(
        OrderLine(line_no=1, product_id=_product(shop, "B"), quantity=1, unit_price=Decimal(1))
    )
    shop.add(guest)
    shop.flush()
    rows = load_purchase_days(shop)
    customer = shop.scalar(select(Customer.id).where(Customer.external_id == "C1"))
    a, b = _product(shop, "A"), _product(shop, "B")
    got = sorted(zip(rows.customer_ids.tolist(), rows.product_ids.tolist(), rows.days.tolist(), strict=True))
    assert got == sorted(
        [
            (customer, a, _day(dt.date(2011, 3, 1))),
            (customer, b, _day(dt.date(2011, 3, 1))),
            (customer, a, _day(dt.date(2011, 3, 20))),
        ]
    )
    until = load_purchase_days(shop, until=dt.datetime(2011, 3, 10))
    assert sorted(until.days.tolist()) == [_day(dt.date(2011, 3, 1))] * 2


def _product(session: Session, sku: str) -> int:
    value = session.scalar(select(Product.id).where(Product.sku == sku))
    assert value is not None
    return int(value)


def test_fit_on_the_real_slice_uses_the_newest_order_as_today(session: Session, imported: None):
    newest = session.scalar(select(func.max(Order.ordered_at)).where(Order.kind == "sale"))
    fitted = fit_next_purchase(session, dt.datetime(2030, 1, 1))
    assert fitted.model is not None and fitted.note is None
    assert fitted.as_of == newest.date()
    p = fitted.model.bgnbd.params
    assert min(p.r, p.alpha, p.a, p.b) > 0 and np.isfinite(p.log_likelihood)
    buyers = session.scalar(
        select(func.count(func.distinct(Order.customer_id))).where(
            Order.kind == "sale", Order.customer_id.is_not(None)
        )
    )
    assert p.n_customers == buyers
    # an earlier "now" sees only the orders up to then
    earlier = fit_next_purchase(session, dt.datetime(2011, 6, 30, 23, 59))
    assert earlier.as_of <= dt.date(2011, 6, 30)
    assert len(earlier.customers) < len(fitted.customers)


def test_fit_without_repeat_buyers_gives_no_estimates(shop: Session):
    add_order(shop, "C1", ["A"], order_id="o1", at=dt.datetime(2011, 3, 1))
    fitted = fit_next_purchase(shop, dt.datetime(2011, 4, 1))
    assert fitted.model is None and "repeat" in (fitted.note or "")


def _busiest(session: Session) -> str:
    return session.execute(
        select(Customer.external_id)
        .join(Order, Order.customer_id == Customer.id)
        .where(Order.kind == "sale")
        .group_by(Customer.external_id)
        .order_by(func.count(func.distinct(func.date(Order.ordered_at))).desc(), Customer.external_id)
        .limit(1)
    ).scalar_one()


def test_next_purchase_for_a_regular_customer(
    serving: Serving, sessions: sessionmaker[Session], imported: None, clock: FakeClock
):
    with sessions() as session:
        customer = _busiest(session)
        bought = bought_skus(session, customer)
    service = NextPurchaseService(serving, sessions, clock=clock)
    service.refresh()  # the learned fit, now (until it is ready a request answers from the timing model)
    result = next_purchase_for(service, customer, 5)
    assert result.customer_id == customer and result.note is None
    assert 0 < result.p_alive <= 1
    assert result.expected_purchases_90d > result.expected_purchases_30d > 0
    assert result.purchase_days >= 2 and result.last_purchase_on <= result.as_of
    assert 1 <= len(result.items) <= 5
    again = [it for it in result.items if not it.is_new]
    assert {it.sku for it in again} <= bought
    assert not {it.sku for it in result.items if it.is_new} & bought
    assert all(it.expected_on >= result.as_of and it.last_bought_on <= result.as_of for it in again)
    assert all(0 < it.probability <= 1 for it in again)
    # in the ranker's order (what `giftrec evaluate` measures)
    fitted = service.current()
    assert fitted.ranker is not None
    row = int(fitted.customers.index_of(_customer_key(sessions, customer))[0])
    ranked, _ = fitted.ranker.rank(row, 5)
    assert [it.sku for it in result.items] == _skus(sessions, fitted.products.ids[ranked])

    # A hidden product is left out at once (no refit).
    with session_scope(sessions) as session:
        upsert_product(session, result.items[0].sku, ProductInput(is_active=False), actor="test")
    serving.catalog.invalidate()
    again = next_purchase_for(service, customer, 5)
    assert result.items[0].sku not in {it.sku for it in again.items}

    with pytest.raises(NotFound):
        next_purchase_for(service, "no-such-customer")
    with pytest.raises(InvalidInput) as err:
        next_purchase_for(service, customer, 0)
    assert err.value.field == "n"


def _customer_key(sessions: sessionmaker[Session], external_id: str) -> np.ndarray:
    with sessions() as session:
        return np.array([session.scalar(select(Customer.id).where(Customer.external_id == external_id))])


def _skus(sessions: sessionmaker[Session], product_ids: np.ndarray) -> list[str]:
    with sessions() as session:
        sku = {a: b for a, b in session.execute(select(Product.id, Product.sku))}
    return [sku[int(p)] for p in product_ids]


def test_the_endpoint_ranks_as_evaluate_measures(
    sessions: sessionmaker[Session], imported: None, sample_slice: Path
):
    """Regression: the endpoint ranked by repurchase chance while `giftrec evaluate` measured the hybrid's
    picks. Now both fit `fit_purchase_days` on the same rows (from the database / from the file)."""
    history = history_from_lines(read_order_lines(sample_slice, "online-retail").lines)
    split = make_split(history, temporal_cut(history.timestamps, 30))
    _, _, customers, products = training_rows(split.train)
    rows = purchase_days_of(split.train, customers, products)
    evaluated = _next_purchase_lists(
        split, 10, rows, customers.index_of(split.users.ids), split.items.index_of(products.ids)
    )
    cut = split.cut.astype("datetime64[s]").item()
    with sessions() as session:
        fitted = fit_next_purchase(session, cut - dt.timedelta(seconds=1))
        db = load_purchase_days(session, until=cut - dt.timedelta(seconds=1))
    assert fitted.ranker is not None and len(db) == len(rows) and db.lines.sum() == rows.lines.sum()
    truth = split.truth["next_purchases"].user_idxs
    assert truth.size >= 10
    with sessions() as session:
        key_of = {a: b for a, b in session.execute(select(Customer.external_id, Customer.id))}
    for r, u in enumerate(truth.tolist()):
        row = int(fitted.customers.index_of([key_of[str(split.users.ids[u])]])[0])
        served, _ = fitted.ranker.rank(row, 10)
        measured = [str(split.items.ids[i]) for i in evaluated[r] if i >= 0]
        assert _skus(sessions, fitted.products.ids[served]) == measured


def test_a_customer_without_purchases_gets_no_estimates(
    serving: Serving, sessions: sessionmaker[Session], imported: None, clock: FakeClock
):
    with session_scope(sessions) as session:
        session.add(Customer(external_id="NEW-1"))
    service = NextPurchaseService(serving, sessions, clock=clock)
    result = next_purchase_for(service, "NEW-1")  # from the timing model while the learned fit runs
    assert result.p_alive is None and result.items == [] and result.note == "no purchases yet"
    assert service.wait(120)
    result = next_purchase_for(service, "NEW-1")
    assert result.p_alive is None and result.items == [] and result.note == "no purchases yet"


def test_a_request_while_the_learned_fit_is_pending_answers_from_the_timing_model(
    serving: Serving, sessions: sessionmaker[Session], imported: None, clock: FakeClock
):
    """Regression: the learned fit (tens of seconds on the full UCI file) ran inside the first request,
    and the client page that shows next purchases timed out. Now it runs in the background; here it is
    held at a gate, so the answers below cannot have waited for it."""
    gate, entered = threading.Event(), threading.Event()

    def gated(session: Session, **kwargs: Any) -> FittedNextPurchase:
        entered.set()
        assert gate.wait(300)
        return fit_next_purchase(session, **kwargs)

    with sessions() as session:
        customer = _busiest(session)
        bought = bought_skus(session, customer)
    service = NextPurchaseService(serving, sessions, clock=clock, fit=gated)
    try:
        early = next_purchase_for(service, customer, 5)
        assert entered.wait(300)  # the learned fit started, and is still held
        assert early.note == PREPARING and early.p_alive is not None
        assert 1 <= len(early.items) <= 5
        assert not any(it.is_new for it in early.items) and {it.sku for it in early.items} <= bought
        assert [it.score for it in early.items] == [it.probability for it in early.items]
        assert next_purchase_for(service, customer, 5) == early  # still pending: the same timing fit
    finally:
        gate.set()
    assert service.wait(300)
    ready = next_purchase_for(service, customer, 5)
    assert ready.note is None
    fitted = service.current()
    assert fitted.ranker is not None
    row = int(fitted.customers.index_of(_customer_key(sessions, customer))[0])
    ranked, _ = fitted.ranker.rank(row, 5)
    assert [it.sku for it in ready.items] == _skus(sessions, fitted.products.ids[ranked])


def test_the_learned_fit_is_redone_when_the_served_model_changes_not_when_orders_do(
    settings: Settings, serving: Serving, sessions: sessionmaker[Session], imported: None, clock: FakeClock
):
    service = NextPurchaseService(serving, sessions, clock=clock)
    first = service.refresh()
    assert service.current() is first  # nothing changed
    with session_scope(sessions) as session:
        sku = session.scalar(select(Product.sku).order_by(Product.id).limit(1))
        add_order(session, "LATE-1", [sku], order_id="late-1", at=dt.datetime(2011, 12, 9, 13, 0))
        add_order(session, "LATE-1", [sku], order_id="late-2", at=dt.datetime(2011, 12, 9, 14, 0))
    serving.store.refresh()  # the store sees the new orders (its data version changes)
    clock.advance(24 * 3600)
    assert service.current() is first and service.wait(300)
    assert service.current() is first  # orders alone start no refit of the classifier
    with sessions.begin() as session:
        run = train_model(session, settings)  # the daily training
    assert run.status == "succeeded", run.error
    assert serving.store.refresh().model.version == run.version  # the store serves it
    assert service.current() is first  # the previous fit answers while the new one is fitted
    assert service.wait(300)
    refitted = service.current()
    assert refitted is not first
    assert len(refitted.customers) == len(first.customers) + 1
