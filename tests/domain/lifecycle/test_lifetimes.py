"""Replacement lifetimes learned from the data (issue 14): the trigger uses them where there is enough."""

from __future__ import annotations

import dataclasses
import datetime as dt

from domain.db import session_scope
from domain.lifecycle.lifetimes import category_lifetimes
from domain.lifecycle.trigger_runs import run_triggers
from tests.delivery_fixtures import make_customer, make_product
from tests.domain.lifecycle.test_triggers import NOW, assignments, buy, only


def _bags_every(session, days: list[int], bag) -> None:
    """One customer per interval: two bags `interval` days apart, the second a year before NOW."""
    for interval in days:
        customer = make_customer(session)
        buy(session, customer, bag, NOW - dt.timedelta(days=365 + interval))
        buy(session, customer, bag, NOW - dt.timedelta(days=365))


def test_lifetimes_are_learned_where_there_is_enough_data_known_answer(session, settings):
    s = only(settings, "replacement", replacement_lifetimes="bags: 540-720; wallets: 300-400")
    s = dataclasses.replace(s, triggers=dataclasses.replace(s.triggers, replacement_min_intervals=5))
    bag = make_product(session, "100.00", category="bags")
    cup = make_product(session, "5.00", category="cups")
    _bags_every(session, [80, 90, 100, 110, 120], bag)
    _bags_every(session, [10, 20, 30, 40, 50, 60], cup)
    rows = {r.category: r for r in category_lifetimes(session, s, NOW)}
    assert set(rows) == {"bags", "cups", "wallets"}
    assert (rows["bags"].learned, rows["bags"].median_days, rows["bags"].intervals) == ((90, 110), 100.0, 5)
    assert rows["bags"].window == (90, 110) and rows["bags"].source == "learned"
    assert rows["wallets"].learned is None and rows["wallets"].window == (300, 400)
    assert rows["wallets"].source == "configured" and rows["wallets"].intervals == 0
    # learned, but the shop did not name cups as replaced: reported, never fires
    assert rows["cups"].learned == (22, 48) and rows["cups"].window is None
    fewer = dataclasses.replace(s, triggers=dataclasses.replace(s.triggers, replacement_min_intervals=6))
    assert {r.category: r.source for r in category_lifetimes(session, fewer, NOW)} == {
        "bags": "configured",
        "cups": "not configured",
        "wallets": "configured",
    }


def test_the_replacement_trigger_fires_on_the_learned_lifetime(session, settings):
    s = only(settings, "replacement", replacement_lifetimes="bags: 540-720")
    learn = dataclasses.replace(s, triggers=dataclasses.replace(s.triggers, replacement_min_intervals=5))
    bag = make_product(session, "100.00", category="bags")
    make_product(session, "80.00", category="bags")
    make_product(session, "140.00", category="bags")
    _bags_every(session, [300, 320, 330, 340, 360], bag)  # learned: 320-340 days
    due = make_customer(session)
    buy(session, due, bag, NOW - dt.timedelta(days=330))
    run_triggers(
        session,
        dataclasses.replace(s, triggers=dataclasses.replace(s.triggers, replacement_min_intervals=50)),
        NOW,
    )
    assert assignments(session, "replacement") == []  # too few intervals: 540-720 days, not yet
    run_triggers(session, learn, NOW)
    [a] = assignments(session, "replacement")
    assert a.customer_id == due.id
    assert (a.details["lifetime"], a.details["lifetime_source"]) == ([320, 340], "learned")


def test_giftrec_lifecycle_lifetimes_shows_learned_and_configured(app, runner):
    ctx = app.extensions["giftrec"]
    with session_scope(ctx.sessions) as session:
        bag = make_product(session, "100.00", category="bags")
        _bags_every(session, [100] * 25, bag)
    from api.cli import cli

    result = runner.invoke(cli, ["lifecycle", "lifetimes", "--on", "2011-12-01"])
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line.split() for line in result.output.splitlines()[2:]}
    assert lines["bags"] == ["bags", "25", "100", "100-100", "540-720", "learned"]
