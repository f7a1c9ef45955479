"""The user x item interaction matrix and IdIndex, the one place where external ids meet matrix positions."""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Self

import numpy as np
from scipy.sparse import coo_matrix, csr_matrix

__all__ = [
    "DEFAULT_WEIGHTS",
    "IdIndex",
    "build_user_items",
]

DEFAULT_WEIGHTS: dict[str, float] = {"purchase": 1.0, "cart": 0.5, "click": 0.25, "view": 0.1}
RETURN_KIND = "return"
PURCHASE_KIND = "purchase"

Damping = Literal["none", "log1p", "sqrt"]


def _normalise_ids(ids: Any) -> np.ndarray:
    """Ids as int64 when they are integers, otherwise as a fixed-width unicode array (no pickling)."""
    arr = np.asarray(ids)
    if arr.ndim != 1:
        arr = arr.reshape(-1)
    if arr.dtype.kind in "iub":
        return arr.astype(np.int64)
    if arr.dtype.kind == "U":
        return arr
    if arr.dtype.kind == "f":
        raise TypeError("ids must be integers or strings, not floats")
    if arr.size and any(x is None for x in arr.tolist()):
        raise ValueError("ids must not be None")
    return arr.astype(str)


class IdIndex:
    """Bijection between external ids (database keys, SKUs) and matrix positions 0..n-1.

    Parameters
    ----------
    ids : array-like, shape (n,)
        Unique ids; ``ids[i]`` is the id at position ``i``. Integers are kept as int64, anything else
        becomes a unicode string array.
    """

    def __init__(self, ids: Any) -> None:
        self._ids = _normalise_ids(ids)
        self._sorter = np.argsort(self._ids, kind="stable")
        self._sorted = self._ids[self._sorter]
        if self._sorted.size > 1 and (self._sorted[1:] == self._sorted[:-1]).any():
            raise ValueError("IdIndex ids must be unique")

    @property
    def ids(self) -> np.ndarray:
        """External ids by position, shape (n,)."""
        return self._ids

    def __len__(self) -> int:
        return int(self._ids.size)

    def __contains__(self, external_id: object) -> bool:
        return bool(self.index_of(np.asarray([external_id]))[0] >= 0)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IdIndex):
            return NotImplemented
        return self._ids.dtype.kind == other._ids.dtype.kind and np.array_equal(self._ids, other._ids)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"IdIndex(n={len(self)}, dtype={self._ids.dtype})"

    def index_of(self, ids: Any) -> np.ndarray:
        """Positions of `ids`, shape (len(ids),) int64; -1 where the id is unknown.

        A scalar is accepted and gives a 1-element array.
        """
        query = np.atleast_1d(np.asarray(ids))
        if query.size == 0 or self._ids.size == 0:
            return np.full(query.size, -1, dtype=np.int64)
        if self._ids.dtype.kind == "i":
            if query.dtype.kind in "iub":
                query = query.astype(np.int64)
            else:
                # Strings such as "17" may name integer ids; anything else is unknown.
                as_str = query.astype(str)
                ok = np.char.isdigit(np.char.lstrip(as_str, "-"))
                q = np.zeros(query.size, dtype=np.int64)
                q[ok] = as_str[ok].astype(np.int64)
                out = self._lookup(q)
                out[~ok] = -1
                return out
        else:
            query = query.astype(str) if query.dtype.kind != "U" else query
        return self._lookup(query)

    def _lookup(self, query: np.ndarray) -> np.ndarray:
        pos = np.searchsorted(self._sorted, query)
        pos_c = np.minimum(pos, self._sorted.size - 1)
        found = self._sorted[pos_c] == query
        return np.where(found, self._sorter[pos_c], -1).astype(np.int64)

    def id_of(self, positions: Any) -> np.ndarray:
        """External ids at `positions` (array of int); raises IndexError outside [0, n)."""
        pos = np.atleast_1d(np.asarray(positions, dtype=np.int64))
        if pos.size and (pos.min() < 0 or pos.max() >= len(self)):
            raise IndexError(f"positions out of range [0, {len(self)})")
        return self._ids[pos]

    def extend(self, ids: Any) -> IdIndex:
        """A new index with unseen `ids` appended (in first-seen order); existing positions unchanged."""
        new = _normalise_ids(ids)
        if self._ids.size and new.dtype.kind != self._ids.dtype.kind:
            new = new.astype(self._ids.dtype)
        fresh = new[self.index_of(new) < 0]
        _, first = np.unique(fresh, return_index=True)
        return IdIndex(np.concatenate([self._ids, fresh[np.sort(first)]]))

    def save(self, path: Path) -> None:
        """Write to an ``.npz`` file (no pickle)."""
        with open(path, "wb") as fh:
            np.savez(fh, ids=self._ids)

    @classmethod
    def load(cls, path: Path) -> Self:
        """Read a file written by `save`."""
        with np.load(path, allow_pickle=False) as npz:
            return cls(npz["ids"])


