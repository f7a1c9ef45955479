"""Recommendation use cases on a model trained from real rows: chain, labels, filters, freshness."""

# ruff: noqa: F811  (pytest fixtures imported from tests.domain.serving.fixtures are redefined as arguments)

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

import numpy as np
import pytest
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from domain.catalog.products import ProductInput, upsert_product
from domain.catalog.snapshot import CARD_FIELDS, CatalogSnapshot
from domain.errors import InvalidInput, NotFound
from domain.models import Customer, Event, Product
from domain.origin import SIMULATED
from domain.serving.model_store import ModelStore, ServingData
from domain.serving.ranked import Ranked, RankedCache
from domain.serving.recommendations import (
    RecommendedItem,
    Serving,
    _filter,
    _picks_for,
    bestsellers,
    catalog_changed,
    customer_changed,
    new_arrivals,
    recommend_for_customer,
    similar_products,
)
from tests.domain.serving.fixtures import (  # noqa: F401
    FakeClock,
    add_order,
    clock,
    imported,
    imported_rows,
    sample_slice,
    serving,
    settings,
    trained,
)


def _regular(serving: Serving) -> tuple[str, int, set[str]]:
    """A customer the model knows who bought many distinct products: (external id, id, skus bought)."""
    data = serving.store.current()
    assert data.model is not None
    bought = data.bought
    counts = bought.indptr[1:] - bought.indptr[:-1]
    u = int(counts.argmax())
    customer_id = int(data.users.ids[u])
    external = next(ext for ext, cid in data.customers.items() if cid == customer_id)
    cat = serving.catalog.current()
    pids = bought.indices[bought.indptr[u] : bought.indptr[u + 1]]
    return external, customer_id, {cat.skus[p] for p in cat.positions(pids) if p >= 0}


def _new_customer(sessions: sessionmaker[Session], external_id: str) -> int:
    with sessions.begin() as session:
        customer = Customer(external_id=external_id)
        session.add(customer)
        session.flush()
        return customer.id


def test_a_customer_without_history_gets_labelled_bestsellers(sessions, serving, trained):
    _new_customer(sessions, "NEW-1")
    items = recommend_for_customer(serving, "NEW-1", 8)
    assert len(items) == 8
    assert {i.source for i in items} == {"bestsellers"}
    assert all(i.explanation == "Bestseller of the last 90 days" for i in items)
    assert [i.score for i in items] == sorted((i.score for i in items), reverse=True)
    assert [i.sku for i in items] == [i.sku for i in bestsellers(serving, n=8)]
    assert len({i.recommendation_id for i in items}) == 8
    again = recommend_for_customer(serving, "NEW-1", 8)
    assert not {i.recommendation_id for i in items} & {i.recommendation_id for i in again}


def test_bad_input_is_refused_with_the_field_at_fault(serving, trained):
    with pytest.raises(NotFound, match="customer NOPE not found"):
        recommend_for_customer(serving, "NOPE", 5)
    with pytest.raises(NotFound):
        similar_products(serving, "NO-SUCH-SKU", 5)
    customer = _regular(serving)[0]
    for kwargs, field in (
        ({"n": 0}, "n"),
        ({"n": 101}, "n"),
        ({"min_price": -1}, "min_price"),
        ({"min_price": 10, "max_price": 5}, "max_price"),
    ):
        with pytest.raises(InvalidInput) as info:
            recommend_for_customer(serving, customer, **kwargs)  # type: ignore[arg-type]
        assert info.value.field == field
    with pytest.raises(InvalidInput) as info:
        bestsellers(serving, days=0)
    assert info.value.field == "days"


def test_known_customers_get_explained_collaborative_picks_never_already_bought(serving, trained):
    customer, _, bought = _regular(serving)
    items = recommend_for_customer(serving, customer, 10)
    assert len(items) == 10
    assert items[0].source == "collaborative"
    assert items[0].explanation.startswith("Because you bought ")
    titles = {t for t in serving.catalog.current().titles}
    assert items[0].explanation.removeprefix("Because you bought ").split(" and ")[0] in titles
    assert not {i.sku for i in items} & bought
    repeats = recommend_for_customer(serving, customer, 10, keep_repeats=True)
    assert {i.sku for i in repeats} & bought  # the served hybrid ranks a regular's own favourites first


