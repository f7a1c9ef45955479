"""RFM snapshots: hand-computed customers land in their segments, re-runs replace, days are kept, moves."""

# ruff: noqa: F811  (pytest fixtures imported from tests.domain.serving.fixtures are redefined as arguments)

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from config import RfmSettings
from domain.customers.erasure import erase_customer
from domain.errors import NotFound
from domain.lifecycle.segments import NEW, Move, customer_segment, segment_report
from domain.lifecycle.snapshots import take_snapshot
from domain.models import Customer, Order, OrderLine, Product, RfmSnapshot
from tests.domain.serving.fixtures import imported, imported_rows, sample_slice  # noqa: F401

TODAY = dt.date(2011, 12, 1)
#: Fixed cut points everywhere (the defaults' values), so that every score can be computed by hand.
FIXED = RfmSettings(recency_scoring="fixed", frequency_scoring="fixed", monetary_scoring="fixed")


def _order(session, customer: str, on: str, amount: str, *, kind: str = "sale") -> None:
    cust = session.scalar(select(Customer).where(Customer.external_id == customer))
    if cust is None:
        cust = Customer(external_id=customer)
        session.add(cust)
        session.flush()
    product = session.scalar(select(Product).where(Product.sku == "P"))
    if product is None:
        product = Product(sku="P", title="A gift", price=Decimal("1.00"))
        session.add(product)
        session.flush()
    n = session.scalar(select(func.count()).select_from(Order)) or 0
    order = Order(
        external_id=f"O{n + 1}",
        customer_id=cust.id,
        kind=kind,
        ordered_at=dt.datetime.fromisoformat(on).replace(hour=10),
    )
    order.lines.append(OrderLine(line_no=1, product_id=product.id, quantity=1, unit_price=Decimal(amount)))
    session.add(order)
    session.flush()


@pytest.fixture
def shop(session):
    """Five customers whose scores are worked out by hand in the test below, and one to be erased."""
    for on, amount in (
        ("2011-12-01", "200"),
        ("2011-12-01", "100"),  # a second order on the same day: the same purchase
        ("2011-10-01", "300"),
        ("2011-09-01", "300"),
        ("2011-06-01", "300"),
        ("2011-03-01", "300"),
    ):
        _order(session, "A", on, amount)
    _order(session, "B", "2011-11-20", "80")
    _order(session, "B", "2011-12-08", "50")  # after TODAY: not in TODAY's snapshot
    _order(session, "C", "2010-12-15", "50")
    _order(session, "C", "2011-01-10", "60")
    for on in ("2011-02-01", "2011-03-01", "2011-04-01"):
        _order(session, "D", on, "200")
    _order(session, "D", "2011-04-10", "150", kind="return")
    _order(session, "F", "2010-11-30", "500")
    _order(session, "X", "2011-11-30", "900")
    erase_customer(session, "X", actor="test")
    return session


def _rows(session, on: dt.date) -> dict[str, tuple]:
    rows = session.execute(
        select(
            Customer.external_id,
            RfmSnapshot.recency_days,
            RfmSnapshot.frequency,
            RfmSnapshot.monetary,
            RfmSnapshot.r_score,
            RfmSnapshot.f_score,
            RfmSnapshot.m_score,
            RfmSnapshot.segment,
        )
        .join(Customer, Customer.id == RfmSnapshot.customer_id)
        .where(RfmSnapshot.taken_on == on)
    ).all()
    return {r[0]: (r[1], r[2], float(r[3]), (r[4], r[5], r[6]), r[7]) for r in rows}


def test_every_customer_lands_in_the_hand_computed_segment(shop):
    result = take_snapshot(shop, FIXED, TODAY)
    assert result.as_of == TODAY and result.customers == 5
    # recency days, purchase days, net spend, (r, f, m) with cuts 30/90/180/365, 1/2/3/5, 100/250/500/1000
    assert _rows(shop, TODAY) == {
        "A": (0, 5, 1500.0, (5, 4, 5), "champions"),
        "B": (11, 1, 80.0, (5, 1, 1), "new"),
        "C": (325, 2, 110.0, (2, 2, 2), "hibernating"),
        "D": (244, 3, 450.0, (2, 3, 3), "at_risk"),  # 600 bought, 150 returned
        "F": (366, 1, 500.0, (1, 1, 3), "lost"),
    }  # X was erased: no row


