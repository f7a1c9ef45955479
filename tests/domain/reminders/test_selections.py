"""Selection planning on the real sample catalogue, and the review use cases."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator

import numpy as np
import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from config import Settings
from domain.customers.imports import import_orders
from domain.db import Base, make_session_factory, session_scope
from domain.errors import Conflict, InvalidInput, NotFound
from domain.models import (
    AuditLog,
    Customer,
    GiftGiven,
    GiftSelection,
    ImportantDate,
    OccasionOptIn,
    Order,
    OrderLine,
    Product,
    Recipient,
    SelectionPick,
    User,
)
from domain.origin import SIMULATED
from domain.reminders.selections import (
    add_pick,
    apply_review_cutoff,
    approve_selection,
    get_selection,
    list_selections,
    plan_due_selections,
    plan_selections,
    remove_pick,
    swap_pick,
)
from domain.review.selection import search_catalog
from domain.serving.candidates import CandidateRows, Candidates, Catalog
from tests.conftest import SAMPLE

NOW = dt.datetime(2011, 12, 1, 6, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def sample_db(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[sessionmaker[Session]]:
    """The sample imported once for the module; every test rolls its own changes back."""
    factory = make_session_factory(engine)
    with session_scope(factory) as s:
        import_orders(s, SAMPLE, "online-retail", instance_dir=tmp_path_factory.mktemp("instance"))
    yield factory
    with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(delete(table))


@pytest.fixture
def db(sample_db: sessionmaker[Session]) -> Iterator[Session]:
    s = sample_db()
    try:
        yield s
    finally:
        s.rollback()
        s.close()


# ------------------------------------------------------------------------------------------ builders
def customer(db: Session, n: int = 0, **kw: object) -> Customer:
    """The n-th imported customer (by id) who bought something, with `kw` set on it."""
    ids = (
        db.execute(
            select(Order.customer_id)
            .where(Order.customer_id.is_not(None))
            .group_by(Order.customer_id)
            .order_by(Order.customer_id)
            .limit(n + 1)
        )
        .scalars()
        .all()
    )
    c = db.get(Customer, ids[n])
    assert c is not None
    for k, v in kw.items():
        setattr(c, k, v)
    db.flush()
    return c


def recipient(db: Session, c: Customer, **kw: object) -> Recipient:
    fields: dict[str, object] = {"name": "Anna", "relationship_": "wife", "gender": "female"}
    fields.update(kw)
    r = Recipient(customer_id=c.id, **fields)
    db.add(r)
    db.flush()
    return r


def date(db: Session, r: Recipient, month: int, day: int, **kw: object) -> ImportantDate:
    d = ImportantDate(recipient_id=r.id, kind=kw.pop("kind", "birthday"), month=month, day=day, **kw)
    db.add(d)
    db.flush()
    return d


def manager(db: Session, email: str = "am@example.com") -> User:
    u = User(email=email, name="Account Manager", password_hash="x", role="manager")
    db.add(u)
    db.flush()
    return u


def selections(db: Session, **where: object) -> list[GiftSelection]:
    stmt = select(GiftSelection).order_by(GiftSelection.id)
    for k, v in where.items():
        stmt = stmt.where(getattr(GiftSelection, k) == v)
    return list(db.execute(stmt).scalars())


def with_reminders(settings: Settings, **kw: object) -> Settings:
    return dataclasses.replace(settings, reminders=dataclasses.replace(settings.reminders, **kw))


def at(day: dt.date, hour: int = 6, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=dt.UTC)


# ------------------------------------------------------------------------------------------- planning
def test_reminder_appears_exactly_on_lead_day(db, settings):
    d = date(db, recipient(db, customer(db)), 12, 9)
    first = plan_selections(db, settings, now=NOW)
    assert first.planned == 0 and selections(db) == []
    second = plan_selections(db, settings, now=NOW + dt.timedelta(days=1))
    assert second.planned == 1 and second.caught_up == 0
    (s,) = selections(db)
    assert (s.important_date_id, s.occasion_key, s.occasion_code) == (d.id, f"date:{d.id}", "birthday")
    assert (s.occasion_on, s.year, s.status, s.status_reason) == (dt.date(2011, 12, 9), 2011, "ready", None)


def test_lead_time_of_the_date_beats_the_customers(db, settings):
    c = customer(db, reminder_lead_days=10)
    r = recipient(db, c)
    date(db, r, 12, 12)  # the customer's 10 days: not yet
    on_lead_day = date(db, r, 12, 11)
    own = date(db, r, 12, 5, lead_days=3, kind="name_day")  # its own 3 days: not yet
    own_today = date(db, r, 12, 4, lead_days=3, kind="custom", title="first date")
    summary = plan_selections(db, settings, now=NOW)
    assert (summary.planned, summary.caught_up) == (2, 0), summary
    assert sorted(s.important_date_id for s in selections(db)) == sorted([on_lead_day.id, own_today.id])
    assert own.id not in {s.important_date_id for s in selections(db)}


def test_planning_twice_adds_nothing_and_the_key_is_unique(db, settings):
    c = customer(db)
    date(db, recipient(db, c), 12, 8)
    db.add(OccasionOptIn(customer_id=c.id, occasion_code="christmas"))
    db.flush()
    now = at(dt.date(2011, 12, 18))
    first = plan_selections(db, settings, now=now)
    assert first.planned == 1  # Christmas; the birthday's lead day was long ago: too late, skipped
    assert first.skipped == 0 or first.skipped == 1
    n_sel, n_picks = len(selections(db)), db.scalar(select(func.count()).select_from(SelectionPick))
    again = plan_selections(db, settings, now=now)
    assert (again.planned, again.skipped, again.existing) == (0, 0, first.selections)
    assert len(selections(db)) == n_sel
    assert db.scalar(select(func.count()).select_from(SelectionPick)) == n_picks
    (xmas,) = selections(db, occasion_key="occasion:christmas")
    assert (xmas.occasion_on, xmas.recipient_id, xmas.occasion_code) == (
        dt.date(2011, 12, 25),
        None,
        "christmas",
    )
    db.add(
        GiftSelection(
            customer_id=c.id,
            occasion_key="occasion:christmas",
            occasion_code="christmas",
            occasion_on=dt.date(2011, 12, 25),
            year=2011,
        )
    )
    with pytest.raises(IntegrityError):
        db.flush()


def test_feb29_in_a_common_year_follows_each_dates_rule(db, settings):
    r = recipient(db, customer(db))
    feb28 = date(db, r, 2, 29, feb29_rule="feb28")
    mar1 = date(db, r, 2, 29, feb29_rule="mar1", kind="wedding_anniversary")
    plan_selections(db, settings, now=at(dt.date(2011, 2, 21)))
    assert [(s.important_date_id, s.occasion_on) for s in selections(db)] == [
        (feb28.id, dt.date(2011, 2, 28))
    ]
    plan_selections(db, settings, now=at(dt.date(2011, 2, 22)))
    assert selections(db, important_date_id=mar1.id)[0].occasion_on == dt.date(2011, 3, 1)


def test_time_zones_around_midnight(db, settings):
    tokyo = date(db, recipient(db, customer(db, 0, time_zone="Asia/Tokyo")), 12, 9)
    la = date(db, recipient(db, customer(db, 1, time_zone="America/Los_Angeles")), 12, 9)
    la_today = date(db, recipient(db, customer(db, 2, time_zone="America/Los_Angeles")), 12, 8)
    now = at(dt.date(2011, 12, 1), 20, 30)  # 05:30 on 2 Dec in Tokyo, 12:30 on 1 Dec in Los Angeles
    summary = plan_selections(db, settings, now=now)
    planned = {s.important_date_id for s in selections(db)}
    assert planned == {tokyo.id, la_today.id}
    assert la.id not in planned and summary.caught_up == 0


def test_catch_up_after_downtime_then_skip_with_reason(db, settings):
    r = recipient(db, customer(db))
    caught = date(db, r, 12, 5)
    missed = date(db, r, 12, 2, kind="name_day")
    summary = plan_selections(db, settings, now=NOW)
    assert (summary.planned, summary.caught_up, summary.skipped) == (1, 1, 1)
    (c,) = selections(db, important_date_id=caught.id)
    assert c.status == "ready" and "caught up 3 day(s)" in (c.status_reason or "") and c.picks
    (m,) = selections(db, important_date_id=missed.id)
    assert m.status == "skipped" and not m.picks
    assert "1 day(s) away" in (m.status_reason or "") and "catch-up minimum of 2" in (m.status_reason or "")
    assert plan_selections(db, settings, now=NOW + dt.timedelta(hours=12)).selections == 0


def test_one_off_dates_only_once_yearly_every_year(db, settings):
    r = recipient(db, customer(db))
    once = date(db, r, 12, 8, recurrence="once", year=2011, kind="custom", title="graduation")
    yearly = date(db, r, 12, 8)
    plan_selections(db, settings, now=NOW)
    plan_selections(db, settings, now=NOW.replace(year=2012))
    got = sorted((s.important_date_id, s.year) for s in selections(db))
    assert got == [(once.id, 2011), (yearly.id, 2011), (yearly.id, 2012)]


def test_stopped_dates_and_unsubscribed_customers_are_never_planned(db, settings):
    date(db, recipient(db, customer(db, 0)), 12, 8, is_stopped=True, stop_reason="recipient left")
    date(db, recipient(db, customer(db, 1, unsubscribed_at=dt.datetime(2011, 1, 1))), 12, 8)
    assert plan_selections(db, settings, now=NOW).due == 0
    assert selections(db) == []


@pytest.mark.parametrize("policy", ["send", "skip"])
def test_vip_waits_for_review_then_the_cutoff_policy_applies(db, settings, policy):
    settings = with_reminders(settings, vip_cutoff_policy=policy)
    am = manager(db)
    c = customer(db, is_vip=True, account_manager_id=am.id, time_zone="Europe/Moscow")
    date(db, recipient(db, c), 12, 8)
    summary = plan_due_selections(db, settings, NOW)
    assert (summary.awaiting_review, summary.ready) == (1, 0)
    (s,) = selections(db)
    # 3 days before 8 December, at midnight in Moscow (UTC+4 all year from March 2011 to 2014)
    assert s.status == "awaiting_review" and s.review_cutoff_at == dt.datetime(2011, 12, 4, 20, 0)
    assert apply_review_cutoff(db, settings, dt.datetime(2011, 12, 4, 19, 59)).approved == 0
    assert s.status == "awaiting_review"
    out = apply_review_cutoff(db, settings, dt.datetime(2011, 12, 4, 20, 0))
    (entry,) = db.execute(select(AuditLog).where(AuditLog.entity_id == str(s.id))).scalars()
    if policy == "send":
        assert (out.approved, out.skipped, s.status) == (1, 0, "approved")
        assert entry.action == "selection.cutoff_approved"
    else:
        assert (out.approved, out.skipped, s.status) == (0, 1, "skipped")
        assert entry.action == "selection.cutoff_skipped"
        assert entry.details["alert"] is True and entry.details["account_manager_id"] == am.id
    assert "cut-off" in (s.status_reason or "")


def test_a_reviewed_vip_selection_is_left_alone_by_the_cutoff(db, settings):
    am = manager(db)
    date(db, recipient(db, customer(db, is_vip=True, account_manager_id=am.id)), 12, 8)
    plan_selections(db, settings, now=NOW)
    (s,) = selections(db)
    approve_selection(db, s.id, am)
    out = apply_review_cutoff(
        db, with_reminders(settings, vip_cutoff_policy="skip"), at(dt.date(2011, 12, 7))
    )
    assert (out.approved, out.skipped, s.status, s.reviewed_by_id) == (0, 0, "approved", am.id)


def test_never_repeats_a_gift_for_the_recipient(db, settings):
    c = customer(db)
    words = {"interests": ["heart", "candle", "christmas"]}
    given_to, control = recipient(db, c, **words), recipient(db, c, name="Olga", **words)
    date(db, given_to, 12, 8)
    plan_selections(db, settings, now=NOW)
    (first,) = selections(db)
    first_products = {p.product_id for p in first.picks}
    for pid in first_products:
        db.add(GiftGiven(recipient_id=given_to.id, product_id=pid, given_on=dt.date(2011, 12, 8)))
    date(db, given_to, 12, 9, kind="name_day")
    date(db, control, 12, 9)
    plan_selections(db, settings, now=NOW + dt.timedelta(days=1))
    (again,) = selections(db, recipient_id=given_to.id, occasion_on=dt.date(2011, 12, 9))
    (other,) = selections(db, recipient_id=control.id)
    assert again.picks and not first_products & {p.product_id for p in again.picks}
    assert first_products & {p.product_id for p in other.picks}  # the same candidates without the history


def test_never_suggests_what_the_customer_bought_recently(db, settings):
    since = NOW.replace(tzinfo=None) - dt.timedelta(days=settings.reminders.recent_purchase_days)
    recent_buyer = db.scalar(
        select(Order.customer_id)
        .where(Order.kind == "sale", Order.customer_id.is_not(None), Order.ordered_at >= since)
        .where(Order.ordered_at < NOW.replace(tzinfo=None))
        .order_by(Order.customer_id)
        .limit(1)
    )
    c = db.get(Customer, recent_buyer)
    assert c is not None
    bought = set(
        db.execute(
            select(OrderLine.product_id)
            .join(Order)
            .where(Order.customer_id == c.id, Order.kind == "sale", Order.ordered_at >= since)
        ).scalars()
    )
    assert bought
    titles = db.execute(select(Product.title).where(Product.id.in_(bought))).scalars().all()
    interests = sorted({w.lower() for t in titles for w in t.split() if len(w) > 3})[:20]
    date(db, recipient(db, c, interests=interests), 12, 8)
    plan_selections(db, settings, now=NOW)
    (s,) = selections(db)
    assert s.picks and not bought & {p.product_id for p in s.picks}


def _simulated_gift(db: Session, c: Customer, r: Recipient, product_ids: set[int], key: str) -> None:
    """An order as `giftrec demo simulate-uplift` labels its own, for ``r``, two days before NOW."""
    order = Order(
        external_id=f"SIM-test-{key}",
        customer_id=c.id,
        recipient_id=r.id,
        ordered_at=NOW.replace(tzinfo=None) - dt.timedelta(days=2),
        source=SIMULATED,
    )
    for n, pid in enumerate(sorted(product_ids), start=1):
        price = db.scalar(select(Product.price).where(Product.id == pid))
        order.lines.append(OrderLine(line_no=n, product_id=pid, quantity=1, unit_price=price))
    db.add(order)
    db.flush()


def test_a_simulated_order_is_neither_a_gift_given_nor_a_recent_purchase(db, settings):
    """Regression: the orders `giftrec demo simulate-uplift` generates made planning, a manual add and the
    review page's catalog search treat their products as already given to the recipient (and bought
    recently by the customer), and moved the price tiers."""
    c = customer(db)
    wife = recipient(db, c, interests=["heart", "candle", "christmas"])
    date(db, wife, 12, 8)
    plan_selections(db, settings, now=NOW)
    (first,) = selections(db)
    offered = {p.product_id for p in first.picks}
    _simulated_gift(db, c, wife, offered, "first")
    second = date(db, wife, 12, 8)  # the same day and kind: planned from the same candidates
    plan_selections(db, settings, now=NOW)
    (again,) = selections(db, important_date_id=second.id)
    assert again.tier_bounds == first.tier_bounds
    assert {p.product_id for p in again.picks} == offered
    free = _free_sku(db, again)
    free_id = db.scalar(select(Product.id).where(Product.sku == free))
    assert free_id is not None
    _simulated_gift(db, c, wife, {free_id}, "free")
    assert [card.product_id for card in search_catalog(db, again, free)] == [free_id]
    assert add_pick(db, again.id, free, manager(db)).product_id == free_id


def test_picks_come_in_three_price_tiers_of_available_products(db, settings):
    for n in range(4):
        date(db, recipient(db, customer(db, n)), 12, 8)
    assert plan_selections(db, settings, now=NOW).planned == 4
    for s in selections(db):
        tiers: dict[int, list[SelectionPick]] = {}
        for p in s.picks:
            tiers.setdefault(p.tier, []).append(p)
        assert sorted(tiers) == [1, 2, 3] and len(s.tier_bounds) == 3
        assert all(2 <= len(v) <= settings.reminders.picks_per_tier for v in tiers.values())
        for low, high in ((1, 2), (2, 3)):
            assert max(p.price_at_pick for p in tiers[low]) <= min(p.price_at_pick for p in tiers[high])
        for p in s.picks:
            product = db.get(Product, p.product_id)
            assert product is not None and product.is_active and product.in_stock
            assert p.source in {"collaborative", "profile", "seasonal", "bestseller"} and p.explanation


def test_inactive_out_of_stock_and_slow_products_are_never_picked(db, settings):
    date(db, recipient(db, customer(db)), 12, 8)
    plan_selections(db, settings, now=NOW)
    (s,) = selections(db)
    ids = [p.product_id for p in s.picks]
    db.execute(delete(SelectionPick))
    db.execute(delete(GiftSelection))
    for pid, change in zip(
        ids, [{"is_active": False}, {"in_stock": False}, {"delivery_days": 8}] * 3, strict=False
    ):
        product = db.get(Product, pid)
        for k, v in change.items():
            setattr(product, k, v)
    db.flush()
    plan_selections(db, settings, now=NOW)
    (again,) = selections(db)
    assert again.picks and not set(ids) & {p.product_id for p in again.picks}


def test_picks_are_deterministic(db, settings):
    def plan_once() -> list[tuple[int, int, int]]:
        date(db, recipient(db, customer(db), interests=["garden", "tea"]), 12, 8)
        plan_selections(db, settings, now=NOW)
        (s,) = selections(db)
        out = sorted((p.tier, p.position, p.product_id) for p in s.picks)
        db.rollback()
        return out

    assert plan_once() == plan_once()


def test_a_recipients_budget_sets_the_tiers(db, settings):
    date(db, recipient(db, customer(db), budget_min=5, budget_max=20), 12, 8)
    plan_selections(db, settings, now=NOW)
    (s,) = selections(db)
    assert s.tier_bounds[0][0] == 5.0 and s.tier_bounds[-1][1] == 20.0
    assert all(2.5 <= float(p.price_at_pick) <= 40 for p in s.picks)


def test_one_failing_customer_is_counted_and_the_batch_carries_on(db, settings, caplog):
    date(db, recipient(db, customer(db, 0, time_zone="Mars/Olympus")), 12, 8)
    ok = date(db, recipient(db, customer(db, 1)), 12, 8)
    summary = plan_selections(db, settings, now=NOW)
    assert (summary.failed_customers, summary.planned) == (1, 1)
    assert "Mars/Olympus" in summary.failures[0] and "Mars/Olympus" in caplog.text
    assert [s.important_date_id for s in selections(db)] == [ok.id]


def test_candidates_function_is_injectable(db, settings):
    date(db, recipient(db, customer(db)), 12, 8)
    favourite: list[int] = []

    def only_one(catalog: Catalog, rows: CandidateRows) -> Candidates:
        pos = int(np.flatnonzero(catalog.available & (catalog.prices > 1) & (catalog.delivery_days < 7))[-1])
        favourite.append(int(catalog.product_ids[pos]))
        scores = np.zeros((len(rows), catalog.n_items), dtype=np.float32)
        scores[:, pos] = 1.0
        return Candidates(scores, np.full(scores.shape, 1, dtype=np.int8))

    plan_selections(db, settings, now=NOW, candidates_fn=only_one)
    (s,) = selections(db)
    top = [p for p in s.picks if p.product_id == favourite[0]]
    assert top and top[0].position == 1 and top[0].source == "profile"


# ---------------------------------------------------------------------------------------- use cases
@pytest.fixture
def planned(db, settings) -> GiftSelection:
    c = customer(db, is_vip=True, external_id="VIP-1")
    date(db, recipient(db, c), 12, 8)
    plan_selections(db, settings, now=NOW)
    (s,) = selections(db)
    return s


def _free_sku(db: Session, s: GiftSelection) -> str:
    taken = {p.product_id for p in s.picks}
    return next(
        p.sku
        for p in db.execute(
            select(Product).where(Product.is_active, Product.in_stock).order_by(Product.id)
        ).scalars()
        if p.id not in taken
    )


def test_get_and_list_selections(db, planned):
    assert get_selection(db, planned.id) is planned
    assert list_selections(db, "VIP-1") == [planned]
    assert list_selections(db, "VIP-1", "awaiting_review") == [planned]
    assert list_selections(db, "VIP-1", "ready") == []
    with pytest.raises(NotFound):
        get_selection(db, 10**9)
    with pytest.raises(NotFound):
        list_selections(db, "nobody")
    with pytest.raises(InvalidInput) as err:
        list_selections(db, "VIP-1", "lost")
    assert err.value.field == "status"


def test_manager_edits_are_audited(db, planned):
    am = manager(db)
    tier1 = [p for p in planned.picks if p.tier == 1]
    sku = _free_sku(db, planned)
    swapped = swap_pick(db, planned.id, tier1[0].id, sku, am)
    assert swapped.is_manual and swapped.source == "manual" and swapped.tier == 1
    remove_pick(db, planned.id, tier1[1].id, am)
    added = add_pick(db, planned.id, _free_sku(db, planned), am, tier=3)
    assert added.tier == 3 and added.position == max(p.position for p in planned.picks if p.tier == 3)
    approved = approve_selection(db, planned.id, am)
    assert approved.status == "approved" and approved.reviewed_by_id == am.id
    actions = db.execute(
        select(AuditLog.action, AuditLog.actor)
        .where(AuditLog.entity_id == str(planned.id))
        .order_by(AuditLog.id)
    ).all()
    assert [a for a, _ in actions] == [
        "selection.pick_swapped",
        "selection.pick_removed",
        "selection.pick_added",
        "selection.approved",
    ]
    assert {actor for _, actor in actions} == {"user:am@example.com"}


def test_edits_refuse_bad_input(db, planned):
    am = manager(db)
    pick = planned.picks[0]
    with pytest.raises(InvalidInput, match="no product") as err:
        swap_pick(db, planned.id, pick.id, "NO-SUCH-SKU", am)
    assert err.value.field == "product_sku"
    other = planned.picks[1]
    sku = db.get(Product, other.product_id).sku  # type: ignore[union-attr]
    with pytest.raises(InvalidInput, match="already in this selection"):
        swap_pick(db, planned.id, pick.id, sku, am)
    free = _free_sku(db, planned)
    db.add(
        GiftGiven(
            recipient_id=planned.recipient_id,
            product_id=db.scalar(select(Product.id).where(Product.sku == free)),
            given_on=dt.date(2010, 1, 1),
        )
    )
    with pytest.raises(InvalidInput, match="already given"):
        add_pick(db, planned.id, free, am)
    with pytest.raises(InvalidInput) as tier_err:
        add_pick(db, planned.id, _free_sku(db, planned), am, tier=4)
    assert tier_err.value.field == "tier"
    with pytest.raises(NotFound):
        remove_pick(db, planned.id, 10**9, am)


def test_finished_selections_cannot_change(db, planned):
    am = manager(db)
    planned.status = "sent"
    db.flush()
    with pytest.raises(Conflict):
        approve_selection(db, planned.id, am)
    with pytest.raises(Conflict):
        remove_pick(db, planned.id, planned.picks[0].id, am)
    with pytest.raises(Conflict):
        add_pick(db, planned.id, _free_sku(db, planned), am)
