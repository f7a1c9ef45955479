"""Interaction matrix building (weights, returns, decay, damping) and IdIndex."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from recommender.interactions import DEFAULT_WEIGHTS, IdIndex, build_user_items

NOW = np.datetime64("2011-12-09T12:00:00")


def _build(rows: list[tuple[object, object, str, float, str]], **kwargs: object):  # type: ignore[no-untyped-def]
    users, items, kinds, qty, ts = zip(*rows, strict=True)
    kwargs.setdefault("quantity_damping", "none")
    return build_user_items(
        np.array(users, dtype=object),
        np.array(items, dtype=object),
        np.array(kinds),
        np.array(qty, dtype=float),
        np.array(ts, dtype="datetime64[s]"),
        **kwargs,  # type: ignore[arg-type]
    )


def _cell(matrix, users: IdIndex, items: IdIndex, u: object, i: object) -> float:  # type: ignore[no-untyped-def]
    return float(matrix[users.index_of([u])[0], items.index_of([i])[0]])


def test_kinds_are_weighted_purchase_over_cart_over_click_over_view() -> None:
    t = "2011-12-01"
    m, users, items = _build(
        [
            ("a", "p", "purchase", 1, t),
            ("a", "c", "cart", 1, t),
            ("a", "k", "click", 1, t),
            ("a", "v", "view", 1, t),
        ]
    )
    values = [_cell(m, users, items, "a", i) for i in ("p", "c", "k", "v")]
    assert values == pytest.approx([DEFAULT_WEIGHTS[k] for k in ("purchase", "cart", "click", "view")])
    assert values == sorted(values, reverse=True)
    assert m.dtype == np.float32 and m.shape == (1, 4)


def test_kinds_of_one_cell_add_up_and_custom_weights_apply() -> None:
    t = "2011-12-01"
    m, users, items = _build(
        [("a", "x", "view", 1, t), ("a", "x", "view", 1, t), ("a", "x", "purchase", 1, t)],
        weights={"purchase": 2.0, "view": 0.5},
    )
    assert _cell(m, users, items, "a", "x") == pytest.approx(2.0 + 2 * 0.5)


def test_full_return_drops_the_cell_and_partial_return_reduces_it() -> None:
    t = "2011-12-01"
    m, users, items = _build(
        [
            ("a", "x", "purchase", 2, t),
            ("a", "x", "return", 2, t),
            ("a", "y", "purchase", 3, t),
            ("a", "y", "return", 1, t),
            ("b", "x", "purchase", 1, t),
        ]
    )
    assert _cell(m, users, items, "a", "x") == 0
    assert m.nnz == 2, "the fully returned cell is not stored"
    assert _cell(m, users, items, "a", "y") == pytest.approx(2.0)
    assert _cell(m, users, items, "b", "x") == pytest.approx(1.0)


def test_return_with_damping_subtracts_the_returned_quantity_before_damping() -> None:
    t = "2011-12-01"
    # Two separate orders of one unit, then both returned: nothing is left even with log damping.
    m, users, items = _build(
        [("a", "x", "purchase", 1, t), ("a", "x", "purchase", 1, t), ("a", "x", "return", 2, t)],
        quantity_damping="log1p",
    )
    assert m.nnz == 0


def test_return_without_a_purchase_is_dropped_but_views_survive_a_partial_return() -> None:
    t = "2011-12-01"
    m, users, items = _build(
        [
            ("a", "x", "return", 1, t),
            ("a", "y", "view", 1, t),
            ("a", "y", "purchase", 2, t),
            ("a", "y", "return", 1, t),
        ]
    )
    assert _cell(m, users, items, "a", "x") == 0
    assert _cell(m, users, items, "a", "y") == pytest.approx(1.0 + 0.1)


@pytest.mark.parametrize(
    ("damping", "expected"), [("none", 3.0), ("log1p", float(np.log1p(3))), ("sqrt", float(np.sqrt(3)))]
)
def test_quantity_damping_applies_to_the_summed_quantity(damping: str, expected: float) -> None:
    t = "2011-12-01"
    m, users, items = _build(
        [("a", "x", "purchase", 1, t), ("a", "x", "purchase", 2, t)], quantity_damping=damping
    )
    assert _cell(m, users, items, "a", "x") == pytest.approx(expected, rel=1e-6)


def test_half_life_decay_halves_weight_per_half_life() -> None:
    m, users, items = _build(
        [
            ("a", "new", "purchase", 1, "2011-12-09T12:00:00"),
            ("a", "old", "purchase", 1, "2011-11-29T12:00:00"),
            ("a", "older", "purchase", 1, "2011-11-19T12:00:00"),
        ],
        half_life_days=10.0,
        now=NOW,
    )
    got = [_cell(m, users, items, "a", i) for i in ("new", "old", "older")]
    assert got == pytest.approx([1.0, 0.5, 0.25], rel=1e-6)


def test_decay_accepts_an_aware_datetime_and_defaults_to_the_latest_timestamp() -> None:
    rows = [
        ("a", "x", "purchase", 1, "2011-12-09T12:00:00"),
        ("a", "y", "purchase", 1, "2011-12-04T12:00:00"),
    ]
    aware = dt.datetime(2011, 12, 9, 13, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    m1, u1, i1 = _build(rows, half_life_days=5.0, now=aware)
    m2, u2, i2 = _build(rows, half_life_days=5.0)
    assert _cell(m1, u1, i1, "a", "y") == pytest.approx(0.5, rel=1e-6)
    assert _cell(m2, u2, i2, "a", "y") == pytest.approx(0.5, rel=1e-6)


def test_future_interactions_warn_and_count_as_current() -> None:
    with pytest.warns(UserWarning, match="later than"):
        m, users, items = _build([("a", "x", "purchase", 1, "2011-12-20")], half_life_days=10.0, now=NOW)
    assert _cell(m, users, items, "a", "x") == pytest.approx(1.0)


def test_non_positive_quantities_are_dropped_with_a_warning() -> None:
    t = "2011-12-01"
    with pytest.warns(UserWarning, match="2 interactions"):
        m, users, items = _build(
            [
                ("a", "x", "purchase", 0, t),
                ("b", "y", "purchase", float("nan"), t),
                ("c", "z", "purchase", 1, t),
            ]
        )
    assert list(users.ids) == ["c"] and list(items.ids) == ["z"] and m.nnz == 1


def test_unknown_kind_mismatched_lengths_and_bad_settings_are_errors() -> None:
    t = "2011-12-01"
    with pytest.raises(ValueError, match="unknown interaction kinds"):
        _build([("a", "x", "wishlist", 1, t)])
    with pytest.raises(ValueError, match="differ in length"):
        build_user_items(np.array(["a"]), np.array(["x", "y"]), np.array(["view"]), np.ones(1), np.array([t]))
    with pytest.raises(ValueError, match="must be a finite number"):
        _build([("a", "x", "view", 1, t)], weights={"view": -1.0})
    with pytest.raises(ValueError, match="quantity_damping"):
        _build([("a", "x", "view", 1, t)], quantity_damping="cube")
    with pytest.raises(ValueError, match="half_life_days"):
        _build([("a", "x", "view", 1, t)], half_life_days=0.0)


def test_given_indexes_fix_positions_and_drop_unknown_ids() -> None:
    t = "2011-12-01"
    users = IdIndex(np.array([30, 10, 20]))
    items = IdIndex(np.array(["B", "A"]))
    m, u, i = _build(
        [
            (10, "A", "purchase", 1, t),
            (99, "A", "purchase", 1, t),
            (20, "Z", "purchase", 1, t),
            (30, "B", "view", 1, t),
        ],
        user_index=users,
        item_index=items,
    )
    assert u is users and i is items
    assert m.shape == (3, 2)
    assert m[1, 1] == pytest.approx(1.0) and m[0, 0] == pytest.approx(0.1) and m.nnz == 2


def test_vectorised_build_matches_a_plain_loop_reference() -> None:
    rng = np.random.default_rng(0)
    n = 5000
    user_ids = rng.integers(0, 300, n)
    item_ids = rng.integers(0, 200, n).astype(str)
    kinds = rng.choice(["purchase", "cart", "click", "view", "return"], n)
    qty = rng.integers(1, 4, n).astype(float)
    ts = np.datetime64("2011-01-01", "s") + rng.integers(0, 365 * 86400, n).astype("timedelta64[s]")
    m, users, items = build_user_items(user_ids, item_ids, kinds, qty, ts, half_life_days=90.0)
    assert m.has_canonical_format and (m.data > 0).all()
    assert m.shape == (len(users), len(items))
    assert np.all(users.ids[:-1] < users.ids[1:]), "built indexes are sorted"

    now = ts.max()
    per_kind: dict[tuple[int, str, str], float] = {}
    for u, i, k, q, t in zip(user_ids.tolist(), item_ids.tolist(), kinds.tolist(), qty, ts, strict=True):
        decay = 0.5 ** (((now - t) / np.timedelta64(1, "s")) / 86400 / 90.0)
        column, sign = ("purchase", -1.0) if k == "return" else (k, 1.0)
        per_kind[(u, i, column)] = per_kind.get((u, i, column), 0.0) + sign * q * decay
    expected: dict[tuple[int, str], float] = {}
    for (u, i, column), q in per_kind.items():
        expected[(u, i)] = expected.get((u, i), 0.0) + np.sign(q) * np.log1p(abs(q)) * DEFAULT_WEIGHTS[column]
    expected = {key: v for key, v in expected.items() if v > 0}

    coo = m.tocoo()
    got = {
        (int(users.ids[r]), str(items.ids[c])): float(v)
        for r, c, v in zip(coo.row, coo.col, coo.data, strict=True)
    }
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-6)


class TestIdIndex:
    def test_index_of_is_vectorised_and_unknown_is_minus_one(self) -> None:
        index = IdIndex(np.array(["b", "a", "c"], dtype=object))
        assert index.index_of(["c", "a", "zz", "b"]).tolist() == [2, 1, -1, 0]
        assert index.index_of("a").tolist() == [1]
        assert "b" in index and "q" not in index
        assert index.id_of([0, 2]).tolist() == ["b", "c"]
        with pytest.raises(IndexError):
            index.id_of([3])

    def test_integer_index_accepts_numeric_strings(self) -> None:
        index = IdIndex(np.array([17850, 12583, 13047]))
        assert index.index_of(np.array(["12583", "x", "-5", "17850"])).tolist() == [1, -1, -1, 0]
        assert index.index_of(np.array([13047, 1])).tolist() == [2, -1]

    def test_duplicates_and_float_ids_are_rejected(self) -> None:
        with pytest.raises(ValueError, match="unique"):
            IdIndex(np.array([1, 2, 1]))
        with pytest.raises(TypeError, match="floats"):
            IdIndex(np.array([1.0, 2.0]))

    def test_extend_keeps_existing_positions(self) -> None:
        index = IdIndex(np.array(["x", "y"]))
        bigger = index.extend(np.array(["z", "y", "a", "z"]))
        assert bigger.ids.tolist() == ["x", "y", "z", "a"]
        assert bigger.index_of(["x", "y"]).tolist() == [0, 1]

    def test_save_load_round_trip(self, tmp_path: Path) -> None:
        for ids in (np.array(["β", "a", "long-sku-85123A"]), np.array([5, 3, 9])):
            index = IdIndex(ids)
            index.save(tmp_path / "ids.npz")
            again = IdIndex.load(tmp_path / "ids.npz")
            assert again == index and again.ids.dtype.kind == index.ids.dtype.kind

    def test_empty_index(self) -> None:
        index = IdIndex(np.array([], dtype=np.int64))
        assert len(index) == 0 and index.index_of([1, 2]).tolist() == [-1, -1]
