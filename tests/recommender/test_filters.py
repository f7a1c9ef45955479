"""Item filter masks: catalogue flags, price, categories, explicit excludes, already bought."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse import csr_matrix

from recommender.filters import allowed_mask, already_bought

PRICES = np.array([5.0, 20.0, 50.0, np.nan, 120.0, 20.0])
CATEGORIES = np.array(["candles", "jewellery", "jewellery", "cards", "watches", "candles"], dtype=object)


def test_no_filters_allows_everything() -> None:
    assert allowed_mask(6).tolist() == [True] * 6


def test_inactive_and_out_of_stock_items_are_hidden() -> None:
    active = np.array([True, False, True, True, True, True])
    stock = np.array([True, True, False, True, True, True])
    assert allowed_mask(6, is_active=active, in_stock=stock).tolist() == [
        True,
        False,
        False,
        True,
        True,
        True,
    ]


def test_price_bounds_are_inclusive_and_nan_prices_fail_them() -> None:
    mask = allowed_mask(6, prices=PRICES, min_price=20, max_price=50)
    assert mask.tolist() == [False, True, True, False, False, True]
    assert allowed_mask(6, prices=PRICES, max_price=20).tolist() == [True, True, False, False, False, True]
    with pytest.raises(ValueError, match="greater than"):
        allowed_mask(6, prices=PRICES, min_price=60, max_price=50)
    with pytest.raises(ValueError, match="need prices"):
        allowed_mask(6, min_price=1)


def test_categories_include_and_exclude() -> None:
    inc = allowed_mask(6, categories=CATEGORIES, include_categories=["jewellery", "watches"])
    assert inc.tolist() == [False, True, True, False, True, False]
    exc = allowed_mask(6, categories=CATEGORIES, exclude_categories={"candles"})
    assert exc.tolist() == [False, True, True, True, True, False]
    assert not allowed_mask(6, categories=CATEGORIES, include_categories=[]).any()
    # A category name longer than any stored one must not be truncated into a match.
    codes = np.array(["ab", "abc", "ab", "x", "x", "x"])
    assert allowed_mask(6, categories=codes, include_categories=["abcdef"]).sum() == 0
    with pytest.raises(ValueError, match="need categories"):
        allowed_mask(6, include_categories=["x"])


def test_explicit_excludes_ignore_out_of_range_positions() -> None:
    mask = allowed_mask(6, exclude_items=[0, 4, -1, 99])
    assert mask.tolist() == [False, True, True, True, False, True]
    assert allowed_mask(6, exclude_items=np.array([], dtype=np.int64)).all()


def test_filters_combine_with_a_base_mask() -> None:
    base = np.array([True, True, True, True, False, True])
    mask = allowed_mask(6, base=base, prices=PRICES, min_price=10, exclude_items=[5])
    assert mask.tolist() == [False, True, True, False, False, False]


def test_arrays_of_the_wrong_length_are_rejected() -> None:
    with pytest.raises(ValueError, match="is_active"):
        allowed_mask(6, is_active=np.ones(5, dtype=bool))


def test_already_bought_keeps_repeat_purchase_items() -> None:
    row = csr_matrix((np.array([1.0, 2.0, 0.5]), ([0, 0, 0], [1, 3, 4])), shape=(1, 6))
    assert already_bought(row).tolist() == [False, True, False, True, True, False]
    repeat_ok = np.array([False, False, False, True, False, False])
    bought = already_bought(row, repeat_ok)
    assert bought.tolist() == [False, True, False, False, True, False]
    assert (allowed_mask(6) & ~bought).tolist() == [True, False, True, True, False, True]
    with pytest.raises(ValueError, match="one row"):
        already_bought(csr_matrix((2, 6)))
