"""The confidence matrix (customers x products) of interaction rows, with the configured weights and damping.

:func:`build_matrix` is the one entry point. Rows of a few customers against a trained model's indexes (a
written customer's rows reloaded by a web process) take a path of their own, :func:`_few_lines_matrix`,
that gives the same matrix, entry for entry and bit for bit, without the dozen scipy matrices the general
path builds and combines: at a few dozen rows, their fixed cost was most of a reload's CPU.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
from scipy.sparse import csr_matrix

from config import InteractionSettings
from domain.customers.interactions import InteractionRows
from recommender.interactions import IdIndex, build_user_items

__all__ = ["FEW_ROWS", "build_matrix", "event_weights", "keyed_csr", "sums_by_key"]

#: Rows up to which :func:`build_matrix` takes the few-rows path when it can (a reload of one customer
#: reads a few dozen, the freshness check's batch a few hundred to a few thousand); above, the general
#: path's fixed cost no longer matters and its scipy kernels are the better tested.
FEW_ROWS = 5_000


def event_weights(settings: InteractionSettings) -> dict[str, float]:
    """Weight per interaction kind from the settings (returns are not weighted: they subtract)."""
    return {
        "purchase": settings.weight_purchase,
        "cart": settings.weight_cart,
        "click": settings.weight_click,
        "view": settings.weight_view,
    }


def build_matrix(
    rows: InteractionRows,
    settings: InteractionSettings,
    *,
    now: dt.datetime | None = None,
    user_index: IdIndex | None = None,
    item_index: IdIndex | None = None,
    weights: dict[str, float] | None = None,
) -> tuple[csr_matrix, IdIndex, IdIndex]:
    """The confidence matrix (customers x products) of ``rows`` with the configured weights and damping.

    ``user_index``/``item_index`` fix the positions (a trained model's); rows outside them are dropped.
    """
    half_life = settings.half_life_days or None
    weights = event_weights(settings) if weights is None else weights
    if settings.quantity_damping == "lines":
        if (
            user_index is not None
            and item_index is not None
            and now is None
            and len(rows) <= FEW_ROWS
            and bool((rows.quantities > 0).all())  # else the general path warns about the rows it drops
        ):
            return _few_lines_matrix(rows, weights, half_life, user_index, item_index), user_index, item_index
        return _lines_matrix(rows, weights, half_life, now, user_index, item_index)
    return build_user_items(
        rows.customer_ids,
        rows.product_ids,
        rows.kinds,
        rows.quantities,
        rows.timestamps,
        weights=weights,
        quantity_damping=settings.quantity_damping,  # type: ignore[arg-type]
        half_life_days=half_life,
        now=now,
        user_index=user_index,
        item_index=item_index,
    )


def _lines_matrix(
    rows: InteractionRows,
    weights: dict[str, float],
    half_life: float | None,
    now: dt.datetime | None,
    user_index: IdIndex | None,
    item_index: IdIndex | None,
) -> tuple[csr_matrix, IdIndex, IdIndex]:
    """Each order line or event counts once (weighted, decayed); returns keep the bought fraction.

    A cell's purchase lines are scaled by net quantity / bought quantity, so a partial return lowers the
    cell and a full return removes it, whatever the line counts.
    """
    kept = rows.only([k for k in weights])
    lines, users, items = build_user_items(
        kept.customer_ids,
        kept.product_ids,
        kept.kinds,
        np.ones_like(kept.quantities),
        kept.timestamps,
        weights=weights,
        quantity_damping="none",
        half_life_days=half_life,
        now=now,
        user_index=user_index,
        item_index=item_index,
    )
    sales = rows.only(["purchase", "return"])
    bought_rows = rows.only(["purchase"])
    net, _, _ = build_user_items(
        sales.customer_ids,
        sales.product_ids,
        sales.kinds,
        sales.quantities,
        sales.timestamps,
        weights={"purchase": 1.0},
        quantity_damping="none",
        user_index=users,
        item_index=items,
    )
    bought, _, _ = build_user_items(
        bought_rows.customer_ids,
        bought_rows.product_ids,
        bought_rows.kinds,
        bought_rows.quantities,
        bought_rows.timestamps,
        weights={"purchase": 1.0},
        quantity_damping="none",
        user_index=users,
        item_index=items,
    )
    inverse = bought.copy()
    inverse.data = (1.0 / inverse.data).astype(inverse.dtype)
    fraction = net.multiply(inverse).tocsr()  # only cells still bought after returns
    was_bought = bought.copy()
    was_bought.data[:] = 1
    result = (lines - lines.multiply(was_bought) + lines.multiply(fraction)).tocsr()
    result.data[result.data < 1e-9] = 0
    result.eliminate_zeros()
    return result.astype(np.float32), users, items


def _few_lines_matrix(
    rows: InteractionRows,
    weights: dict[str, float],
    half_life: float | None,
    users: IdIndex,
    items: IdIndex,
) -> csr_matrix:
    """:func:`_lines_matrix` of few rows (every quantity positive, decay relative to the rows' newest
    weighted one), computed on the sorted cell keys instead of in scipy matrices.

    The same values go through the same float operations in the same order, so the entries are equal
    bit for bit: each (cell, kind) sums its rows' decayed counts in row order (``np.bincount``, as
    :func:`~recommender.interactions.build_user_items` does) and is weighted; a cell sums its kinds in
    their sorted order (what scipy's sum of a COO matrix's duplicates does with the kinds sorted within
    the cell) in float64, then drops at or below zero and becomes float32; net and bought quantities sum
    the same way; a bought cell keeps ``lines * (net * float32(1 / bought))`` in float32, as scipy's
    element-wise products do, and nothing when fully returned; a result under 1e-9 is dropped.
    """
    n_users, n_items = len(users), len(items)
    kinds = rows.kinds
    u, i = users.index_of(rows.customer_ids), items.index_of(rows.product_ids)
    known = (u >= 0) & (i >= 0)
    cell = u * n_items + i

    # Each line or event counts once, decayed, weighted by its kind: the general path's ``lines``.
    names = sorted(weights)
    column = np.full(len(rows), -1, dtype=np.int64)
    for c, name in enumerate(names):
        column[kinds == name] = c
    weighted = column >= 0
    counts = np.ones(int(weighted.sum()))
    if half_life is not None and counts.size:
        stamps = rows.timestamps[weighted]  # the reference is the newest of them, known items or not
        age_days = (stamps.max() - stamps).astype(np.float64) / 86400.0
        counts = counts * np.exp2(-age_days / half_life)
    counted = known[weighted]
    n_cols = len(names)
    keys, per_kind = sums_by_key(
        cell[weighted][counted] * n_cols + column[weighted][counted], counts[counted]
    )
    per_kind = per_kind * np.array([weights[k] for k in names])[keys % n_cols]
    cells, lines = sums_by_key(keys // n_cols, per_kind)
    cells, lines = _positive(cells, lines)

    # A bought cell keeps the bought fraction left after returns (none when all was returned).
    is_purchase = kinds == "purchase"
    is_return = kinds == "return"
    signed = np.where(is_return, -rows.quantities, rows.quantities)
    sale = (is_purchase | is_return) & known
    net_cells, net = _positive(*sums_by_key(cell[sale], signed[sale]))
    bought_cells, bought = _positive(
        *sums_by_key(cell[is_purchase & known], rows.quantities[is_purchase & known])
    )
    bought_at = np.flatnonzero(_found(bought_cells, cells))
    if bought_at.size:
        inverse = (1.0 / bought[np.searchsorted(bought_cells, cells[bought_at])]).astype(np.float32)
        left = _found(net_cells, cells[bought_at])
        fraction = net[np.searchsorted(net_cells, cells[bought_at[left]])] * inverse[left]
        lines[bought_at[left]] = lines[bought_at[left]] * fraction
        kept = np.ones(cells.size, dtype=bool)
        kept[bought_at[~left]] = False  # all returned
        cells, lines = cells[kept], lines[kept]
    big = lines >= 1e-9
    cells, lines = cells[big], lines[big]
    return keyed_csr(cells, lines, (n_users, n_items))


def sums_by_key(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct keys (sorted) and the sum of each one's values, added in their order (float64)."""
    uniq, inverse = np.unique(keys, return_inverse=True)
    return uniq, np.bincount(inverse.reshape(-1), weights=values, minlength=uniq.size)


