"""Replacement lifetimes learned from repurchase intervals (issue 14): known answers."""

from __future__ import annotations

import numpy as np
import pytest

from recommender.lifetimes import learn_lifetimes, repurchase_intervals


def test_repurchase_intervals_known_answer():
    customers = np.array([1, 1, 1, 1, 2, 2, 2, 3, 1])
    categories = np.array([0, 0, 0, 1, 0, 0, -1, 1, 0])
    days = np.array([100, 400, 400, 50, 10, 700, 20, 5, 1000])
    cats, gaps = repurchase_intervals(customers, categories, days)
    # customer 1 in 0: days 100, 400 (twice: one day), 1000 -> 300, 600; customer 2 in 0: 690;
    # one purchase in category 1 each, an unknown category: nothing
    assert sorted(zip(cats.tolist(), gaps.tolist(), strict=True)) == [(0, 300), (0, 600), (0, 690)]
    with pytest.raises(ValueError):
        repurchase_intervals(customers, categories[:3], days)
    assert repurchase_intervals(np.array([]), np.array([]), np.array([]))[0].size == 0


def test_lifetimes_are_the_middle_half_where_there_are_enough_intervals():
    cats = np.array([0] * 8 + [1] * 3)
    gaps = np.array([500, 520, 540, 560, 600, 640, 700, 720, 30, 40, 50])
    learned = learn_lifetimes(cats, gaps, 3, min_count=5)
    np.testing.assert_array_equal(learned.counts, [8, 3, 0])
    # numpy's linear quantiles of the eight bag intervals: 535, 580, 655
    assert learned.first[0] == pytest.approx(535) and learned.median[0] == pytest.approx(580)
    assert learned.last[0] == pytest.approx(655)
    assert learned.window(0) == (535, 655)
    assert learned.window(1) is None and learned.median[1] == pytest.approx(40)  # 3 < 5: configured
    assert learned.window(2) is None and np.isnan(learned.median[2])
    assert learn_lifetimes(cats, gaps, 3, min_count=3).window(1) == (35, 45)
    assert not learn_lifetimes(cats, gaps, 3, min_count=0).learned.any()
