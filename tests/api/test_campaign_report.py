"""`giftrec report campaigns`: the table and the JSON, "too few to tell" below the minimum group size."""

from __future__ import annotations

import datetime as dt
import json

from api.cli import cli
from domain.db import session_scope
from domain.models import TriggerAssignment
from tests.delivery_fixtures import make_customer


def _assignments(app, arms: list[str]) -> None:
    with session_scope(app.extensions["giftrec"].sessions) as session:
        for arm in arms:
            customer = make_customer(session)
            session.add(
                TriggerAssignment(
                    customer_id=customer.id,
                    trigger="abandoned_cart",
                    window_key="cart",
                    eligible_on=dt.date(2011, 11, 20),
                    eligible_at=dt.datetime(2011, 11, 20, 4),
                    period="2011Q4",
                    arm=arm,
                )
            )


def test_the_table_says_too_few_to_tell(app, runner):
    _assignments(app, ["treatment"] * 4 + ["control", "holdout"])
    result = runner.invoke(cli, ["report", "campaigns", "--since", "2011-11-01", "--until", "2011-11-30"])
    assert result.exit_code == 0, result.output
    [row] = [line for line in result.output.splitlines() if line.startswith("trigger:abandoned_cart")]
    assert row.split()[1:4] == ["6", "4", "2"]
    assert "too few to tell" in row


def test_the_json(app, runner):
    _assignments(app, ["treatment"] * 40 + ["control"] * 35)
    args = ["report", "campaigns", "--since", "2011-11-01", "--until", "2011-11-30", "--json"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    [row] = body["campaigns"]
    assert (row["campaign"], row["treated"], row["control"]) == ("trigger:abandoned_cart", 40, 35)
    assert row["uplift"]["too_few"] is False
    assert row["uplift"]["conversion_diff"] == 0.0  # nobody bought in either group
    assert body["attribution_days"] == 30


def test_an_empty_period(app, runner):
    result = runner.invoke(cli, ["report", "campaigns", "--since", "2011-01-01", "--until", "2011-01-31"])
    assert "no trigger or reminder had eligible customers" in result.output