def test_price_category_and_exclude_filters_apply_to_every_source(sessions, serving, trained):
    customer, _, _ = _regular(serving)
    plain = recommend_for_customer(serving, customer, 10)
    excluded = [plain[0].sku, plain[3].sku]
    items = recommend_for_customer(serving, customer, 10, exclude=excluded)
    assert not {i.sku for i in items} & set(excluded)
    cheap = recommend_for_customer(
        serving, customer, 10, min_price=Decimal("1.00"), max_price=Decimal("2.00")
    )
    assert cheap and all(Decimal("1.00") <= i.price <= Decimal("2.00") for i in cheap)
    # Put a few products in a category: only they may come back, from whichever source.
    tagged = [i.sku for i in plain[:2]] + [i.sku for i in bestsellers(serving, n=3)]
    with sessions.begin() as session:
        session.execute(update(Product).where(Product.sku.in_(tagged)).values(category="candles"))
    catalog_changed(serving)
    in_category = recommend_for_customer(serving, customer, 10, category="candles")
    assert in_category and {i.sku for i in in_category} <= set(tagged)
    assert all(i.category == "candles" for i in in_category)
    assert {i.sku for i in bestsellers(serving, category="candles", n=10)} <= set(tagged)


def test_hiding_a_product_removes_it_from_the_next_response(sessions, settings, serving, trained, clock):
    customer, _, _ = _regular(serving)
    top = recommend_for_customer(serving, customer, 5)[0].sku
    best = bestsellers(serving, n=1)[0].sku
    other_process = CatalogSnapshot(sessions, clock=clock)
    assert other_process.current().available[other_process.current().position_by_sku[top]]
    with sessions.begin() as session:
        upsert_product(session, top, ProductInput(is_active=False), actor="test")
        upsert_product(session, best, ProductInput(in_stock=False), actor="test")
    catalog_changed(serving)  # what the API does after its commit
    assert top not in {i.sku for i in recommend_for_customer(serving, customer, 20)}
    assert best not in {i.sku for i in bestsellers(serving, n=20)}
    # Another process notices within its check interval, without being told.
    clock.advance(1.0)
    cat = other_process.current()
    assert not cat.available[cat.position_by_sku[top]] and not cat.available[cat.position_by_sku[best]]


def test_a_new_customer_who_buys_after_training_is_folded_in(sessions, settings, serving, trained, clock):
    anchor = bestsellers(serving, n=1)[0]
    with sessions.begin() as session:
        customer_id = add_order(session, "NEW-2", [anchor.sku], order_id="API-NEW-2").customer_id
    assert customer_id is not None
    customer_changed(serving, customer_id)  # what the API does after its commit
    items = recommend_for_customer(serving, "NEW-2", 6)
    assert items[0].source == "collaborative"
    assert items[0].explanation == f"Because you bought {anchor.title}"
    assert anchor.sku not in {i.sku for i in items}
    # A process that was not told sees the purchase within its freshness interval.
    other = Serving(settings, ModelStore(settings, sessions, background=False, clock=clock), serving.catalog)
    other.store.current()
    with sessions.begin() as session:
        add_order(session, "NEW-2", [items[0].sku], order_id="API-NEW-2b", at=dt.datetime(2011, 12, 11))
    clock.advance(1.0)
    other.store.current()  # the due freshness check runs
    assert items[0].sku not in {i.sku for i in recommend_for_customer(other, "NEW-2", 6)}


def _view(session: Session, customer_id: int, product_id: int, event_id: int) -> None:
    """A view event with a chosen id: a lower id committed after a higher one is a transaction that
    committed late."""
    session.add(
        Event(
            id=event_id,
            customer_id=customer_id,
            product_id=product_id,
            kind="view",
            occurred_at=dt.datetime(2011, 12, 10, 12, 0),
        )
    )


