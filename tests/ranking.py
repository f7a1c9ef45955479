"""Compare two rankings of the same items computed by different code paths, up to near-ties.

A matrix-matrix product (a batch) and a matrix-vector product (one user) round differently, and which of two
items whose scores differ in the last bits wins depends on the CPU and the BLAS build. Two rankings agree
when their scores agree within a tolerance position by position, and their ids agree except for items whose
scores are within that tolerance of each other (a tie group may come in any order, and at the cut-off an item
may be replaced by another of the same score).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def tie_groups(scores: np.ndarray, atol: float, rtol: float) -> list[slice]:
    """Runs of consecutive positions whose neighbouring scores are within the tolerance of each other."""
    scores = np.asarray(scores, dtype=np.float64)
    groups: list[slice] = []
    start = 0
    for k in range(1, scores.size + 1):
        if k == scores.size or not np.isclose(scores[k - 1], scores[k], rtol=rtol, atol=atol):
            groups.append(slice(start, k))
            start = k
    return groups


def assert_same_ranking(
    ids_a: Sequence[int] | np.ndarray,
    scores_a: Sequence[float] | np.ndarray,
    ids_b: Sequence[int] | np.ndarray,
    scores_b: Sequence[float] | np.ndarray,
    *,
    rtol: float = 1e-5,
    atol: float = 1e-6,
) -> None:
    """Fail unless the two rankings are the same up to the order of near-tied items.

    Exact about everything else: the same length, the same scores within the tolerance at every position,
    the same set of ids in every tie group, and at the cut-off (the last tie group, which may continue past
    the end of the list) the same number of ids, every one of which scores within the tolerance.
    """
    a, b = np.asarray(ids_a), np.asarray(ids_b)
    sa, sb = np.asarray(scores_a, dtype=np.float64), np.asarray(scores_b, dtype=np.float64)
    assert a.shape == b.shape == sa.shape == sb.shape, f"lengths differ: {a.shape} {b.shape}"
    np.testing.assert_allclose(sa, sb, rtol=rtol, atol=atol)
    assert len(set(a.tolist())) == a.size and len(set(b.tolist())) == b.size, "an id appears twice"
    groups = tie_groups(np.maximum(sa, sb), atol=atol, rtol=rtol)
    for g in groups[:-1]:
        assert set(a[g].tolist()) == set(b[g].tolist()), (
            f"positions {g.start}-{g.stop - 1} differ beyond near-ties: {a.tolist()} vs {b.tolist()}"
        )
    # The last group touches the cut-off: an item tied with the last kept one may stand in for it, so only
    # its scores (checked above) and its size must agree.
