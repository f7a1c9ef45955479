"""Next purchase from orders: what counts as a purchase, the data's clock, and the answers a web process
gives from the trained ranker (or, before one exists, from the timing model)."""

# ruff: noqa: F811  (pytest fixtures imported from tests.domain.serving.fixtures are redefined as arguments)

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from api.cli import cli
from config import Settings
from domain.access.api_keys import create_key
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
    fit_next_purchase,
    load_purchase_days,
    next_purchase_for,
)
from domain.serving.next_purchase_runs import train_next_purchase
from domain.serving.next_purchase_service import NextPurchaseService
from domain.serving.recommendations import Serving
from domain.serving.training import train_model
from recommender.evaluation import make_split, temporal_cut
from recommender.next_basket import NextBasketRanker
from tests.api.helpers import bearer
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


def _train(sessions: sessionmaker[Session], settings: Settings, **kwargs: Any) -> str:
    """What `giftrec train --next-purchase` does: fit, store the artifact, record the run; its version."""
    with session_scope(sessions) as session:
        run = train_next_purchase(session, settings, **kwargs)
        assert run.status == "succeeded", run.error
        return run.version


def test_next_purchase_for_a_regular_customer(
    settings: Settings, serving: Serving, sessions: sessionmaker[Session], imported: None, clock: FakeClock
):
    with sessions() as session:
        customer = _busiest(session)
        bought = bought_skus(session, customer)
    version = _train(sessions, settings)
    service = NextPurchaseService(serving, sessions, clock=clock)
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
    assert fitted.ranker is not None and fitted.version == service.version == version
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
    settings: Settings,
    sessions: sessionmaker[Session],
    imported: None,
    sample_slice: Path,
    runner: Any,
    monkeypatch: pytest.MonkeyPatch,
):
    """Regression: the endpoint ranked by repurchase chance while `giftrec evaluate` measured the hybrid's
    picks. Now `giftrec train --next-purchase` fits the ranker on the same rows (from the database, up to
    the evaluation's cut) and a fresh web process, loading only its artifact, answers with exactly the
    lists `giftrec evaluate` measures for the served next-purchase row; it never fits the ranker itself."""
    history = history_from_lines(read_order_lines(sample_slice, "online-retail").lines)
    split = make_split(history, temporal_cut(history.timestamps, 30))
    _, _, customers, products = training_rows(split.train)
    rows = purchase_days_of(split.train, customers, products)
    evaluated = _next_purchase_lists(
        split, 10, rows, customers.index_of(split.users.ids), split.items.index_of(products.ids)
    )
    cut = split.cut.astype("datetime64[s]").item()
    until = cut - dt.timedelta(seconds=1)
    with sessions() as session:
        db = load_purchase_days(session, until=until)
    assert len(db) == len(rows) and db.lines.sum() == rows.lines.sum()
    trained = runner.invoke(cli, args=["train", "--next-purchase", "--until", f"{until:%Y-%m-%dT%H:%M:%S}"])
    assert trained.exit_code == 0, trained.output
    assert "succeeded: next-purchase ranker" in trained.output

    fits: list[object] = []  # every NextBasketRanker.fit from here on (the real method still runs)
    fit = NextBasketRanker.fit

    def counted(self: NextBasketRanker, *args: Any, **kwargs: Any) -> NextBasketRanker:
        fits.append(self)
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(NextBasketRanker, "fit", counted)
    from api import create_app

    fresh = create_app(settings)  # a new web process: shares nothing with the trainer but the database
    try:
        with session_scope(sessions) as session:
            headers = bearer(create_key(session, "server", name="test next purchase")[1])
        client = fresh.test_client()
        truth = split.truth["next_purchases"].user_idxs
        assert truth.size >= 10
        for r, u in enumerate(truth.tolist()):
            resp = client.get(f"/v1/customers/{split.users.ids[u]}/next-purchase?n=10", headers=headers)
            assert resp.status_code == 200, resp.json
            assert resp.json["note"] is None  # the trained ranker, not the timing model
            measured = [str(split.items.ids[i]) for i in evaluated[r] if i >= 0]
            assert [item["sku"] for item in resp.json["items"]] == measured
    finally:
        fresh.extensions["giftrec"].close()
    assert fits == []  # the web process loaded the ranker: it never fitted one


@contextmanager
def _web_processes(settings: Settings) -> Iterator[list[NextPurchaseService]]:
    """Two apps, each with its own model store and next-purchase service, sharing only the database."""
    from api import create_app
    from api.next_purchase import next_purchase_service

    apps = [create_app(settings), create_app(settings)]
    try:
        services = []
        for app in apps:
            with app.app_context():
                services.append(next_purchase_service())
        yield services
    finally:
        for app in apps:
            app.extensions["giftrec"].close()


def _look(services: list[NextPurchaseService]) -> list[str | None]:
    """What each process's next look (every ``model.reload_interval`` seconds) loads: their versions."""
    for service in services:
        service.refresh()
    return [s.version for s in services]


def test_two_web_processes_sharing_only_the_database_both_serve_the_new_ranker(
    settings: Settings, sessions: sessionmaker[Session], imported: None
):
    """Train in one place: each app (its own model store and service, nothing shared but the database)
    serves the new version after its next look (``model.reload_interval``), without a restart."""
    with sessions() as session:
        customer = _busiest(session)
    with _web_processes(settings) as services:
        before = [next_purchase_for(s, customer, 5) for s in services]
        assert all(b.note == PREPARING for b in before)  # nothing trained yet: the timing model
        first = _train(sessions, settings)
        assert _look(services) == [first, first]
        assert all(next_purchase_for(s, customer, 5).note is None for s in services)
        second = _train(sessions, settings)
        assert second != first
        assert _look(services) == [second, second]