def _unseen_by_a_regular(
    serving: Serving, store: ModelStore, sessions: sessionmaker[Session]
) -> tuple[int, ServingData, int, list[int]]:
    """The set-up of the freshness tests: a regular customer's id, ``store``'s data (a model loaded), an
    event id well above every existing one, and the model's products the customer has no row for."""
    _, customer_id, _ = _regular(serving)
    data = store.current()
    assert data.model is not None
    with sessions() as session:
        base = (session.scalar(select(func.max(Event.id))) or 0) + 1000
    seen = set(data.model.item_index.ids[store.customer(data, customer_id).row.indices].tolist())
    unseen = [int(p) for p in data.model.item_index.ids.tolist() if p not in seen]
    return customer_id, data, base, unseen


def test_the_freshness_check_reloads_a_customer_once_per_new_activity_not_at_every_check_of_its_overlap(
    sessions, settings, serving, trained, clock
):
    """Regression (issue 18, the deployment benchmark): every freshness check (each second) reloaded every
    customer with activity in the last ``freshness_overlap`` (10) seconds, so each write was read ten
    times over by every web process, a third of a web process's CPU under mixed traffic. A customer is
    reloaded when an order or event of theirs appears that this process has not read yet, including one
    committed late with a lower id."""
    other = ModelStore(settings, sessions, background=False, clock=clock)
    customer_id, data, base, unseen = _unseen_by_a_regular(serving, other, sessions)
    with sessions.begin() as session:
        _view(session, customer_id, unseen[0], base + 10)
    clock.advance(1.0)
    data = other.current()
    first = data.fresh[customer_id]
    assert first.recalculate

    for _ in range(3):  # within the overlap: nothing new for this customer
        clock.advance(1.0)
        assert other.current().fresh[customer_id] is first
    with sessions.begin() as session:  # a simulated order is no activity
        external = session.scalar(select(Customer.external_id).where(Customer.id == customer_id))
        add_order(session, external, [], order_id="SIM-FRESH", source=SIMULATED)
    clock.advance(1.0)
    assert other.current().fresh[customer_id] is first

    with sessions.begin() as session:  # committed late: a lower id than one already seen
        _view(session, customer_id, unseen[1], base + 5)
    clock.advance(1.0)
    again = other.current().fresh[customer_id]
    assert again is not first
    column = int(data.model.item_index.index_of([unseen[1]])[0])
    assert column in again.row.indices and column not in first.row.indices


def test_a_process_s_own_write_is_reloaded_once_not_again_by_its_freshness_check(
    sessions, settings, serving, trained, clock
):
    """Issue 18 (writes at a read's cost): a process told of its own write (with the ids written) reloads
    the customer on their next request; its freshness check then skipped none of it and read the same rows
    again. It still reloads the customer for a row another process wrote."""
    store = serving.store
    customer_id, data, base, unseen = _unseen_by_a_regular(serving, store, sessions)
    clock.advance(1.0)
    store.current()  # a freshness check before the write: its watermark is below the write
    with sessions.begin() as session:
        _view(session, customer_id, unseen[0], base + 10)
    customer_changed(serving, customer_id, event_ids=[base + 10])  # what the API does after its commit
    mine = store.customer(data, customer_id)
    column = int(data.model.item_index.index_of([unseen[0]])[0])
    assert mine.recalculate and column in mine.row.indices
    for _ in range(3):
        clock.advance(1.0)
        assert store.current().fresh[customer_id] is mine, "the freshness check read the own write again"

    with sessions.begin() as session:  # another process's write for the same customer
        _view(session, customer_id, unseen[1], base + 20)
    clock.advance(1.0)
    theirs = store.current().fresh[customer_id]
    assert theirs is not mine
    assert int(data.model.item_index.index_of([unseen[1]])[0]) in theirs.row.indices


