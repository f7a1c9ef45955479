"""Negative feedback: picks an account manager rejected, subtracted from the confidence matrix.

Pure numpy/scipy. A rejection (a removed or replaced pick) of item i for user u takes ``weight`` (decayed
like every interaction) off the cell (u, i): a cell the user bought keeps what is left; a cell that ends
below zero becomes negative, which models that accept negative feedback (ALS, the hybrid: see
`recommender.collaborative.ALSRecommender`) read as "not wanted" with more confidence than an empty
cell. The matrix for everything else (serving's rows, the repeat term, other models) is the positive
part. :func:`simulate_rejections` draws rejections for offline evaluation, where data has no manager edits.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
from scipy.sparse import coo_matrix, csr_matrix

from recommender.triggers import unit_hash

__all__ = ["positive_part", "rejection_amounts", "simulate_rejections", "subtract_rejections"]


def rejection_amounts(
    timestamps: np.ndarray, weight: float, *, half_life_days: float | None, now: dt.datetime | np.datetime64
) -> np.ndarray:
    """What each rejection takes off its cell: ``weight * 0.5 ** (age / half_life_days)``.

    Parameters
    ----------
    timestamps : ndarray of datetime64, shape (n,)
        When each rejection was made; one later than `now` counts as current.
    weight : float
        Weight of one rejection, in the matrix's units (1 = one purchase); >= 0.
    half_life_days : float or None
        The interactions' half-life; None = no decay.
    now : datetime or datetime64

    Returns
    -------
    ndarray float64, shape (n,)
    """
    if not np.isfinite(weight) or weight < 0:
        raise ValueError(f"weight must be a finite number >= 0, got {weight!r}")
    ts = np.asarray(timestamps, dtype="datetime64[s]").reshape(-1)
    out = np.full(ts.size, float(weight))
    if half_life_days and ts.size:
        ref = np.asarray([now], dtype="datetime64[s]")[0]
        age = (ref - ts).astype(np.float64) / 86400.0
        out *= np.exp2(-np.maximum(age, 0.0) / half_life_days)
    return out


def subtract_rejections(
    user_items: csr_matrix, user_idx: np.ndarray, item_idx: np.ndarray, amounts: np.ndarray
) -> csr_matrix:
    """The matrix with each rejection's amount taken off its cell (cells may become negative).

    Parameters
    ----------
    user_items : csr_matrix, shape (n_users, n_items)
        Users are rows; non-negative confidences.
    user_idx, item_idx : ndarray of int, shape (n,)
        Matrix positions of each rejection; entries < 0 (not in the matrix) are ignored.
    amounts : ndarray of float, shape (n,)
        What each rejection takes off (:func:`rejection_amounts`); several on one cell add up.

    Returns
    -------
    csr_matrix float32, shape (n_users, n_items), canonical, no explicit zeros.
    """
    u = np.asarray(user_idx, dtype=np.int64).reshape(-1)
    i = np.asarray(item_idx, dtype=np.int64).reshape(-1)
    a = np.asarray(amounts, dtype=np.float64).reshape(-1)
    if not (u.size == i.size == a.size):
        raise ValueError(f"rejection arrays differ in length: {u.size}, {i.size}, {a.size}")
    n_users, n_items = user_items.shape
    keep = (u >= 0) & (u < n_users) & (i >= 0) & (i < n_items) & (a > 0)
    if not keep.any():
        return csr_matrix(user_items, dtype=np.float32, copy=True)
    minus = coo_matrix((-a[keep], (u[keep], i[keep])), shape=user_items.shape).tocsr()
    out = (csr_matrix(user_items, dtype=np.float64) + minus).tocsr()
    out.data[np.abs(out.data) < 1e-9] = 0
    out.eliminate_zeros()
    out.sort_indices()
    return out.astype(np.float32)


def positive_part(user_items: csr_matrix) -> csr_matrix:
    """The matrix with negative cells dropped: what serving and models without negative feedback see."""
    out = csr_matrix(user_items, dtype=np.float32, copy=True)
    out.data[out.data < 0] = 0
    out.eliminate_zeros()
    return out


def simulate_rejections(
    picks: np.ndarray, user_keys: np.ndarray, *, share: float, per_user: int = 1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic stand-in for manager edits, for data that has none.

    A `share` of users (by a hash of their key and `seed`, the same on every machine) had a selection
    reviewed; in it the manager removed `per_user` of the picks shown, chosen by hash too: edits that carry
    no information about what the user will buy, the case where negative feedback could only hurt.

    Parameters
    ----------
    picks : ndarray of int, shape (n_users, k)
        The picks each user was shown (item positions, -1 = none), e.g. a model's top k.
    user_keys : ndarray, shape (n_users,)
        A stable key per row (the shop's customer id).
    share : float
        In [0, 1].
    per_user, seed : int

    Returns
    -------
    (user rows, item positions), each int64 of shape (n_rejections,)
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be in [0, 1], got {share!r}")
    rows: list[int] = []
    items: list[int] = []
    for r, key in enumerate(np.asarray(user_keys).tolist()):
        if unit_hash(key, "reviewed", seed) >= share:
            continue
        shown = [int(i) for i in picks[r].tolist() if i >= 0]
        shown.sort(key=lambda i: unit_hash(key, i, "removed", seed))
        for i in shown[:per_user]:
            rows.append(r)
            items.append(i)
    return np.array(rows, dtype=np.int64), np.array(items, dtype=np.int64)
