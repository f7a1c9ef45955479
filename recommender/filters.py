"""Item filters as boolean masks: catalogue state, price, categories, explicit excludes, already bought."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix

__all__ = ["allowed_mask", "already_bought"]


def _item_array(name: str, values: Any, n_items: int, dtype: Any = None) -> np.ndarray:
    arr = np.asarray(values) if dtype is None else np.asarray(values, dtype=dtype)
    if arr.shape != (n_items,):
        raise ValueError(f"{name} must have shape ({n_items},), got {arr.shape}")
    return arr


def allowed_mask(
    n_items: int,
    *,
    is_active: np.ndarray | None = None,
    in_stock: np.ndarray | None = None,
    prices: np.ndarray | None = None,
    min_price: float | None = None,
    max_price: float | None = None,
    categories: np.ndarray | None = None,
    include_categories: Iterable[Any] | None = None,
    exclude_categories: Iterable[Any] | None = None,
    exclude_items: Iterable[int] | np.ndarray | None = None,
    base: np.ndarray | None = None,
) -> np.ndarray:
    """Combine item filters into one mask; True = may be recommended.

    Parameters
    ----------
    n_items : int
    is_active, in_stock : ndarray bool, shape (n_items,), optional
        Catalogue flags: False hides the item at once, without retraining.
    prices : ndarray float, shape (n_items,), optional
        Needed with `min_price` / `max_price` (inclusive bounds); a NaN price fails any bound.
    categories : ndarray, shape (n_items,), optional
        Category code or name per item; needed with `include_categories` / `exclude_categories`.
    include_categories : iterable, optional
        Keep only these categories (an empty iterable keeps nothing).
    exclude_categories : iterable, optional
    exclude_items : iterable of int, optional
        Item positions never to return (out-of-range positions are ignored: ids unknown to the model).
    base : ndarray bool, shape (n_items,), optional
        A precomputed mask to narrow further (for example the cached catalogue mask).

    Returns
    -------
    ndarray bool, shape (n_items,)
    """
    mask = np.ones(n_items, dtype=bool)
    if base is not None:
        mask &= _item_array("base", base, n_items, bool)
    if is_active is not None:
        mask &= _item_array("is_active", is_active, n_items, bool)
    if in_stock is not None:
        mask &= _item_array("in_stock", in_stock, n_items, bool)
    if min_price is not None or max_price is not None:
        if prices is None:
            raise ValueError("min_price/max_price need prices")
        if min_price is not None and max_price is not None and min_price > max_price:
            raise ValueError(f"min_price {min_price} is greater than max_price {max_price}")
        p = _item_array("prices", prices, n_items, np.float64)
        if min_price is not None:
            mask &= p >= min_price  # NaN compares False
        if max_price is not None:
            mask &= p <= max_price
    if include_categories is not None or exclude_categories is not None:
        if categories is None:
            raise ValueError("include_categories/exclude_categories need categories")
        cats = _item_array("categories", categories, n_items)
        if include_categories is not None:
            mask &= np.isin(cats, np.asarray(list(include_categories)))
        if exclude_categories is not None:
            mask &= ~np.isin(cats, np.asarray(list(exclude_categories)))
    if exclude_items is not None:
        ex = np.asarray(list(exclude_items) if not isinstance(exclude_items, np.ndarray) else exclude_items)
        ex = ex.astype(np.int64).reshape(-1)
        ex = ex[(ex >= 0) & (ex < n_items)]
        mask[ex] = False
    return mask


def already_bought(user_items_row: csr_matrix, repeat_ok_mask: np.ndarray | None = None) -> np.ndarray:
    """Items to hide because the user already has them, except repeat-purchase items.

    Parameters
    ----------
    user_items_row : csr_matrix, shape (1, n_items)
        The user's row (build it from purchases only to hide bought items but keep viewed ones).
    repeat_ok_mask : ndarray bool, shape (n_items,), optional
        True for consumables and other items worth buying again; they stay recommendable.

    Returns
    -------
    ndarray bool, shape (n_items,); True = already bought and not repeatable, so exclude. Use as
    ``allowed & ~already_bought(row, repeat_ok_mask)`` with ``exclude_seen=False``.
    """
    row = csr_matrix(user_items_row)
    if row.shape[0] != 1:
        raise ValueError(f"user_items_row must have exactly one row, got {row.shape[0]}")
    n_items = row.shape[1]
    bought = np.zeros(n_items, dtype=bool)
    bought[row.indices[row.data > 0]] = True
    if repeat_ok_mask is not None:
        bought &= ~_item_array("repeat_ok_mask", repeat_ok_mask, n_items, bool)
    return bought
