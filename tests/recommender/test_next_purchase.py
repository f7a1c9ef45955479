"""BG/NBD against the published CDNOW estimates, and repurchase intervals on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.special import betaln
from scipy.stats import beta

from recommender.base import NotFittedError, RecommenderError
from recommender.bgnbd import _expected_by_integration, _expected_by_quadrature
from recommender.next_purchase import (
    BGNBD,
    NextPurchaseModel,
    RepurchaseIntervals,
    _distinct,
    customer_summary,
    group_median,
)
from tests.conftest import REPO

CDNOW = REPO / "data" / "cdnow_customers_summary.csv.gz"
#: Fader, Hardie & Lee (2005), "Counting Your Customers the Easy Way", Marketing Science 24(2), section 5.
PUBLISHED = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
PUBLISHED_LL = -9582.4


@pytest.fixture(scope="module")
def cdnow() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    table = np.loadtxt(CDNOW, delimiter=",", skiprows=1)
    assert table.shape == (2357, 4)
    return table[:, 1], table[:, 2], table[:, 3]


@pytest.fixture(scope="module")
def fitted(cdnow) -> BGNBD:
    return BGNBD().fit(*cdnow)


# ------------------------------------------------------------------------------------------- BG/NBD
def test_bgnbd_reproduces_the_published_cdnow_estimates(fitted):
    p = fitted.params
    for name, value in PUBLISHED.items():
        assert getattr(p, name) == pytest.approx(value, rel=1e-2), name
    assert p.log_likelihood == pytest.approx(PUBLISHED_LL, abs=0.1)
    assert p.n_customers == 2357


def test_bgnbd_log_likelihood_sums_to_the_fitted_total(fitted, cdnow):
    assert fitted.log_likelihood(*cdnow).sum() == pytest.approx(fitted.params.log_likelihood, abs=1e-6)


def test_conditional_expectation_matches_the_paper_example():
    """The paper's customer with x = 2, t_x = 30.43, T = 38.86 is expected to buy 1.226 times in 39 weeks."""
    model = BGNBD.from_params(**PUBLISHED)
    assert float(model.expected_purchases(39.0, 2, 30.43, 38.86)) == pytest.approx(1.226, abs=2e-3)


def test_p_alive_and_purchase_probability_by_hand():
    r, alpha, a, b = 0.25, 4.0, 0.8, 2.5
    model = BGNBD.from_params(r, alpha, a, b)
    x, t_x, age = 3.0, 20.0, 30.0
    alive = 1.0 / (1.0 + a / (b + x - 1) * ((alpha + age) / (alpha + t_x)) ** (r + x))
    assert float(model.p_alive(x, t_x, age)) == pytest.approx(alive, rel=1e-12)
    assert float(model.p_alive(0, 0, 50)) == 1.0  # no repeat purchase: never seen to drop out
    none_in_10 = ((alpha + age) / (alpha + age + 10)) ** (r + x)
    assert float(model.probability_of_purchase(10.0, x, t_x, age)) == pytest.approx(
        alive * (1 - none_in_10), rel=1e-12
    )
    median = float(model.median_time_to_purchase(x, t_x, age))
    assert ((alpha + age) / (alpha + age + median)) ** (r + x) == pytest.approx(0.5, rel=1e-12)


def test_expected_purchases_agree_with_simulation():
    """Monte Carlo of the model's own story for a new customer: closed form within 3 standard errors."""
    r, alpha, a, b, t = 0.5, 3.0, 1.5, 4.0, 20.0
    model = BGNBD.from_params(r, alpha, a, b)
    rng = np.random.default_rng(11)
    n = 40_000
    lam = rng.gamma(r, 1.0 / alpha, n)
    p = rng.beta(a, b, n)
    counts = np.zeros(n)
    clock = np.zeros(n)
    alive = np.ones(n, dtype=bool)
    while alive.any():
        clock[alive] += rng.exponential(1.0 / lam[alive])
        buying = alive & (clock <= t)
        counts[buying] += 1
        alive = buying & (rng.random(n) >= p)
    expected = float(model.expected_purchases_new(t))
    assert abs(counts.mean() - expected) < 3 * counts.std() / math.sqrt(n)