def test_after_a_rollback_the_web_processes_serve_the_pinned_ranker_until_unpin(
    runner, settings: Settings, sessions: sessionmaker[Session], imported: None
):  # type: ignore[no-untyped-def]
    """Regression: the ranker had no rollback or pin; a bad nightly ranker could only be replaced by
    training again. `giftrec model rollback --next-purchase` now works as it does for the models: each web
    process (nothing shared but the database) serves the previous ranker after its next look, the next
    nightly training waits behind the pin, and `model unpin --next-purchase` serves the newest again."""
    with sessions() as session:
        customer = _busiest(session)
    with _web_processes(settings) as services:
        first, second = _train(sessions, settings), _train(sessions, settings)
        assert _look(services) == [second, second]

        rolled = runner.invoke(cli, ["model", "rollback", "--next-purchase"])
        assert rolled.exit_code == 0, rolled.output
        assert f"serving next-purchase ranker {first}" in rolled.output and "pinned" in rolled.output
        nightly = _train(sessions, settings)  # waits behind the pin
        assert _look(services) == [first, first]
        assert all(next_purchase_for(s, customer, 5).note is None for s in services)
        listing = runner.invoke(cli, ["model", "list"]).output.splitlines()
        rankers = listing[listing.index("next-purchase rankers (`giftrec train --next-purchase`):") + 1 :]
        marks = {line[2:].split()[0]: line for line in rankers if line[:2] in ("* ", "  ") and line[2] != " "}
        assert marks[first].startswith("*") and "pinned" in marks[first]
        assert "rolled back" in marks[second] and marks[nightly].startswith(" ")

        released = runner.invoke(cli, ["model", "unpin", "--next-purchase"])
        assert released.exit_code == 0, released.output
        assert f"serving next-purchase ranker {nightly}" in released.output
        assert _look(services) == [nightly, nightly]


def test_a_customer_without_purchases_gets_no_estimates(
    settings: Settings, serving: Serving, sessions: sessionmaker[Session], imported: None, clock: FakeClock
):
    with session_scope(sessions) as session:
        session.add(Customer(external_id="NEW-1"))
    service = NextPurchaseService(serving, sessions, clock=clock)
    result = next_purchase_for(service, "NEW-1")  # from the timing model: nothing trained yet
    assert result.p_alive is None and result.items == [] and result.note == "no purchases yet"
    _train(sessions, settings)
    service.refresh()
    assert service.version is not None
    result = next_purchase_for(service, "NEW-1")
    assert result.p_alive is None and result.items == [] and result.note == "no purchases yet"


def test_before_any_training_the_timing_model_answers_and_nothing_is_fitted(
    serving: Serving,
    sessions: sessionmaker[Session],
    imported: None,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
):
    """Regression (issue 18): every web process fitted the learned ranking itself (44 s of CPU on the full
    UCI file) after each model change. Now it only loads what training stored; until then its own items
    ranked by repurchase chance, with a note, and the ranker is never fitted here."""
    fits: list[object] = []
    fit = NextBasketRanker.fit

    def counted(self: NextBasketRanker, *args: Any, **kwargs: Any) -> NextBasketRanker:
        fits.append(self)
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(NextBasketRanker, "fit", counted)
    with sessions() as session:
        customer = _busiest(session)
        bought = bought_skus(session, customer)
    service = NextPurchaseService(serving, sessions, clock=clock)
    early = next_purchase_for(service, customer, 5)
    assert early.note == PREPARING and early.p_alive is not None
    assert 1 <= len(early.items) <= 5
    assert not any(it.is_new for it in early.items) and {it.sku for it in early.items} <= bought
    assert [it.score for it in early.items] == [it.probability for it in early.items]
    clock.advance(24 * 3600)  # many looks later, still nothing trained: the same timing fit
    assert next_purchase_for(service, customer, 5) == early
    service.wait()
    assert service.version is None and fits == []


def test_a_new_ranker_is_swapped_in_at_the_next_look_not_when_orders_or_the_model_change(
    settings: Settings, serving: Serving, sessions: sessionmaker[Session], imported: None, clock: FakeClock
):
    first_version = _train(sessions, settings)
    service = NextPurchaseService(serving, sessions, clock=clock, background=False)
    first = service.current()
    assert first.version == first_version
    with session_scope(sessions) as session:
        sku = session.scalar(select(Product.sku).order_by(Product.id).limit(1))
        add_order(session, "LATE-1", [sku], order_id="late-1", at=dt.datetime(2011, 12, 9, 13, 0))
        add_order(session, "LATE-1", [sku], order_id="late-2", at=dt.datetime(2011, 12, 9, 14, 0))
    with sessions.begin() as session:
        run = train_model(session, settings)  # the daily training of the recommender
    assert run.status == "succeeded", run.error
    assert serving.store.refresh().model.version == run.version
    clock.advance(settings.model.reload_interval)
    assert service.current() is first  # orders and a new recommender model change nothing here
    second_version = _train(sessions, settings)  # the nightly train-next-purchase job
    assert service.current() is first  # not before the next look
    clock.advance(settings.model.reload_interval)
    service.current()  # the look (inline here; a background thread when serving)
    swapped = service.current()
    assert swapped is not first and swapped.version == second_version
    assert len(swapped.customers) == len(first.customers) + 1