def keyed_csr(keys: np.ndarray, values: np.ndarray, shape: tuple[int, int]) -> csr_matrix:
    """The CSR matrix with ``values`` at the sorted, distinct flat positions ``keys`` (row * width + col).

    Its index arrays are int32 when they fit, as scipy would choose, made so here: scipy checking and
    converting int64 ones cost as much as the rest of a one-customer matrix."""
    n_rows, width = shape
    fits = max(n_rows, width, keys.size) < np.iinfo(np.int32).max
    index_dtype = np.int32 if fits else np.int64
    indptr = np.zeros(n_rows + 1, dtype=index_dtype)
    np.cumsum(np.bincount(keys // max(width, 1), minlength=n_rows), out=indptr[1:])
    indices = (keys % max(width, 1)).astype(index_dtype)
    return csr_matrix((values, indices, indptr), shape=shape, copy=False)


def _positive(keys: np.ndarray, sums: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The keys whose sum is above zero, with the sums as float32 (what the general path keeps)."""
    keep = sums > 0
    return keys[keep], sums[keep].astype(np.float32)


def _found(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Which ``keys`` are among ``sorted_keys``."""
    at = np.minimum(np.searchsorted(sorted_keys, keys), max(sorted_keys.size - 1, 0))
    return sorted_keys[at] == keys if sorted_keys.size else np.zeros(keys.size, dtype=bool)