@pytest.mark.parametrize("x, t_x, age", [(2, 30.43, 38.86), (0, 0, 20), (40, 35, 39)])
def test_integration_fallback_agrees_with_the_closed_form(x, t_x, age):
    model = BGNBD.from_params(**PUBLISHED)
    alive = float(model.p_alive(x, t_x, age))
    integrated = _expected_by_integration(model.params, 39.0, x, age) * alive
    assert integrated == pytest.approx(float(model.expected_purchases(39.0, x, t_x, age)), rel=1e-7)


def _adaptive_reference(p, t, x, age):
    """The drop-out integral by scipy's adaptive quadrature, one customer at a time (the slow reference)."""
    shape, scale, b = p.r + x, p.alpha + age, p.b + x

    def given(q):
        q = max(q, 1e-300)
        return -math.expm1(-shape * math.log1p(q * t / scale)) / q

    if p.a >= 1 and b >= 1:  # a smooth, maybe very narrow density: integrate it whole, past its mode
        mode = (p.a - 1.0) / (p.a + b - 2.0)
        value, _ = quad(lambda q: beta.pdf(q, p.a, b) * given(q), 0.0, 1.0, points=(mode,), limit=500)
        return value
    value, _ = quad(given, 0.0, 1.0, weight="alg", wvar=(p.a - 1.0, b - 1.0), limit=200)
    return value / math.exp(betaln(p.a, b))


@pytest.mark.parametrize(
    "r, alpha, a, b, t",
    [
        (0.243, 4.414, 0.793, 2.426, 39.0),  # the paper's CDNOW estimates
        (0.5, 2.0, 0.05, 0.3, 730.0),  # a and b below 1: both ends of the Beta density are singular
        (3.0, 1.0, 4.0, 600.0, 730.0),  # a concentrated Beta, a horizon far beyond alpha + T
    ],
)
def test_vectorised_quadrature_agrees_with_adaptive_integration(r, alpha, a, b, t):
    """The snapshot of 100,000 customers integrates in one vectorised pass per distinct x (it took one
    adaptive `quad` call per customer and step before); it must give the same numbers."""
    p = BGNBD.from_params(r, alpha, a, b).params
    x = np.array([0.0, 0.0, 1.0, 2.0, 7.0, 40.0, 2.0])
    age = np.array([1.0, 300.0, 20.0, 38.9, 200.0, 700.0, 0.5])
    got = _expected_by_quadrature(p, t, x, age)
    want = [_adaptive_reference(p, t, xi, ai) for xi, ai in zip(x, age, strict=True)]
    np.testing.assert_allclose(got, want, rtol=1e-9)


def test_expected_purchases_without_drop_out_heterogeneity():
    """Huge a and b (every customer drops out with about the same probability) overflow the closed form;
    the answer then equals the one of a fixed drop-out probability a / (a + b + x)."""
    r, alpha, a, b = 2.0, 20.0, 5e4, 1e6
    model = BGNBD.from_params(r, alpha, a, b)
    x, t_x, age, t = 30.0, 190.0, 200.0, 30.0
    q = a / (a + b + x)
    fixed = (1 - ((alpha + age) / (alpha + age + q * t)) ** (r + x)) / q * float(model.p_alive(x, t_x, age))
    assert float(model.expected_purchases(t, x, t_x, age)) == pytest.approx(fixed, rel=1e-9)


def test_expected_purchases_stay_finite_for_heavy_buyers(fitted):
    value = fitted.expected_purchases(39.0, np.array([300.0, 3000.0]), np.array([38.9, 38.9]), 39.0)
    assert np.isfinite(value).all() and (value > 0).all()
    assert value[1] > value[0]  # still buying a week ago at a much higher rate


def test_identical_customers_weigh_as_many(cdnow, fitted):
    doubled = BGNBD().fit(*(np.tile(c, 2) for c in cdnow))
    assert doubled.params.log_likelihood == pytest.approx(2 * fitted.params.log_likelihood, rel=1e-7)
    assert doubled.params.r == pytest.approx(fitted.params.r, rel=1e-4)


