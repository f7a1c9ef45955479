"""Paired bootstrap intervals on hand-made per-customer figures."""

from __future__ import annotations

import numpy as np
import pytest

from recommender.intervals import paired_difference


def test_a_constant_difference_has_no_width() -> None:
    b = np.array([0.0, 0.2, 0.5, 1.0])
    diff = paired_difference(b + 0.25, b)
    assert (diff.mean, diff.low, diff.high) == (0.25, 0.25, 0.25)
    assert diff.beyond_noise


def test_better_for_most_customers_is_beyond_noise() -> None:
    # 30 of 40 customers gain a full hit, 10 are the same: mean +0.75.
    a = np.array([1.0] * 30 + [0.0] * 10)
    b = np.zeros(40)
    diff = paired_difference(a, b, seed=1)
    assert diff.mean == pytest.approx(0.75)
    assert 0.5 < diff.low < 0.75 < diff.high <= 1.0
    assert diff.beyond_noise and diff.n == 40


def test_pairing_removes_the_spread_between_customers() -> None:
    # Customers differ a lot (0 to 1) but a beats b by 0.1 on each but one: paired, that is clear; the
    # same numbers unpaired (b shuffled against a) give a far wider interval.
    rng = np.random.default_rng(3)
    b = rng.uniform(0.0, 0.9, size=60)
    a = b + 0.1
    a[0] = b[0] - 0.1
    paired = paired_difference(a, b, seed=2)
    assert paired.low > 0.05
    unpaired = paired_difference(a, rng.permutation(b), seed=2)
    assert unpaired.high - unpaired.low > 5 * (paired.high - paired.low)


def test_no_difference_on_average_is_not_beyond_noise() -> None:
    a = np.array([1.0, 0.0] * 25)
    b = np.array([0.0, 1.0] * 25)
    diff = paired_difference(a, b)
    assert diff.mean == 0.0 and diff.low < 0 < diff.high and not diff.beyond_noise


def test_the_same_seed_gives_the_same_interval_and_bad_input_is_refused() -> None:
    a, b = np.linspace(0, 1, 30), np.linspace(0, 0.8, 30) ** 2
    assert paired_difference(a, b, seed=5) == paired_difference(a, b, seed=5)
    with pytest.raises(ValueError, match="differ in length"):
        paired_difference(a, b[:-1])