def test_an_own_write_no_request_read_yet_is_reloaded_by_the_freshness_check_with_the_rest(
    sessions, settings, serving, trained, clock
):
    """The own ids are marked read, so the freshness check reloads a customer this process wrote for and
    no request has reloaded yet along with the others (cheaper than a request's reload of one); a request
    then finds them reloaded."""
    store = serving.store
    customer_id, data, base, (unseen, *_) = _unseen_by_a_regular(serving, store, sessions)
    clock.advance(1.0)
    store.current()
    with sessions.begin() as session:
        _view(session, customer_id, unseen, base + 10)
    customer_changed(serving, customer_id, event_ids=[base + 10])
    clock.advance(1.0)
    reloaded = store.current().fresh[customer_id]
    assert int(data.model.item_index.index_of([unseen])[0]) in reloaded.row.indices
    assert store.customer(data, customer_id) is reloaded, "read again by the request"


def test_a_known_customer_who_buys_again_is_recalculated(sessions, serving, trained):
    customer, customer_id, _ = _regular(serving)
    before = recommend_for_customer(serving, customer, 5)
    rows = serving.store.customer(serving.store.current(), customer_id)
    assert rows.user_idx >= 0 and not rows.recalculate
    with sessions.begin() as session:
        add_order(session, customer, [before[0].sku], order_id="API-REG-1")
    customer_changed(serving, customer_id)
    after = recommend_for_customer(serving, customer, 5)
    assert before[0].sku not in {i.sku for i in after}
    rows = serving.store.customer(serving.store.current(), customer_id)
    assert rows.recalculate and rows.user_idx >= 0


def test_similar_products_exclude_the_product_and_hidden_ones(sessions, serving, trained):
    anchor = bestsellers(serving, n=1)[0]
    items = similar_products(serving, anchor.sku, 6)
    assert len(items) == 6 and anchor.sku not in {i.sku for i in items}
    assert items[0].source == "similar"
    assert items[0].explanation == f"Customers who bought {anchor.title} also bought this"
    with sessions.begin() as session:
        upsert_product(session, items[0].sku, ProductInput(is_active=False), actor="test")
    catalog_changed(serving)
    assert items[0].sku not in {i.sku for i in similar_products(serving, anchor.sku, 6)}


def test_a_product_the_model_never_saw_is_new_and_falls_back(sessions, serving, trained):
    with sessions.begin() as session:
        upsert_product(
            session, "GIFT-NEW", ProductInput(title="Silver locket", price=Decimal("120.00")), actor="test"
        )
        session.execute(
            update(Product).where(Product.sku == "GIFT-NEW").values(created_at=dt.datetime(2011, 12, 20))
        )
    catalog_changed(serving)
    newest = new_arrivals(serving, n=3)
    assert newest[0].sku == "GIFT-NEW" and newest[0].source == "new_arrivals"
    created = [
        serving.catalog.current().created_at[serving.catalog.current().position_by_sku[i.sku]] for i in newest
    ]
    assert created == sorted(created, reverse=True)
    fallback = similar_products(serving, "GIFT-NEW", 4)
    assert [i.source for i in fallback] == ["bestsellers"] * 4


def test_bestsellers_count_distinct_buyers_in_the_window(sessions, serving, trained):
    with sessions() as session:
        last = session.scalar(select(Product.id).order_by(Product.id.desc()))
    assert last is not None
    week = bestsellers(serving, days=7, n=5)
    quarter = bestsellers(serving, days=90, n=5)
    assert week and quarter and [i.sku for i in week] != [i.sku for i in quarter]
    assert all(i.explanation == "Bestseller of the last 7 days" for i in week)
    assert week[0].score <= quarter[0].score


def _shown(items: list) -> list[tuple]:
    return [(i.sku, i.score, i.source, i.explanation) for i in items]


def _chain(serving: Serving, customer: str, n: int, **filters) -> list[RecommendedItem]:
    """What the fallback chain ranks under the request's own filters (``fill_picks``, the path a request
    takes when a customer's ranking runs out): the oracle of the ranking path."""
    cat = serving.catalog.current()
    data = serving.store.current()
    customer_id = serving.store.find_customer(data, customer)
    assert customer_id is not None
    rows = serving.store.customer(data, customer_id)
    return _picks_for(serving, data, cat, _filter(cat, **filters), n, rows)