def test_bgnbd_refuses_unusable_input():
    with pytest.raises(NotFittedError):
        BGNBD().p_alive(1, 1, 2)
    with pytest.raises(RecommenderError, match="repeat purchases"):
        BGNBD().fit([0, 0, 0], [0, 0, 0], [5, 6, 7])
    with pytest.raises(ValueError, match="recency <= T"):
        BGNBD().fit([1, 2], [5, 9], [4, 10])
    with pytest.raises(ValueError, match="> 0"):
        BGNBD.from_params(0.0, 1, 1, 1)


# ------------------------------------------------------------------------------------ summaries, medians
def test_customer_summary_counts_distinct_days():
    users = np.array([0, 0, 0, 0, 2])
    days = np.array([10, 10, 15, 40, 30])  # two lines on day 10 are one purchase
    s = customer_summary(users, days, n_users=3, now=50)
    assert s.frequency.tolist() == [2, 0, 0]
    assert s.recency.tolist() == [30, 0, 0]
    assert s.T.tolist() == [40, 0, 20]
    assert s.has_purchases.tolist() == [True, False, True]
    with pytest.raises(ValueError, match="after now"):
        customer_summary(users, days, n_users=3, now=35)


def test_group_median():
    keys, medians, counts = group_median(np.array([5, 1, 5, 5, 1]), np.array([3.0, 10.0, 1.0, 2.0, 20.0]))
    assert keys.tolist() == [1, 5]
    assert medians.tolist() == [15.0, 2.0]
    assert counts.tolist() == [2, 3]


# -------------------------------------------------------------------------------------------- intervals
#: customer 0 buys item 0 on days 0, 10 (two lines), 30: gaps 10 and 20, own median 15;
#: customer 1 buys item 0 on days 5 and 45: gap 40; customer 2 buys item 0 once (day 50) and item 1 on
#: days 20 and 27: gap 7.
EVENTS = np.array(
    [
        [0, 0, 0],
        [0, 0, 10],
        [0, 0, 10],
        [0, 0, 30],
        [1, 0, 5],
        [1, 0, 45],
        [2, 0, 50],
        [2, 1, 20],
        [2, 1, 27],
    ]
)


def _intervals(**params: float) -> RepurchaseIntervals:
    return RepurchaseIntervals(**params).fit(EVENTS[:, 0], EVENTS[:, 1], EVENTS[:, 2], n_users=3, n_items=3)


def test_item_interval_is_the_median_of_customer_medians():
    model = _intervals()
    assert model.global_interval == 15.0  # median of the customer medians 15, 40, 7
    # item 0: customers' medians 15 and 40 -> 27.5, shrunk with weight 2 each towards 15 (geometric mean)
    assert model.item_interval[0] == pytest.approx(math.sqrt(27.5 * 15.0))
    assert model.item_interval[1] == pytest.approx((7.0 * 15.0 * 15.0) ** (1 / 3))
    assert model.item_interval[2] == pytest.approx(15.0)  # never bought: the all-item median
    assert model.item_repeaters.tolist() == [2, 1, 0]
    # repeat rates: 3 of 4 (customer, item) pairs repeat; item 0: (2 + 2 * 0.75) / (3 + 2)
    assert model.global_repeat_rate == 0.75
    assert model.item_repeat_rate[0] == pytest.approx(0.7)
    assert model.item_repeat_rate[1] == pytest.approx(2.5 / 3)


def test_nearly_unshrunk_intervals_equal_the_plain_medians():
    model = _intervals(item_prior=1e-9, own_prior=1e-9)
    assert model.item_interval[:2] == pytest.approx([27.5, 7.0])
    s = model.pairs_of(0)
    assert model.pair_interval[s] == pytest.approx([15.0])  # own gaps dominate
    assert model.pair_days[s].tolist() == [3]  # distinct days
    assert model.pair_last[s].tolist() == [30]