def _as_datetime64(value: dt.datetime | np.datetime64 | str) -> np.datetime64:
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    converted: Any = value
    return np.datetime64(converted, "s")


def _damp(q: np.ndarray, damping: str) -> np.ndarray:
    if damping == "none":
        return q
    if damping == "log1p":
        return np.sign(q) * np.log1p(np.abs(q))
    if damping == "sqrt":
        return np.sign(q) * np.sqrt(np.abs(q))
    raise ValueError(f"quantity_damping must be 'none', 'log1p' or 'sqrt', got {damping!r}")


def build_user_items(
    user_ids: Any,
    item_ids: Any,
    kinds: Any,
    quantities: Any,
    timestamps: Any,
    *,
    weights: Mapping[str, float] | None = None,
    quantity_damping: Damping = "log1p",
    half_life_days: float | None = None,
    now: dt.datetime | np.datetime64 | None = None,
    user_index: IdIndex | None = None,
    item_index: IdIndex | None = None,
) -> tuple[csr_matrix, IdIndex, IdIndex]:
    """Build the confidence matrix from interaction rows (orders and events).

    Every argument is an equal-length 1-D array with one entry per interaction. For each (user, item)
    cell and each kind, quantities are summed (after time decay), damped, and multiplied by the kind's
    weight; the cell is the sum over kinds. ``"return"`` rows subtract from the same cell's purchase
    quantity, so a return takes away the purchase weight of the returned quantity; a cell that ends at
    or below zero is dropped.

    Parameters
    ----------
    user_ids, item_ids : array, shape (n_rows,)
        External ids (int or str).
    kinds : array of str, shape (n_rows,)
        Interaction kind: a key of `weights`, or ``"return"``.
    quantities : array of number, shape (n_rows,)
        Units (1 for events). Non-positive or NaN quantities are dropped with a warning.
    timestamps : array of datetime64 (or anything numpy converts), shape (n_rows,)
        When the interaction happened; used only with `half_life_days`.
    weights : mapping kind -> float, optional
        Default ``DEFAULT_WEIGHTS`` (purchase 1, cart .5, click .25, view .1). Must be >= 0.
    quantity_damping : {"none", "log1p", "sqrt"}
        Applied to each (cell, kind) summed quantity: repeat purchases count, with diminishing returns.
    half_life_days : float, optional
        Each interaction's quantity is multiplied by ``0.5 ** (age_days / half_life_days)``.
    now : datetime or datetime64, optional
        Reference time for the decay; default is the latest timestamp.
    user_index, item_index : IdIndex, optional
        Fix the positions (for example to a trained model's); rows whose id is not in the given index
        are dropped silently. Without one, an index of the ids present is built (sorted).

    Returns
    -------
    user_items : csr_matrix float32, shape (len(users), len(items))
        Users are rows, items columns.
    users : IdIndex
    items : IdIndex

    Raises
    ------
    ValueError
        Arrays of different lengths, unknown kinds, negative weights, bad damping.
    """
    weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
    for kind, w in weights.items():
        if not np.isfinite(w) or w < 0:
            raise ValueError(f"weight for {kind!r} must be a finite number >= 0, got {w!r}")
    if RETURN_KIND in weights:
        raise ValueError("'return' is not a weighted kind: returns subtract the purchase weight")
    _damp(np.zeros(1), quantity_damping)  # validate early
    if half_life_days is not None and not half_life_days > 0:
        raise ValueError(f"half_life_days must be > 0, got {half_life_days!r}")

    users_raw = _normalise_ids(user_ids)
    items_raw = _normalise_ids(item_ids)
    kinds_arr = np.asarray(kinds).astype(str).reshape(-1)
    qty = np.asarray(quantities, dtype=np.float64).reshape(-1)
    n = users_raw.size
    lengths = {
        "user_ids": n,
        "item_ids": items_raw.size,
        "kinds": kinds_arr.size,
        "quantities": qty.size,
    }
    if half_life_days is not None:
        ts = np.asarray(timestamps, dtype="datetime64[s]").reshape(-1)
        lengths["timestamps"] = ts.size
    if len(set(lengths.values())) != 1:
        raise ValueError(f"interaction arrays differ in length: {lengths}")

    # Kinds -> weight column. Unknown kinds are an error (a misspelt kind would silently lose data).
    # The codes are those of np.unique (the kinds present, sorted), found with one comparison per known
    # kind: sorting the strings took half of the matrix build on the full UCI file.
    present: list[str] = []
    kind_code = np.full(n, -1, dtype=np.int64)
    for name in sorted({*weights, RETURN_KIND}):
        is_kind = kinds_arr == name
        if is_kind.any():
            kind_code[is_kind] = len(present)
            present.append(name)
    if (kind_code < 0).any():
        unknown = np.unique(kinds_arr[kind_code < 0]).tolist()
        raise ValueError(f"unknown interaction kinds {unknown}; expected {sorted(weights)} or 'return'")
    kind_names = np.array(present, dtype=str)

    bad_qty = ~(qty > 0)  # also catches NaN
    if bad_qty.any():
        warnings.warn(
            f"{int(bad_qty.sum())} interactions with a non-positive or missing quantity were dropped",
            UserWarning,
            stacklevel=2,
        )

    if half_life_days is not None:
        ref = _as_datetime64(now) if now is not None else (ts.max() if n else np.datetime64("now", "s"))
        age_days = (ref - ts).astype(np.float64) / 86400.0
        future = age_days < 0
        if future.any():
            warnings.warn(
                f"{int(future.sum())} interactions are later than `now`; they count as current",
                UserWarning,
                stacklevel=2,
            )
            age_days[future] = 0.0
        qty = qty * np.exp2(-age_days / half_life_days)

    # Returns are booked against the purchase column, negatively.
    names = kind_names.tolist()
    column_kinds = [k for k in names if k != RETURN_KIND]
    if RETURN_KIND in names and PURCHASE_KIND not in column_kinds:
        column_kinds.append(PURCHASE_KIND)
    col_of = np.array([column_kinds.index(PURCHASE_KIND if k == RETURN_KIND else k) for k in names], np.int64)
    sign = np.array([-1.0 if k == RETURN_KIND else 1.0 for k in names])
    kind_col = col_of[kind_code] if n else np.zeros(0, np.int64)
    signed_qty = qty * (sign[kind_code] if n else 1.0)

    if user_index is None:
        uniq_u, u_pos = np.unique(users_raw[~bad_qty], return_inverse=True)
        users = IdIndex(uniq_u)
        u_full = np.full(n, -1, np.int64)
        u_full[~bad_qty] = u_pos
    else:
        users = user_index
        u_full = users.index_of(users_raw)
    if item_index is None:
        uniq_i, i_pos = np.unique(items_raw[~bad_qty], return_inverse=True)
        items = IdIndex(uniq_i)
        i_full = np.full(n, -1, np.int64)
        i_full[~bad_qty] = i_pos
    else:
        items = item_index
        i_full = items.index_of(items_raw)

    keep = ~bad_qty & (u_full >= 0) & (i_full >= 0)
    n_users, n_items, n_cols = len(users), len(items), max(len(column_kinds), 1)
    u, i, c, q = u_full[keep], i_full[keep], kind_col[keep], signed_qty[keep]

    # Sum quantities per (cell, kind) via a flat key, then damp and weight each (cell, kind).
    key = (u * n_items + i) * n_cols + c
    uniq_key, inv = np.unique(key, return_inverse=True)
    summed = np.bincount(inv, weights=q, minlength=uniq_key.size)
    kind_weight = np.array([weights[k] for k in column_kinds] or [0.0])
    value = _damp(summed, quantity_damping) * kind_weight[uniq_key % n_cols]
    cell = uniq_key // n_cols

    matrix = coo_matrix(
        (value, (cell // max(n_items, 1), cell % max(n_items, 1))), shape=(n_users, n_items)
    ).tocsr()  # sums the kinds of each cell
    matrix.data[matrix.data <= 0] = 0.0
    matrix.eliminate_zeros()
    matrix.sort_indices()
    return matrix.astype(np.float32), users, items