def test_a_rerun_replaces_the_day_and_other_days_are_kept(shop):
    take_snapshot(shop, FIXED, TODAY)
    first = _rows(shop, TODAY)
    take_snapshot(shop, FIXED, TODAY)
    assert _rows(shop, TODAY) == first
    assert shop.scalar(select(func.count()).select_from(RfmSnapshot)) == 5
    later = TODAY + dt.timedelta(days=7)
    take_snapshot(shop, FIXED, later)
    assert shop.scalar(select(func.count()).select_from(RfmSnapshot)) == 10
    assert _rows(shop, TODAY) == first
    assert _rows(shop, later)["B"] == (0, 2, 130.0, (5, 2, 2), "potential_loyalist")


def test_a_customer_segment_with_its_moves(shop):
    take_snapshot(shop, FIXED, TODAY)
    later = TODAY + dt.timedelta(days=7)
    take_snapshot(shop, FIXED, later)
    seg = customer_segment(shop, "B", history_days=180)
    assert (seg.segment, seg.taken_on, seg.as_of) == ("potential_loyalist", later, later)
    assert seg.segment_since == later
    assert (seg.r_score, seg.f_score, seg.m_score) == (5, 2, 2)
    assert (seg.frequency, seg.monetary) == (2, Decimal("130.00"))
    assert [(m.on, m.from_segment, m.to_segment) for m in seg.moves] == [(later, "new", "potential_loyalist")]
    assert customer_segment(shop, "A", history_days=180).moves == []
    with pytest.raises(NotFound):
        customer_segment(shop, "X", history_days=180)  # erased
    with pytest.raises(NotFound):
        customer_segment(shop, "nobody", history_days=180)


def test_the_report_ranks_segments_and_counts_moves(shop):
    take_snapshot(shop, FIXED, TODAY)
    later = TODAY + dt.timedelta(days=7)
    _order(shop, "G", "2011-12-05", "40")  # a first purchase between the two days
    take_snapshot(shop, FIXED, later)
    report = segment_report(shop)
    assert (report.taken_on, report.week_on, report.month_on, report.customers) == (later, TODAY, None, 6)
    sizes = {row.segment: (row.customers, row.change_week) for row in report.rows}
    assert sizes == {
        "champions": (1, 0),
        "potential_loyalist": (1, 1),
        "new": (1, 0),  # B left, G arrived
        "hibernating": (1, 0),
        "at_risk": (1, 0),
        "lost": (1, 0),
    }
    assert sum(row.revenue_share for row in report.rows) == pytest.approx(1.0)
    ranks = [(row.average_clv or 0.0, row.revenue) for row in report.rows]
    assert ranks == sorted(ranks, reverse=True)  # by value: average CLV, then revenue
    assert sorted(report.moves_week, key=lambda m: m.from_segment) == [
        Move(NEW, "new", 1),
        Move("new", "potential_loyalist", 1),
    ]
    assert report.moves_month == []


def test_no_purchases_no_rows(session):
    result = take_snapshot(session, RfmSettings(), TODAY)
    assert result.customers == 0
    assert "nothing to score" in result.summary()
    assert segment_report(session).rows == []


def test_the_real_sample_gets_a_snapshot_with_values(session, imported):
    """A fifth of the bundled UCI sample's customers, with the shipped defaults, on the demo's "today"."""
    result = take_snapshot(session, RfmSettings(), TODAY)
    buyers = session.scalar(
        select(func.count(func.distinct(Order.customer_id))).where(
            Order.kind == "sale", Order.customer_id.is_not(None), Order.ordered_at < dt.datetime(2011, 12, 2)
        )
    )
    assert result.customers == buyers > 100
    assert result.as_of == TODAY
    assert "others" not in result.segments  # the default table names every R x F cell
    assert not [note for note in result.notes if note.startswith("no ")], result.notes
    rows = session.execute(select(RfmSnapshot.clv, RfmSnapshot.expected_purchases)).all()
    assert all(clv is not None and clv >= 0 and expected >= 0 for clv, expected in rows)
