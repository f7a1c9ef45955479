"""Triggers: each fires for the right customers, once per window across runs, never beside a reminder."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

import numpy as np
import pytest
from sqlalchemy import func, select

from domain.lifecycle.trigger_emails import queue_trigger_emails
from domain.lifecycle.trigger_runs import run_triggers
from domain.lifecycle.triggers import FINDERS
from domain.models import (
    Event,
    GiftSelection,
    Order,
    OrderLine,
    OutboundEmail,
    Product,
    TriggerAssignment,
    User,
)
from domain.models._types import utcnow
from domain.origin import SIMULATED
from domain.reminders.queueing import queue_reminders
from domain.reminders.selections import approve_selection
from domain.serving.next_purchase import fit_next_purchase
from recommender.triggers import running_out_due
from tests.delivery_fixtures import add_cart, make_customer, make_product, make_selection, make_snapshot

NOW = dt.datetime(2011, 12, 1, 4, 0)
_orders = iter(range(1, 10**9))


def only(settings, *triggers, **extra):
    """Settings with only ``triggers`` on and nobody in a control group (unless ``extra`` says so)."""
    values = {
        f"{t}_enabled": t in triggers for t in ("replacement", "running_out", "winback", "new_arrivals")
    }
    values["abandoned_cart_enabled"] = "abandoned_cart" in triggers
    values |= {"holdout_share": 0.0, "control_share": 0.0} | extra
    return dataclasses.replace(settings, triggers=dataclasses.replace(settings.triggers, **values))


def buy(
    session, customer, product, at: dt.datetime, price: str | None = None, source: str = "import"
) -> None:
    order = Order(external_id=f"T{next(_orders)}", customer_id=customer.id, ordered_at=at, source=source)
    order.lines.append(
        OrderLine(line_no=1, product_id=product.id, quantity=1, unit_price=Decimal(price or product.price))
    )
    session.add(order)
    session.flush()


def snapshot(session, customer, on: dt.date, segment: str) -> None:
    make_snapshot(session, customer.id, on, segment)


def assignments(session, trigger=None):
    stmt = select(TriggerAssignment).order_by(TriggerAssignment.id)
    if trigger:
        stmt = stmt.where(TriggerAssignment.trigger == trigger)
    return list(session.scalars(stmt))


def emails(session):
    return list(session.scalars(select(OutboundEmail).where(OutboundEmail.status != "cancelled")))


# ------------------------------------------------------------------------------------------- replacement
@pytest.fixture
def bags(session):
    return [
        make_product(session, p, category="bags", title=f"Bag {p}")
        for p in ("40", "70", "95", "110", "150", "260")
    ]


def test_replacement_fires_inside_the_lifetime_window_with_tiers_around_the_last_price(
    session, settings, bags
):
    s = only(settings, "replacement", replacement_lifetimes="bags: 540-720")
    due, early = make_customer(session), make_customer(session)
    buy(session, due, bags[3], NOW - dt.timedelta(days=600), "100.00")
    buy(session, early, bags[3], NOW - dt.timedelta(days=500), "100.00")
    summary = run_triggers(session, s, NOW)
    [a] = assignments(session)
    assert (a.customer_id, a.trigger, a.arm) == (due.id, "replacement", "treatment")
    assert a.details["last_price"] == 100.0
    selection = session.get(GiftSelection, a.selection_id)
    assert selection.status == "ready" and selection.occasion_code == "replacement"
    low, mid, high = selection.tier_bounds
    assert mid[0] < 100 < mid[1]
    prices = {pk.tier: [] for pk in selection.picks}
    for pick in selection.picks:
        prices[pick.tier].append(float(pick.price_at_pick))
    assert max(prices[1]) <= min(prices[2]) and max(prices[2]) <= min(prices[3])
    [email] = emails(session)
    assert email.kind == "replacement" and email.customer_id == due.id and "Bag" in email.body_text
    assert summary.queued == 1


def _newest_by_scan(session, now, categories):
    """The replacement finder's former reading: every sale line of the categories in time order, in
    Python, the newest of each (customer, category) winning (the reference for the grouped query)."""
    rows = session.execute(
        select(Order.customer_id, Product.category, Order.ordered_at, OrderLine.unit_price, Product.id)
        .join(OrderLine, OrderLine.order_id == Order.id)
        .join(Product, Product.id == OrderLine.product_id)
        .where(Order.kind == "sale", Order.ordered_at <= now, Product.category.in_(categories))
        .order_by(Order.ordered_at, OrderLine.id)
    ).all()
    last = {}
    for cid, category, at, price, pid in rows:
        if cid is not None:
            last[(cid, category)] = (at.date().isoformat(), float(price), pid)
    return last


def test_replacement_reads_the_newest_line_per_customer_and_category_as_the_scan_did(session, settings):
    """The newest purchase per (customer, category) is grouped in the database, no longer found in Python
    from every sale line; same answer: same-time lines (the last wins), returns, guest and later orders."""
    s = only(settings, "replacement", replacement_lifetimes="bags: 540-720; wallets: 300-400")
    bag = make_product(session, "100.00", category="bags")
    dear_bag = make_product(session, "130.00", category="bags")
    wallet = make_product(session, "40.00", category="wallets")
    cup = make_product(session, "5.00", category="cups")  # a category nobody configured

    def order(customer, days_ago: int, *products, kind: str = "sale") -> None:
        at = NOW - dt.timedelta(days=days_ago)
        row = Order(
            external_id=f"T{next(_orders)}", customer_id=customer and customer.id, ordered_at=at, kind=kind
        )
        for line_no, (product, price) in enumerate(products, start=1):
            row.lines.append(
                OrderLine(line_no=line_no, product_id=product.id, quantity=1, unit_price=Decimal(price))
            )
        session.add(row)

    two_lines, returned, later, wallets, cups = (make_customer(session) for _ in range(5))
    order(two_lines, 700, (bag, "100.00"))
    order(two_lines, 600, (bag, "100.00"), (dear_bag, "130.00"))  # one order: its last line is the newest
    order(returned, 650, (bag, "90.00"))
    order(returned, 100, (bag, "90.00"), kind="return")
    order(later, 560, (dear_bag, "125.00"))
    order(later, -2, (bag, "100.00"))  # after the run: not read
    order(None, 600, (bag, "100.00"))  # a guest
    order(wallets, 350, (wallet, "40.00"))
    order(cups, 600, (cup, "5.00"))
    session.flush()
    allowed = {c.id for c in (two_lines, returned, later, wallets, cups)}
    got = {
        (f.customer_id, f.details["category"]): (
            f.details["last_on"],
            f.details["last_price"],
            f.product_ids[0],
        )
        for f in FINDERS["replacement"](session, s, NOW, allowed)
    }
    assert got == _newest_by_scan(session, NOW, ["bags", "wallets"])
    assert got[(two_lines.id, "bags")][1:] == (130.0, dear_bag.id)
    assert got[(returned.id, "bags")][1] == 90.0 and got[(later.id, "bags")][1:] == (125.0, dear_bag.id)
    assert {c for c, _ in got} == {two_lines.id, returned.id, later.id, wallets.id}


def test_each_trigger_fires_once_per_window_across_repeated_runs(session, settings, bags):
    s = only(settings, "replacement", "abandoned_cart")
    customer = make_customer(session)
    buy(session, customer, bags[2], NOW - dt.timedelta(days=600))
    other = make_customer(session)
    session.add(
        Event(
            customer_id=other.id, product_id=bags[0].id, kind="cart", occurred_at=NOW - dt.timedelta(hours=30)
        )
    )
    for day in range(4):  # the same day twice, then the next days: cooldowns hold
        run_triggers(session, s, NOW + dt.timedelta(days=day // 2))
    assert sorted((a.trigger, a.customer_id) for a in assignments(session)) == sorted(
        [("replacement", customer.id), ("abandoned_cart", other.id)]
    )
    assert len(emails(session)) == 2


# ------------------------------------------------------------------------------------------- running out
def test_running_out_fires_n_days_before_the_expected_repurchase(session, settings):
    s = only(settings, "running_out", running_out_days_before=5)
    tea = make_product(session, "8.00", category="tea", title="Breakfast tea")
    regulars = [make_customer(session) for _ in range(6)]
    start = dt.datetime(2011, 6, 1, 10)
    for n, customer in enumerate(regulars):  # every 30 days, the last purchases at different days
        for k in range(4):
            buy(session, customer, tea, start + dt.timedelta(days=30 * k + 3 * n))
    # Customer 0 last bought on 30 Aug: expected on 29 Sep; the email may go from 24 Sep (29 - 5) on.
    last = start + dt.timedelta(days=90)
    run_triggers(session, s, last + dt.timedelta(days=24))
    assert assignments(session) == []
    run_triggers(session, s, last + dt.timedelta(days=25, hours=2))
    fired = assignments(session, "running_out")
    assert regulars[0].id in {a.customer_id for a in fired}
    mine = next(a for a in fired if a.customer_id == regulars[0].id)
    assert mine.details["product_ids"] == [tea.id]
    assert mine.eligible_on == dt.date(2011, 9, 24) == (last + dt.timedelta(days=25)).date()
    # the interval learned is 30 days, so the expected day is 30 days after the last purchase
    assert mine.details["expected_on"] == [(last + dt.timedelta(days=30)).date().isoformat()]


def _running_out_by_the_model(session, settings, now):
    """The running-out finder's former reading: the next-purchase model's timing fit (BG/NBD and the
    intervals, customers and products ordered by external id and SKU), its intervals' due pairs."""
    fitted = fit_next_purchase(session, now, rank=False)
    iv = fitted.model.intervals
    mask = iv.pair_days >= settings.triggers.running_out_min_purchases
    mask &= running_out_due(
        iv.pair_last,
        iv.pair_interval,
        (now.date() - dt.date(1970, 1, 1)).days,
        settings.triggers.running_out_days_before,
    )
    return {
        (int(fitted.customers.ids[iv.pair_user[p]]), int(fitted.products.ids[iv.pair_item[p]])): float(
            iv.pair_interval[p]
        )
        for p in np.flatnonzero(mask)
    }


