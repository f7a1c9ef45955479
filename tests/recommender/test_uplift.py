"""Uplift statistics against published and statsmodels' own numbers."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.stats.proportion import confint_proportions_2indep

from recommender.uplift import conversion_difference, revenue_difference, uplift


@pytest.mark.parametrize(
    ("counts", "interval"),
    [  # Newcombe (1998), Statistics in Medicine 17: 873-890, Table II, method 10 (hybrid score)
        ((56, 70, 48, 80), (0.0524, 0.3339)),
        ((9, 10, 3, 10), (0.1705, 0.8090)),
        ((6, 7, 2, 7), (0.0582, 0.8062)),
        ((5, 56, 0, 29), (-0.0381, 0.1926)),
    ],
)
def test_newcombe_interval_matches_the_published_examples(counts, interval):
    diff, low, high = conversion_difference(*counts)
    assert diff == pytest.approx(counts[0] / counts[1] - counts[2] / counts[3])
    assert (low, high) == pytest.approx(interval, abs=5e-5)


def test_revenue_interval_is_scipys_bootstrap_and_covers_the_difference():
    rng = np.random.default_rng(1)
    t = np.where(rng.random(400) < 0.3, rng.gamma(2.0, 50.0, 400), 0.0)
    c = np.where(rng.random(400) < 0.2, rng.gamma(2.0, 50.0, 400), 0.0)
    diff, low, high = revenue_difference(t, c, seed=3)
    assert diff == pytest.approx(t.mean() - c.mean())
    assert low < diff < high
    assert revenue_difference(t, c, seed=3) == (diff, low, high)  # seeded
    se = np.sqrt(t.var(ddof=1) / t.size + c.var(ddof=1) / c.size)
    assert (high - low) == pytest.approx(2 * 1.96 * se, rel=0.15)


def test_too_few_carries_no_estimate():
    result = uplift(np.ones(10, bool), np.ones(10), np.zeros(50, bool), np.zeros(50), min_group_size=30)
    assert result.too_few and result.conversion_diff is None and result.incremental_revenue is None


def test_uplift_on_a_hand_made_table():
    treated = np.r_[np.ones(30, bool), np.zeros(70, bool)]
    control = np.r_[np.ones(10, bool), np.zeros(40, bool)]
    rev_t, rev_c = treated * 100.0, control * 100.0
    result = uplift(treated, rev_t, control, rev_c, min_group_size=30)
    low, high = confint_proportions_2indep(30, 100, 10, 50, method="newcomb", compare="diff")
    assert not result.too_few
    assert result.conversion_diff == pytest.approx(0.1)
    assert (result.conversion_low, result.conversion_high) == pytest.approx((low, high))
    assert result.revenue_diff == pytest.approx(10.0)
    assert result.incremental_revenue == pytest.approx(1000.0)
