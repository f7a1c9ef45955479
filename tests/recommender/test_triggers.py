"""Trigger rules on arrays: known answers for replacement windows, running-out timing, cooldowns, arms."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from recommender.triggers import (
    anchored_tier_bounds,
    assign_arms,
    cooldown_over,
    period_of,
    replacement_due,
    running_out_due,
    unit_hash,
)


def test_replacement_window_is_inclusive_at_both_ends():
    # A bag bought on day 1000 with a 540-720 day lifetime: due from day 1540 to day 1720.
    today = np.array([1539, 1540, 1600, 1720, 1721])
    window = np.array([540]), np.array([720])
    due = [bool(replacement_due(np.array([1000]), *window, int(t))[0]) for t in today]
    assert due == [False, True, True, True, False]


def test_replacement_window_per_category():
    last = np.array([0, 0, 0])
    first = np.array([540, 365, 30])
    last_day = np.array([720, 540, 60])
    assert replacement_due(last, first, last_day, 400).tolist() == [False, True, False]


def test_running_out_fires_from_n_days_before_the_expected_day_until_that_day():
    # Bought on day 100, rebought every 30 days: expected on day 130; 5 days before is day 125.
    fired = [bool(running_out_due(np.array([100]), np.array([30.0]), t, 5)[0]) for t in range(123, 133)]
    assert fired == [False, False, True, True, True, True, True, True, False, False]


def test_running_out_rounds_the_interval_to_whole_days():
    assert running_out_due(np.array([0, 0]), np.array([29.6, 29.4]), 30, 0).tolist() == [True, False]


def test_cooldown():
    assert cooldown_over(np.array([-1, 10, 11]), 40, 30).tolist() == [True, True, False]


def test_anchored_tiers_put_the_last_price_in_the_middle_tier():
    bounds = anchored_tier_bounds(100.0).bounds
    assert bounds.shape == (3, 2)
    assert bounds[1, 0] < 100.0 < bounds[1, 1]
    assert bounds[0, 1] == pytest.approx(bounds[1, 0]) and bounds[1, 1] == pytest.approx(bounds[2, 0])
    assert bounds[1, 1] / bounds[1, 0] == pytest.approx(1.6)
    with pytest.raises(ValueError):
        anchored_tier_bounds(0.0)


def test_period_is_the_quarter():
    assert [period_of(dt.date(2011, m, 1)) for m in (1, 3, 4, 12)] == ["2011Q1", "2011Q1", "2011Q2", "2011Q4"]


def test_unit_hash_is_stable():
    # Fixed once: a change of hash would silently move customers between arms.
    assert unit_hash(12345, "holdout", "2011Q4") == pytest.approx(unit_hash("12345", "holdout", "2011Q4"))
    assert 0 <= unit_hash(1, "x", "p") < 1
    assert unit_hash(1, "x", "p") != unit_hash(1, "x", "q")


def test_arms_are_deterministic_with_the_configured_shares():
    ids = np.arange(1, 20001)
    arms = assign_arms(ids, "winback", "2011Q4", 0.1, 0.1)
    assert np.array_equal(arms, assign_arms(ids, "winback", "2011Q4", 0.1, 0.1))
    share = np.bincount(arms, minlength=3) / ids.size
    assert share[2] == pytest.approx(0.10, abs=0.01)  # holdout
    assert share[1] == pytest.approx(0.09, abs=0.01)  # control: 10% of the other 90%


def test_holdout_is_the_same_for_every_trigger_and_controls_differ():
    ids = np.arange(1, 5001)
    a = assign_arms(ids, "winback", "2011Q4", 0.1, 0.1)
    b = assign_arms(ids, "replacement", "2011Q4", 0.1, 0.1)
    assert np.array_equal(a == 2, b == 2)
    assert not np.array_equal(a == 1, b == 1)


def test_no_groups_with_zero_shares():
    assert not assign_arms(np.arange(100), "winback", "2011Q4", 0.0, 0.0).any()


def test_review_request_due_known_answers():
    from recommender.triggers import review_request_due

    day = (dt.date(2011, 12, 1) - dt.date(1970, 1, 1)).days
    ordered = np.array(
        ["2011-11-20T10:00", "2011-11-20T10:00", "2011-11-26T10:00", "2011-11-27T09:00", "2011-11-15T00:00",
         "2011-11-20T10:00"], dtype="datetime64[s]",
    )  # fmt: skip
    delivered = np.array(
        ["2011-11-25T10:00", "2011-11-25T10:01", "2011-11-28T23:59", "2011-11-29T08:00", "2011-11-17T00:00",
         "2011-11-19T10:00"], dtype="datetime64[s]",
    )  # fmt: skip
    due = review_request_due(ordered, delivered, day, max_delivery_days=5, delay_days=3, window_days=7)
    # 5 days exactly: fast; a minute more: late; 3 days after delivery: due; 2: not yet; 14 days after: past
    # the window (3 + 7); delivered before it was ordered: an error, never asked
    assert due.tolist() == [True, False, True, False, False, False]
