"""Gamma-Gamma against the published CDNOW estimates, computed from the raw purchase file, and CLV."""

from __future__ import annotations

import datetime as dt
import gzip

import numpy as np
import pytest

from recommender.base import NotFittedError, RecommenderError
from recommender.bgnbd import BGNBD
from recommender.clv import GammaGamma, customer_lifetime_value, discounted_purchases
from recommender.rfm import rfm_summary
from tests.conftest import REPO

RAW = REPO / "data" / "CDNOW_sample.txt.gz"
SUMMARY = REPO / "data" / "cdnow_customers_summary.csv.gz"
#: Fader, Hardie & Lee (2005), "RFM and CLV: Using Iso-Value Curves for Customer Base Analysis", JMR 42(4).
PUBLISHED = {"p": 6.25, "q": 3.74, "gamma": 15.44}
EPOCH = dt.date(1970, 1, 1)
CALIBRATION_END = dt.date(1997, 9, 30)


@pytest.fixture(scope="module")
def cdnow():
    """The raw file through the project's summary: days up to the end of the 39-week calibration period."""
    users, days, amounts = [], [], []
    with gzip.open(RAW, "rt") as fh:
        for line in fh:
            _, sample_id, date, _, dollars = line.split()
            day = (dt.date(int(date[:4]), int(date[4:6]), int(date[6:])) - EPOCH).days
            users.append(int(sample_id) - 1)
            days.append(day)
            amounts.append(float(dollars))
    users_a, days_a, amounts_a = np.array(users), np.array(days), np.array(amounts)
    assert users_a.size == 6919 and users_a.max() + 1 == 2357
    end = (CALIBRATION_END - EPOCH).days
    keep = days_a <= end
    return rfm_summary(users_a[keep], days_a[keep], amounts_a[keep], 2357, end)


@pytest.fixture(scope="module")
def fitted(cdnow) -> GammaGamma:
    return GammaGamma().fit(cdnow.days.frequency, cdnow.repeat_spend)


def test_the_raw_file_gives_the_published_summary(cdnow):
    """Repeat purchases per customer equal those of the published calibration summary, one by one."""
    table = np.loadtxt(SUMMARY, delimiter=",", skiprows=1)
    np.testing.assert_array_equal(cdnow.days.frequency, table[:, 1])
    assert int((cdnow.days.frequency > 0).sum()) == 946


def test_gamma_gamma_reproduces_the_published_cdnow_estimates(fitted):
    p = fitted.params
    assert p.n_customers == 946
    for name, value in PUBLISHED.items():
        assert getattr(p, name) == pytest.approx(value, rel=1e-2), name


def test_expected_spend_shrinks_own_mean_towards_the_population_mean():
    model = GammaGamma.from_params(p=6.0, q=4.0, gamma=15.0)
    population = 6.0 * 15.0 / 3.0  # p gamma / (q - 1) = 30
    assert model.params.mean_spend == pytest.approx(population)
    # (gamma + m x) p / (p x + q - 1), by hand: x = 2, m = 50 -> (15 + 100) * 6 / 15 = 46
    spend = model.expected_spend([0, 2, 200], [np.nan, 50.0, 50.0])
    assert spend[0] == pytest.approx(population)
    assert spend[1] == pytest.approx(46.0)
    assert population < spend[1] < spend[2] < 50.0  # more purchases: nearer the customer's own mean


def test_clv_is_discounted_purchases_times_expected_spend():
    bgnbd = BGNBD.from_params(r=0.243, alpha=4.414 * 7, a=0.793, b=2.426)  # the CDNOW fit, in days
    spend = GammaGamma.from_params(p=6.25, q=3.74, gamma=15.44)
    x, t_x, age = np.array([0, 2, 6]), np.array([0, 200, 250]), np.array([260, 260, 260])
    m = np.array([0, 30, 40])
    flat = discounted_purchases(bgnbd, x, t_x, age, horizon=365, annual_discount_rate=0.0)
    np.testing.assert_allclose(flat, bgnbd.expected_purchases(365.0, x, t_x, age), rtol=1e-12)
    discounted = discounted_purchases(bgnbd, x, t_x, age, horizon=365, annual_discount_rate=0.1)
    assert ((discounted < flat) & (discounted > flat / 1.1)).all()
    clv = customer_lifetime_value(bgnbd, spend, x, t_x, age, m, horizon=365, annual_discount_rate=0.1)
    np.testing.assert_allclose(clv, discounted * spend.expected_spend(x, m))
    assert clv[0] < clv[1] < clv[2]


def test_unfitted_and_unfittable_models_say_so():
    with pytest.raises(NotFittedError):
        GammaGamma().params  # noqa: B018
    with pytest.raises(RecommenderError):
        GammaGamma().fit([1, 0, 0], [10.0, 0.0, 0.0])
    with pytest.raises(ValueError):
        GammaGamma().fit([1, 2], [10.0, -1.0])