@pytest.mark.parametrize("min_purchases", [2, 1, 3])
def test_running_out_fits_the_intervals_only_with_the_answer_of_the_whole_timing_model(
    session, settings, min_purchases
):
    """The finder fits the repurchase intervals alone (no BG/NBD, ids in number order): the same products
    fire for the same customers, with the same expected days, on irregular purchases of many pairs."""
    s = only(settings, "running_out", running_out_days_before=20, running_out_min_purchases=min_purchases)
    rng = np.random.default_rng(14)
    products = [make_product(session, "8.00", category="tea") for _ in range(12)]
    customers = [make_customer(session) for _ in range(15)]  # external ids C10 < C9: name order differs
    for customer in customers:
        for product in rng.choice(products, size=3, replace=False):
            day = NOW - dt.timedelta(days=int(rng.integers(5, 40)))
            for _ in range(int(rng.integers(1, 5))):
                buy(session, customer, product, day)
                day -= dt.timedelta(days=int(rng.integers(20, 45)))
    want = _running_out_by_the_model(session, s, NOW)
    firings = FINDERS["running_out"](session, s, NOW, {c.id for c in customers})
    got = {}
    for f in firings:
        for pid, expected in zip(f.product_ids, f.details["expected_on"], strict=True):
            got[(f.customer_id, pid)] = expected
    assert len(want) >= 5 and set(got) == set(want)
    last = {
        (c, p): max(
            o.ordered_at
            for o in session.scalars(select(Order).where(Order.customer_id == c))
            if any(line.product_id == p for line in o.lines)
        )
        for c, p in want
    }
    for key, interval in want.items():
        assert got[key] == (last[key].date() + dt.timedelta(days=round(interval))).isoformat()


