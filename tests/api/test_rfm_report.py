"""`giftrec jobs run lifecycle` then `giftrec rfm report`: the table of segments and the moves."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from api.cli import cli
from domain.db import session_scope
from domain.models import Customer, Order, OrderLine, Product


def _buy(session, customer: Customer, product: Product, at: str, n: int) -> None:
    order = Order(external_id=f"O{n}", customer_id=customer.id, ordered_at=dt.datetime.fromisoformat(at))
    order.lines.append(OrderLine(line_no=1, product_id=product.id, quantity=1, unit_price=Decimal(50)))
    session.add(order)


def test_the_report_after_two_nightly_runs(app, runner):
    with session_scope(app.extensions["giftrec"].sessions) as session:
        product = Product(sku="P", title="A gift", price=Decimal("50.00"))
        a, b = Customer(external_id="A"), Customer(external_id="B")
        session.add_all([product, a, b])
        session.flush()
        _buy(session, a, product, "2011-11-30 10:00", 1)
        _buy(session, b, product, "2011-01-05 10:00", 2)
        _buy(session, a, product, "2011-12-08 10:00", 3)
    assert "no RFM snapshot yet" in runner.invoke(cli, ["rfm", "report"]).output
    for day in ("2011-12-01", "2011-12-08", "2011-12-08"):  # the second run of a day replaces it
        ran = runner.invoke(cli, ["jobs", "run", "lifecycle", "--today", day])
        assert ran.exit_code == 0, ran.output
        assert f"rfm snapshot {day}" in ran.output
    result = runner.invoke(cli, ["rfm", "report"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("RFM segments on 2011-12-08: 2 customers (vs week: 2011-12-01")
    rows = {line.split()[0]: line.split() for line in lines[2:4]}
    assert set(rows) == {"potential_loyalist", "lost"}  # recency by quintiles (the default): B is oldest
    assert rows["potential_loyalist"][1:3] == ["1", "50.0%"] and rows["potential_loyalist"][4] == "66.7%"
    assert rows["potential_loyalist"][-2:] == ["+1", "-"]  # new a week ago: +1; no snapshot a month before
    assert "moves since 2011-12-01 (last week): 1 customers" in result.output
    assert any(line.split() == ["new", "->", "potential_loyalist", "1"] for line in lines)
    earlier = runner.invoke(cli, ["rfm", "report", "--on", "2011-12-05"])
    assert "RFM segments on 2011-12-01: 2 customers" in earlier.output