def test_due_dates_and_chances_by_hand():
    model = _intervals()
    scored = model.score_pairs(now=60, horizon=30.0, pairs=model.pairs_of(0))
    interval = math.sqrt(15.0 * math.sqrt(27.5 * 15.0))  # own median 15 (2 gaps) with the item's (weight 2)
    assert scored["interval"] == pytest.approx([interval])
    assert scored["due_in"] == pytest.approx([interval - 30.0])
    # propensity after 2 repeats with the item's repeat rate 0.7 of strength 2: (2 + 1.4) / 4
    mu, sigma = math.log(interval), model.sigma
    from scipy.stats import norm

    s_now, s_end = norm.sf((math.log(30) - mu) / sigma), norm.sf((math.log(60) - mu) / sigma)
    assert scored["chance"] == pytest.approx([0.85 * (s_now - s_end) / s_now])
    # bought today: the median wait is the interval itself
    today = model.score_pairs(now=50, horizon=30.0, pairs=model.pairs_of(2))
    assert today["item"].tolist() == [0, 1]
    assert today["expected_in"][0] == pytest.approx(model.pair_interval[model.pairs_of(2)][0])


def test_intervals_require_fit():
    with pytest.raises(NotFittedError):
        RepurchaseIntervals().pairs_of(0)


# ---------------------------------------------------------------------------------------- whole model
def _staples(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """40 customers: item 0 every few days (customer 0: every 7), item 1 every 30 days, item 2 once, item 3
    bought by others. Customer 0 and every third one keep buying until day 200; the others stop earlier."""
    users, items, days = [], [], []
    for u in range(40):
        start = int(rng.integers(0, 10))
        stop = 200 if u % 3 == 0 else int(rng.integers(20, 180))
        for d in range(start, stop, 7 if u == 0 else int(rng.integers(3, 40))):
            users.append(u), items.append(0), days.append(d + int(rng.integers(0, 2)))
        for d in range(start + 3, stop, 30):
            users.append(u), items.append(1), days.append(d)
        users.append(u), items.append(2), days.append(start + 1)
        if u % 2:
            users += [u, u]
            items += [3, 3]
            days += [50, 120]
    return np.array(users), np.array(items), np.array(days)


def test_model_ranks_the_staple_due_now_first():
    users, items, days = _staples(np.random.default_rng(3))
    model = NextPurchaseModel(horizon=14.0).fit(users, items, days, n_users=41, n_items=5, now=200)
    p = model.predict(0, n=10)
    assert p.item_idxs[0] == 0  # due within days, bought ~28 times
    assert set(p.item_idxs.tolist()) == {0, 1, 2}
    assert (p.expected_in >= 0).all() and (np.diff(p.probabilities) <= 0).all()
    assert 0.9 < p.p_alive <= 1.0
    assert p.expected_purchases_90 > p.expected_purchases_30 > 1.0  # about 4 and 2 purchase days a month
    assert 0 < p.median_days_to_next < 10
    hidden = np.ones(5, dtype=bool)
    hidden[0] = False
    assert 0 not in model.predict(0, n=10, allowed=hidden).item_idxs.tolist()
    assert model.predict(0, n=1).item_idxs.tolist() == [0]
    nobody = model.predict(40)
    assert nobody.p_alive is None and nobody.item_idxs.size == 0


def test_model_requires_fit():
    with pytest.raises(NotFittedError):
        NextPurchaseModel().predict(0)


def test_distinct_rows_packed_or_not():
    rows = np.array([[3, 1, 7], [0, 2, 5], [3, 1, 7], [0, 2, 4]])
    expected = [[0, 2, 4], [0, 2, 5], [3, 1, 7]]
    packed = _distinct(rows[:, 0], rows[:, 1], rows[:, 2])
    assert np.stack(packed, axis=1).tolist() == expected
    wide = rows * np.array([1, 1 << 40, 1 << 40])  # ranges too wide for one int64 key
    unpacked = _distinct(wide[:, 0], wide[:, 1], wide[:, 2])
    assert (np.stack(unpacked, axis=1) // np.array([1, 1 << 40, 1 << 40])).tolist() == expected