# ---------------------------------------------------------------------------------------------- win-back
def test_winback_fires_on_a_move_into_at_risk_once(session, settings):
    s = only(settings, "winback")
    moved, stayed, was_new = make_customer(session), make_customer(session), make_customer(session)
    yesterday, today = NOW.date() - dt.timedelta(days=1), NOW.date()
    for customer, before, after in ((moved, "loyal", "at_risk"), (stayed, "at_risk", "at_risk")):
        snapshot(session, customer, yesterday, before)
        snapshot(session, customer, today, after)
    snapshot(session, was_new, today, "cant_lose")  # no earlier snapshot: not a move
    run_triggers(session, s, NOW)
    run_triggers(session, s, NOW + dt.timedelta(hours=5))
    [a] = assignments(session, "winback")
    assert a.customer_id == moved.id and a.details["from"] == "loyal" and a.details["to"] == "at_risk"


# ------------------------------------------------------------------------------------------ new arrivals
def test_new_arrivals_go_to_loyal_and_champions_only_with_new_products(session, settings):
    s = only(settings, "new_arrivals", new_arrivals_days=14)
    old = make_product(session, "20.00", created_at=NOW - dt.timedelta(days=90))
    new = [make_product(session, p, created_at=NOW - dt.timedelta(days=3)) for p in ("15.00", "25.00")]
    champion, lost = make_customer(session), make_customer(session)
    snapshot(session, champion, NOW.date(), "champions")
    snapshot(session, lost, NOW.date(), "lost")
    run_triggers(session, s, NOW)
    [a] = assignments(session, "new_arrivals")
    assert a.customer_id == champion.id
    picks = {pk.product_id for pk in session.get(GiftSelection, a.selection_id).picks}
    assert picks <= {p.id for p in new} and old.id not in picks


