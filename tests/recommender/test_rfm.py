"""RFM on hand-computed tables: the summary, fixed and quantile scores, and the default segment rules."""

from __future__ import annotations

import numpy as np
import pytest

from config import RfmSettings
from recommender.rfm import OTHERS, SegmentRule, assign_segments, quantile_cuts, rfm_summary, score

NOW = 1000
R_CUTS, F_CUTS, M_CUTS = (30, 90, 180, 365), (1, 2, 3, 5), (100, 250, 500, 1000)

#: name: purchase lines (days before NOW, spend), then by hand: recency days, purchase days, total spend,
#: the scores with the cut points above, and the segment the default table gives.
CUSTOMERS = {
    "A": ([(10, 500)] + [(ago, 300) for ago in (20, 40, 80, 100, 200)], 10, 6, 2000, (5, 5, 5), "champions"),
    "B": ([(60, 150), (70, 150), (75, 150), (300, 150)], 60, 4, 600, (4, 4, 4), "loyal"),
    "C": ([(20, 100), (20, 25), (50, 25)], 20, 2, 150, (5, 2, 2), "potential_loyalist"),
    "D": ([(5, 80)], 5, 1, 80, (5, 1, 1), "new"),
    "E": ([(45, 300)], 45, 1, 300, (4, 1, 3), "promising"),
    "F": ([(120, 100), (130, 100), (140, 60)], 120, 3, 260, (3, 3, 3), "need_attention"),
    "G": ([(150, 45), (400, 45)], 150, 2, 90, (3, 2, 1), "about_to_sleep"),
    "H": ([(300 + 10 * k, 625) for k in range(8)], 300, 8, 5000, (2, 5, 5), "cant_lose"),
    "I": ([(200, 100), (210, 100), (220, 200)], 200, 3, 400, (2, 3, 3), "at_risk"),
    "J": ([(380, 50)], 380, 1, 50, (1, 1, 1), "lost"),
    "K": ([(250, 60), (260, 60)], 250, 2, 120, (2, 2, 2), "hibernating"),
    # on the cut points: 30 days is still 5, 5 purchases still 4, 1000 still 4
    "L": ([(30, 200)] + [(31 + k, 200) for k in range(4)], 30, 5, 1000, (5, 4, 4), "champions"),
    # one past them: 31 days is 4, 6 purchases are 5
    "M": ([(31 + k, 10) for k in range(6)], 31, 6, 60, (4, 5, 1), "loyal"),
}
NAMES = sorted(CUSTOMERS)


def _lines() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    users, days, amounts = [], [], []
    for row, name in enumerate(NAMES):
        for ago, amount in CUSTOMERS[name][0]:
            users.append(row)
            days.append(NOW - ago)
            amounts.append(amount)
    return np.array(users), np.array(days), np.array(amounts, dtype=float)


@pytest.fixture(scope="module")
def summary():
    users, days, amounts = _lines()
    return rfm_summary(users, days, amounts, len(NAMES) + 1, NOW)  # the last row never bought


def test_summary_counts_purchase_days_and_sums_spend(summary):
    expected = np.array([[CUSTOMERS[n][1], CUSTOMERS[n][2], CUSTOMERS[n][3]] for n in NAMES], dtype=float)
    got = np.stack([summary.recency_days, summary.purchases, summary.monetary], axis=1)[:-1]
    np.testing.assert_array_equal(got, expected)
    assert summary.purchases[-1] == 0 and np.isnan(summary.recency_days[-1]) and summary.monetary[-1] == 0


def test_repeat_spend_leaves_the_first_purchase_day_out(summary):
    row = NAMES.index("C")  # first day 50 days ago (25), then 20 days ago: two lines, 100 + 25
    assert summary.repeat_spend[row] == 125.0
    assert summary.repeat_spend[NAMES.index("A")] == pytest.approx((500 + 300 * 4) / 5)
    assert np.isnan(summary.repeat_spend[NAMES.index("D")])  # one purchase: no repeat


def test_fixed_cut_points_score_every_customer_by_hand(summary):
    r = score(summary.recency_days, R_CUTS, lower_is_better=True)
    f = score(summary.purchases, F_CUTS)
    m = score(summary.monetary, M_CUTS)
    got = {name: (int(r[i]), int(f[i]), int(m[i])) for i, name in enumerate(NAMES)}
    assert got == {name: CUSTOMERS[name][4] for name in NAMES}
    assert r[-1] == 0  # no purchase: no recency score


def test_every_customer_lands_where_the_default_rules_say(summary):
    rules = [SegmentRule(name, r, f, m) for name, r, f, m in RfmSettings().segment_rules()]
    r = score(summary.recency_days, R_CUTS, lower_is_better=True)
    f = score(summary.purchases, F_CUTS)
    m = score(summary.monetary, M_CUTS)
    codes, names = assign_segments(r[:-1], f[:-1], m[:-1], rules)
    assert {n: names[c] for n, c in zip(NAMES, codes, strict=True)} == {n: CUSTOMERS[n][5] for n in NAMES}
    # the shipped table names all eleven segments and every R x F cell
    assert names == (
        "champions",
        "loyal",
        "potential_loyalist",
        "new",
        "promising",
        "need_attention",
        "about_to_sleep",
        "cant_lose",
        "at_risk",
        "lost",
        "hibernating",
        OTHERS,
    )
    grid_r, grid_f = np.meshgrid(np.arange(1, 6), np.arange(1, 6))
    all_codes, _ = assign_segments(grid_r.ravel(), grid_f.ravel(), np.full(25, 3), rules)
    assert OTHERS not in {names[c] for c in all_codes}


def test_first_match_wins_and_the_unmatched_are_others():
    rules = [
        SegmentRule("vip", r=(4, 5), m=(5, 5)),
        SegmentRule("recent", r=(4, 5)),
        SegmentRule("vip", f=(5, 5)),
    ]
    codes, names = assign_segments([5, 5, 1, 2, 0], [1, 1, 5, 1, 0], [5, 1, 1, 1, 0], rules)
    assert names == ("vip", "recent", OTHERS)
    assert [names[c] for c in codes] == ["vip", "recent", "vip", OTHERS, OTHERS]


def test_quantile_scoring_gives_each_fifth_a_score():
    values = np.arange(1, 11, dtype=float)
    cuts = quantile_cuts(values)
    assert cuts == pytest.approx((2.8, 4.6, 6.4, 8.2))
    assert score(values, cuts).tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert score(values, cuts, lower_is_better=True).tolist() == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]


def test_quantile_frequency_collapses_when_most_bought_once():
    """Why frequency has fixed cut points by default: quintiles of mostly-ones give 1 or 5, none between."""
    purchases = np.array([1] * 8 + [2, 5], dtype=float)
    assert score(purchases, quantile_cuts(purchases)).tolist() == [1] * 8 + [5, 5]
    assert score(purchases, F_CUTS).tolist() == [1] * 8 + [2, 4]


def test_bad_cut_points_and_rules_are_refused():
    with pytest.raises(ValueError, match="cut points"):
        score([1.0], (3, 2, 1, 0))
    with pytest.raises(ValueError, match="1-5"):
        SegmentRule("x", r=(0, 5))