def test_rankings_answer_exactly_what_the_chain_ranks_under_the_filters(sessions, settings, serving, trained):
    """A request takes the first ``n`` products of the customer's ranking (kept, or made for this
    request when kept rankings are off) that its filters allow, and explains only those: every filter gives
    the same picks, scores, sources and explanations as the fallback chain ranking under that filter,
    including filters that exhaust the ranking."""
    per_request = Serving(
        settings,
        ModelStore(
            dataclasses.replace(settings, api=dataclasses.replace(settings.api, picks_cache_customers=0)),
            sessions,
            background=False,
        ),
        serving.catalog,
    )
    # Nothing kept and nothing precomputed: every request ranks (``per_request`` above answers its
    # customers from the rankings precomputed when the model was loaded).
    nothing_ahead = Serving(
        settings,
        ModelStore(
            dataclasses.replace(
                settings,
                api=dataclasses.replace(settings.api, picks_cache_customers=0, precomputed_customers=0),
            ),
            sessions,
            background=False,
        ),
        serving.catalog,
    )
    with sessions.begin() as session:  # half the products in a category
        session.execute(update(Product).where(Product.id % 2 == 0).values(category="even"))
    catalog_changed(serving)
    data = serving.store.current()
    customers = sorted(data.customers)[::7][:40]
    plain = recommend_for_customer(serving, customers[0], 10)
    filters = [
        {},
        {"n": 30},
        {"min_price": 1, "max_price": 3},
        {"max_price": 0.5},  # few products: the kept ranking runs out, the request ranks
        {"exclude": [i.sku for i in plain[:5]]},
        {"n": 100, "min_price": 2},
        {"category": "even", "exclude": [i.sku for i in plain[:3]]},
        {"n": 20, "category": "even", "min_price": 1.5, "max_price": 4},
    ]
    for customer in customers:
        for kwargs in filters:
            options = dict(kwargs)
            n = options.pop("n", 10)
            twice = [recommend_for_customer(serving, customer, n, **options) for _ in range(2)]
            ranked_now = recommend_for_customer(per_request, customer, n, **options)
            expected = _shown(_chain(serving, customer, n, **options))
            assert _shown(twice[0]) == expected == _shown(twice[1]) == _shown(ranked_now), (customer, kwargs)
            assert _shown(recommend_for_customer(nothing_ahead, customer, n, **options)) == expected
    assert len(serving.store.current().ranked) > 0
    assert len(per_request.store.current().ranked) == 0
    ahead = per_request.store.current().precomputed
    assert ahead is not None and ahead.ranked_count == len(ahead) > len(customers)
    assert nothing_ahead.store.current().precomputed is None


def test_recommended_items_start_with_the_card_fields():
    assert RecommendedItem._fields[: len(CARD_FIELDS)] == CARD_FIELDS


def test_ranked_cache_keeps_the_most_recent_customers_and_forgets_changed_rows():
    rows_a, rows_b, rows_c = object(), object(), object()
    cache = RankedCache(2)
    for cid, rows in ((1, rows_a), (2, rows_b)):
        cache.put(cid, Ranked(rows, np.arange(3, dtype=np.int32), np.ones(3, dtype=np.float32)))
    assert cache.get(1, rows_a) is not None  # 1 is now the most recent
    cache.put(3, Ranked(rows_c, np.arange(3, dtype=np.int32), np.ones(3, dtype=np.float32)))
    assert cache.get(2, rows_b) is None and len(cache) == 2  # least recently used out
    assert cache.get(1, object()) is None  # other rows (the customer changed): dropped
    assert len(cache) == 1
    off = RankedCache(0)
    off.put(1, Ranked(rows_a, np.arange(3, dtype=np.int32), np.ones(3, dtype=np.float32)))
    assert len(off) == 0


def _kept(serving: Serving, external_ids: list[str]) -> dict[str, Ranked | None]:
    """The kept ranking each customer's next request would use (None: it ranks again)."""
    data = serving.store.current()
    return {
        ext: data.ranked.get(data.customers[ext], serving.store.customer(data, data.customers[ext]))
        for ext in external_ids
    }