def test_running_out_and_new_arrivals_fire_once_per_window_across_repeated_runs(session, settings):
    """The rule "at most once per customer per window" for the two triggers whose tests above run once:
    the same day twice, then the next days inside the same window (replacement, abandoned cart, win-back
    and the review request have theirs)."""
    s = only(settings, "running_out", "new_arrivals", running_out_days_before=5, new_arrivals_days=14)
    tea = make_product(session, "8.00", category="tea", title="Breakfast tea")
    regulars = [make_customer(session) for _ in range(6)]  # BG/NBD needs a few repeat buyers
    start = dt.datetime(2011, 6, 1, 10)
    for n, customer in enumerate(regulars):  # every 30 days; customer 0 is due from 24 Sep, 1 from 27 Sep
        for k in range(4):
            buy(session, customer, tea, start + dt.timedelta(days=30 * k + 3 * n))
    first = start + dt.timedelta(days=90 + 25, hours=2)
    make_product(session, "25.00", created_at=first - dt.timedelta(days=3))
    champion = make_customer(session)
    snapshot(session, champion, first.date(), "champions")
    for later in (dt.timedelta(0), dt.timedelta(hours=5), dt.timedelta(days=1), dt.timedelta(days=3)):
        run_triggers(session, s, first + later)
    fired = sorted((a.trigger, a.customer_id) for a in assignments(session))
    expected = [("running_out", r.id) for r in regulars[:2]] + [("new_arrivals", champion.id)]
    assert fired == sorted(expected)
    assert sorted(e.customer_id for e in emails(session)) == sorted(cid for _, cid in expected)


# ----------------------------------------------------------------------------------------- abandoned cart
def test_abandoned_cart_only_when_the_product_was_not_bought_since(session, settings):
    s = only(settings, "abandoned_cart", abandoned_cart_hours=24, abandoned_cart_max_hours=96)
    product = make_product(session, "30.00")
    left, bought, fresh, old = (make_customer(session) for _ in range(4))
    for customer, hours in ((left, 30), (bought, 30), (fresh, 5), (old, 200)):
        add_cart(session, customer, product, NOW - dt.timedelta(hours=hours))
    buy(session, bought, product, NOW - dt.timedelta(hours=20))
    run_triggers(session, s, NOW)
    [a] = assignments(session, "abandoned_cart")
    assert a.customer_id == left.id
    [pick, *_] = session.get(GiftSelection, a.selection_id).picks
    assert (pick.product_id, pick.source) == (product.id, "cart")


def test_a_simulated_purchase_does_not_close_an_abandoned_cart(session, settings):
    """Regression: an order `giftrec demo simulate-uplift` generated counted as the customer buying the
    carted product, so the cart was never followed up."""
    s = only(settings, "abandoned_cart", abandoned_cart_hours=24, abandoned_cart_max_hours=96)
    product = make_product(session, "30.00")
    customer = make_customer(session)
    add_cart(session, customer, product, NOW - dt.timedelta(hours=30))
    buy(session, customer, product, NOW - dt.timedelta(hours=20), source=SIMULATED)
    fired = FINDERS["abandoned_cart"](session, s, NOW, {customer.id})
    assert [(f.customer_id, f.product_ids) for f in fired] == [(customer.id, (product.id,))]


def test_an_abandoned_cart_email_adds_a_few_picks_after_the_carts_products(session, settings):
    """The cart's items first, then personalised picks (docs/triggers.md): the second part had no test."""
    s = only(settings, "abandoned_cart")
    carted = make_product(session, "30.00")
    others = [make_product(session, p) for p in ("12.00", "18.00", "24.00", "36.00")]
    shopper, buyer = make_customer(session), make_customer(session)
    for product in others:  # something sold, for the candidates to rank
        buy(session, buyer, product, NOW - dt.timedelta(days=10))
    add_cart(session, shopper, carted, NOW - dt.timedelta(hours=30))
    run_triggers(session, s, NOW)
    [a] = assignments(session, "abandoned_cart")
    picks = sorted(session.get(GiftSelection, a.selection_id).picks, key=lambda p: (p.tier, p.position))
    assert [(p.product_id, p.source, p.tier) for p in picks[:1]] == [(carted.id, "cart", 1)]
    rest = picks[1:]
    assert rest and len(rest) <= s.triggers.picks
    assert {p.product_id for p in rest} <= {p.id for p in others}
    assert all(p.tier == 2 and p.source != "cart" for p in rest)


# ------------------------------------------------------------------------------------- who is never eligible
def test_never_for_erased_unsubscribed_or_unconsenting_customers(session, settings):
    s = only(settings, "abandoned_cart")
    product = make_product(session, "30.00")
    erased = make_customer(session, erased_at=utcnow())
    gone = make_customer(session, unsubscribed_at=utcnow())
    silent = make_customer(session, email_consent=False)
    for customer in (erased, gone, silent):
        add_cart(session, customer, product, NOW - dt.timedelta(hours=30))
    run_triggers(session, s, NOW)
    assert assignments(session) == [] and emails(session) == []


# ------------------------------------------------------------------------------------------ reminders win
def test_a_reminder_on_its_way_wins_over_a_trigger(session, settings):
    s = only(settings, "abandoned_cart")
    product = make_product(session, "30.00")
    customer = make_customer(session)
    make_selection(session, customer, status="ready", occasion_on=NOW.date() + dt.timedelta(days=7))
    add_cart(session, customer, product, NOW - dt.timedelta(hours=30))
    run_triggers(session, s, NOW)
    [a] = assignments(session)
    assert a.arm == "treatment" and a.selection_id is None and a.reason.startswith("a reminder wins")
    assert emails(session) == []


def test_a_reminder_queued_later_cancels_the_queued_trigger_email(session, settings):
    s = only(settings, "abandoned_cart")
    product = make_product(session, "30.00")
    customer = make_customer(session)
    add_cart(session, customer, product, NOW - dt.timedelta(hours=30))
    run_triggers(session, s, NOW)
    [trigger_email] = emails(session)
    reminder = make_selection(
        session, customer, status="ready", occasion_on=NOW.date() + dt.timedelta(days=7)
    )
    report = queue_reminders(session, s, NOW + dt.timedelta(minutes=5))
    assert report.queued == [reminder.id] and not report.deferred
    session.refresh(trigger_email)
    assert trigger_email.status == "cancelled"
    assert session.get(GiftSelection, trigger_email.selection_id).status == "skipped"


def test_the_frequency_cap_keeps_a_second_trigger_from_the_same_customer(session, settings, bags):
    s = only(settings, "replacement", "abandoned_cart")
    customer = make_customer(session)
    buy(session, customer, bags[2], NOW - dt.timedelta(days=600))
    session.add(
        Event(
            customer_id=customer.id,
            product_id=bags[0].id,
            kind="cart",
            occurred_at=NOW - dt.timedelta(hours=30),
        )
    )
    run_triggers(session, s, NOW)
    assert [e.kind for e in emails(session)] == ["replacement"]
    cart = assignments(session, "abandoned_cart")[0]
    assert cart.reason.startswith("frequency cap")