def test_live_activity_reaches_only_its_customers_picks_and_keeps_the_other_rankings(
    sessions, settings, serving, trained, clock
):
    """Regression (issue 18): every data_refresh_interval with new orders or events, each worker re-read
    every interaction and started an empty ranked-picks cache. Now the new rows since the data's
    watermark reach the customers they belong to, and nothing else is rebuilt."""
    buyer, buyer_id, _ = _regular(serving)
    data = serving.store.current()
    others = [ext for ext in sorted(data.customers)[::9][:6] if ext != buyer]
    before = recommend_for_customer(serving, buyer, 5)
    for ext in others:
        recommend_for_customer(serving, ext, 5)
    kept = _kept(serving, others)
    assert all(kept.values())
    sales = len(data.sales)
    browser = others[0]
    with sessions.begin() as session:  # another process records a purchase and a view
        add_order(session, buyer, [before[0].sku], order_id="API-LIVE-1")
        product_id = session.scalar(select(Product.id).where(Product.sku == before[1].sku))
        session.add(
            Event(
                customer_id=data.customers[browser],
                product_id=product_id,
                kind="view",
                occurred_at=dt.datetime(2011, 12, 10, 13),
            )
        )
    clock.advance(301.0)  # the model, data and freshness checks are all due
    serving.store.current()  # runs them (inline here; a thread in a worker)
    after = serving.store.current()
    assert after.user_items is data.user_items and after.model is data.model  # nothing re-read in bulk
    assert len(after.sales) == sales + 1  # the new sale counts for bestsellers
    assert before[0].sku not in {i.sku for i in recommend_for_customer(serving, buyer, 5)}
    now = _kept(serving, others)
    assert now[browser] is None  # their rows changed: ranked again, folded in
    assert all(now[ext] is kept[ext] for ext in others[1:])  # the other customers' rankings survive
    assert serving.store.customer(after, buyer_id).recalculate


def test_a_full_rebuild_with_the_same_model_keeps_the_rankings_of_unchanged_customers(
    sessions, settings, serving, trained, clock
):
    """An erasure deletes events, which only a full read of the data can follow; the rankings still
    depend only on the model and each customer's rows, so a customer whose rows are equal keeps theirs."""
    data = serving.store.current()
    customers = sorted(data.customers)[::9][:4]
    shown = {ext: _shown(recommend_for_customer(serving, ext, 5)) for ext in customers}
    kept = _kept(serving, customers)
    with sessions.begin() as session:
        customer = Customer(external_id="ERASE-ME")
        session.add(customer)
        session.flush()
        product_id = session.scalar(select(Product.id).order_by(Product.id))
        session.add(
            Event(
                customer_id=customer.id,
                product_id=product_id,
                kind="view",
                occurred_at=dt.datetime(2011, 12, 1),
            )
        )
    clock.advance(301.0)
    serving.store.current()
    with sessions.begin() as session:
        session.execute(delete(Event).where(Event.customer_id == customer.id))  # as erase_customer does
    clock.advance(301.0)
    serving.store.current()
    after = serving.store.current()
    assert after.user_items is not data.user_items  # a deletion: the data was read again
    for ext in customers:
        assert _shown(recommend_for_customer(serving, ext, 5)) == shown[ext]
    assert all(entry is kept[ext] for ext, entry in _kept(serving, customers).items())


def test_a_first_request_explains_only_the_items_it_shows(serving, trained):
    """The explanations (a factorisation per customer) are made for the items a response shows: the first
    request explains its n; a later one with other filters explains a block of the kept order at once."""
    buyer, buyer_id, _ = _regular(serving)
    first = recommend_for_customer(serving, buyer, 5)
    assert {i.source for i in first} == {"collaborative"}
    kept = _kept(serving, [buyer])[buyer]
    assert kept is not None
    cat = serving.catalog.current()
    shown = {cat.position_by_sku[i.sku] for i in first}
    model = serving.store.current().model
    assert model is not None
    to_cat = cat.aligned(model.item_index)
    assert {int(to_cat[i]) for i in kept.texts} == shown
    later = recommend_for_customer(serving, buyer, 5, exclude=[i.sku for i in first])
    assert not shown & {cat.position_by_sku[i.sku] for i in later}
    assert set(kept.items[:25].tolist()) <= set(kept.texts)