# ---------------------------------------------------------------------------------------------- VIP review
def test_a_vip_trigger_email_waits_for_the_account_manager(session, settings):
    s = only(settings, "abandoned_cart")
    product = make_product(session, "30.00")
    customer = make_customer(session, is_vip=True)
    add_cart(session, customer, product, NOW - dt.timedelta(hours=30))
    run_triggers(session, s, NOW)
    [a] = assignments(session)
    selection = session.get(GiftSelection, a.selection_id)
    assert selection.status == "awaiting_review"
    assert selection.review_cutoff_at == NOW + dt.timedelta(hours=s.triggers.vip_review_hours)
    assert emails(session) == []
    manager = User(email="m@example.com", name="Maria", password_hash="x", role="manager")
    session.add(manager)
    session.flush()
    approve_selection(session, selection.id, manager)
    report = queue_trigger_emails(session, s, NOW + dt.timedelta(hours=1))
    assert report.queued == [selection.id]
    assert queue_reminders(session, s, NOW + dt.timedelta(hours=1)).queued == []  # not a reminder


def test_control_and_holdout_are_recorded_and_get_no_selection(session, settings):
    s = only(settings, "abandoned_cart", holdout_share=0.3, control_share=0.3)
    product = make_product(session, "30.00")
    customers = [make_customer(session) for _ in range(60)]
    for customer in customers:
        add_cart(session, customer, product, NOW - dt.timedelta(hours=30))
    run_triggers(session, s, NOW)
    rows = assignments(session)
    assert len(rows) == 60
    arms = {arm for arm in (a.arm for a in rows)}
    assert arms == {"treatment", "control", "holdout"}
    for a in rows:
        assert (a.selection_id is not None) == (a.arm == "treatment")
    emailed = {e.customer_id for e in emails(session)}
    assert emailed == {a.customer_id for a in rows if a.arm == "treatment"}
    assert session.scalar(select(func.count()).select_from(GiftSelection)) == len(emailed)


def test_one_queueing_run_sends_a_customer_one_trigger_email_within_the_cap(session, settings):
    """The trigger emails of a run are written in one bulk INSERT: the first of a customer's selections
    must still put the others behind the frequency cap (each one used to see the row queued before it)."""
    customer = make_customer(session)
    for trigger in ("winback", "new_arrivals"):
        session.add(
            GiftSelection(
                customer_id=customer.id,
                occasion_key=f"trigger:{trigger}:{customer.id}",
                occasion_code=trigger,
                occasion_on=NOW.date(),
                year=NOW.year,
                status="ready",
            )
        )
    session.flush()
    report = queue_trigger_emails(session, only(settings, "winback"), NOW)
    assert len(report.queued) == 1 and len(report.skipped) == 1
    [reason] = report.skipped.values()
    assert reason.startswith("frequency cap")
    assert len(emails(session)) == 1


def test_a_simulated_order_is_not_the_customer_s_last_purchase_for_replacement(session, settings):
    """The demo's generated orders (`giftrec demo simulate-uplift`) never stand in for a real purchase: a
    simulated bag bought last week does not hide the real one bought 600 days ago, whose lifetime is due."""
    s = only(settings, "replacement", replacement_lifetimes="bags: 540-720")
    bag = make_product(session, "100.00", category="bags")
    customer = make_customer(session)
    for days_ago, source in ((600, "import"), (7, SIMULATED)):
        row = Order(
            external_id=f"T{next(_orders)}",
            customer_id=customer.id,
            ordered_at=NOW - dt.timedelta(days=days_ago),
            kind="sale",
            source=source,
        )
        row.lines.append(OrderLine(line_no=1, product_id=bag.id, quantity=1, unit_price=Decimal("100.00")))
        session.add(row)
    session.flush()
    fired = FINDERS["replacement"](session, s, NOW, {customer.id})
    assert [(f.customer_id, f.details["category"]) for f in fired] == [(customer.id, "bags")]
