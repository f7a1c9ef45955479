"""Offline evaluation: metrics on known answers, leak-free temporal splits, and the sample quality bar."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.sparse import csr_matrix

from domain.customers.sources import read_order_lines
from domain.errors import InvalidInput
from domain.serving.evaluation import evaluate_command, history_from_lines
from recommender.evaluation import (
    BASELINES,
    DEFAULT_MODEL,
    TIFU_KNN,
    Candidate,
    EvaluationResult,
    MatrixConfig,
    OrderHistory,
    evaluate,
    format_table,
    make_split,
    ranking_metrics,
    temporal_cut,
)
from tests.orders_files import three_customers_file

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "online_retail_sample.csv.gz"

# A deliberately small search space so the sample runs in seconds; the hybrid keeps its blend grid.
SMALL_GRIDS = {
    "als": [Candidate("als", {"factors": 32, "regularization": 0.1, "alpha": 2.0, "num_threads": 1})],
    "bpr": [Candidate("bpr", {"factors": 16, "learning_rate": 0.05, "iterations": 30})],
    "item_item": [Candidate("item_item", {"kind": "bm25", "K": 100, "num_threads": 1})],
    "hybrid": [
        Candidate(
            "hybrid",
            {"factors": 32, "regularization": 0.1, "alpha": 2.0, "num_threads": 1},
            MatrixConfig(365.0),
            {
                "next_purchases": [
                    {"repeat": True, "cf_weight": w, "popularity_weight": 0.5} for w in (0.3, 1.0)
                ],
                "discovery": [
                    {"repeat": False, "cf_weight": 1.0, "popularity_weight": p} for p in (0.2, 0.6)
                ],
            },
        )
    ],
}


def _history(rows: list[tuple[str, str, str, bool]]) -> OrderHistory:
    """(customer, sku, ISO time, is_return) rows, quantity 1."""
    return OrderHistory(
        user_ids=np.array([r[0] for r in rows]),
        item_ids=np.array([r[1] for r in rows]),
        quantities=np.ones(len(rows)),
        timestamps=np.array([r[2] for r in rows], dtype="datetime64[s]"),
        is_return=np.array([r[3] for r in rows]),
    )


@pytest.fixture(scope="module")
def sample_history() -> OrderHistory:
    return history_from_lines(read_order_lines(SAMPLE, "online-retail").lines)


@pytest.fixture(scope="module")
def sample_result(sample_history: OrderHistory) -> EvaluationResult:
    """One seeded run on the bundled sample, shared by the tests that only read it."""
    return evaluate(sample_history, grids=SMALL_GRIDS, test_days=30, k=10, seed=42)


# ------------------------------------------------------------------------------------------------ metrics
def test_ranking_metrics_match_hand_computed_values() -> None:
    # user 0: list [1, 5, 2], relevant {1, 2, 7} -> hits at ranks 1 and 3
    # user 1: list [4, -, -], relevant {0} plus one item outside the catalogue -> no hit
    recs = np.array([[1, 5, 2], [4, -1, -1]])
    relevant = csr_matrix(([1, 1, 1, 1], ([0, 0, 0, 1], [1, 2, 7, 0])), shape=(2, 10))
    m = ranking_metrics(recs, relevant, k=3, n_items=10, n_relevant=np.array([3, 2]))

    ndcg0 = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3) + 1 / math.log2(4))
    assert m.recall == pytest.approx((2 / 3 + 0) / 2)
    assert m.precision == pytest.approx((2 / 3 + 0) / 2)
    assert m.ndcg == pytest.approx(ndcg0 / 2)
    assert m.map == pytest.approx(((1 / 1 + 2 / 3) / 3) / 2)
    assert m.hit_rate == pytest.approx(0.5)
    assert m.coverage == pytest.approx(4 / 10)  # items 1, 5, 2, 4
    assert m.customers == 2


def test_recall_is_normalised_by_k_when_more_items_are_relevant() -> None:
    relevant = csr_matrix(np.ones((1, 20)))
    m = ranking_metrics(np.array([[0, 1, 2]]), relevant, k=3, n_items=20)
    assert m.recall == pytest.approx(1.0)
    assert m.ndcg == pytest.approx(1.0)
    assert m.map == pytest.approx(1.0)
    assert m.precision == pytest.approx(1.0)


def test_only_the_first_k_recommendations_count() -> None:
    relevant = csr_matrix(([1], ([0], [3])), shape=(1, 5))
    m = ranking_metrics(np.array([[0, 1, 3]]), relevant, k=2, n_items=5)
    assert m.recall == 0.0 and m.hit_rate == 0.0
    assert m.coverage == pytest.approx(2 / 5)


# ------------------------------------------------------------------------------------------------- split
def test_cut_is_midnight_of_the_last_day_minus_the_test_days() -> None:
    ts = np.array(["2011-12-01T08:00", "2011-12-09T12:50"], dtype="datetime64[s]")
    assert temporal_cut(ts, 30) == np.datetime64("2011-11-09T00:00:00")


def test_truth_of_both_tasks() -> None:
    h = _history(
        [
            ("a", "x", "2011-01-01T10:00", False),
            ("a", "w", "2011-01-02T10:00", False),
            ("a", "w", "2011-01-03T10:00", True),  # returned, still "bought before"
            ("b", "x", "2011-01-02T10:00", False),
            ("a", "x", "2011-02-01T10:00", False),  # repeat
            ("a", "y", "2011-02-02T10:00", False),  # new to a
            ("a", "w", "2011-02-02T10:00", False),  # bought (and returned) before: not discovery
            ("a", "z", "2011-02-03T10:00", False),  # not in the catalogue at the cut
            ("b", "x", "2011-02-03T10:00", False),  # only a repeat: not in discovery
            ("c", "y", "2011-02-03T10:00", False),  # no history before the cut: not evaluated
            ("", "q", "2011-02-03T10:00", False),  # guest: never ground truth
            ("b", "y", "2011-02-04T10:00", True),  # a return is not a purchase
        ]
    )
    split = make_split(h, np.datetime64("2011-02-01T00:00:00"))
    items, users = split.items, split.users
    assert sorted(items.ids.tolist()) == ["w", "x"]
    assert sorted(users.ids.tolist()) == ["a", "b"]

    nxt = split.truth["next_purchases"]
    assert users.id_of(nxt.user_idxs).tolist() == ["a", "b"]
    assert nxt.n_relevant.tolist() == [4, 1]  # a: x, y, w, z; b: x
    a_row = nxt.relevant[0].indices
    assert sorted(items.id_of(a_row).tolist()) == ["w", "x"]  # y and z are outside the catalogue

    disc = split.truth["discovery"]
    assert users.id_of(disc.user_idxs).tolist() == ["a"]
    assert disc.n_relevant.tolist() == [2]  # y, z
    assert disc.relevant.nnz == 0


def test_split_never_leaks_test_lines_into_training(sample_history: OrderHistory) -> None:
    cut = temporal_cut(sample_history.timestamps, 30)
    split = make_split(sample_history, cut)
    assert split.train.timestamps.max() < cut
    assert len(split.train) == int((sample_history.timestamps < cut).sum())

    # Rewriting everything after the cut changes the truth but not one number the models learn from.
    h = sample_history
    after = h.timestamps >= cut
    rng = np.random.default_rng(0)
    scrambled = OrderHistory(
        h.user_ids,
        np.where(after, rng.permutation(h.item_ids), h.item_ids),
        np.where(after, 99.0, h.quantities),
        h.timestamps,
        h.is_return,
    )
    other = make_split(scrambled, cut)
    for config in (MatrixConfig(None), MatrixConfig(90.0), MatrixConfig(None, "log1p")):
        assert (split.matrix(config) != other.matrix(config)).nnz == 0
    assert np.array_equal(split.popularity(30.0), other.popularity(30.0))
    assert np.array_equal(split.items.ids, other.items.ids)
    assert (split.counts != other.counts).nnz == 0


def test_validation_window_lies_inside_the_training_period(sample_result: EvaluationResult) -> None:
    assert sample_result.validation_cut == sample_result.cut - np.timedelta64(30, "D")
    for task in ("next_purchases", "discovery"):
        assert set(sample_result.validation[task]) == set(SMALL_GRIDS)
        assert set(sample_result.chosen[task]) == set(SMALL_GRIDS)
    # The blend chosen for each task is the one that did best on validation, in the task's own mode.
    assert sample_result.chosen["next_purchases"]["hybrid"]["repeat"] is True
    assert sample_result.chosen["discovery"]["hybrid"]["repeat"] is False


# ---------------------------------------------------------------------------------------------- quality
def test_default_model_beats_popularity_on_the_sample(sample_result: EvaluationResult) -> None:
    result = sample_result
    assert result.default == DEFAULT_MODEL == "hybrid"
    for task in ("next_purchases", "discovery"):
        default, popularity = result.test[task][DEFAULT_MODEL], result.test[task]["popularity"]
        assert default.customers == popularity.customers > 100
        assert default.precision > popularity.precision, task
        assert default.recall > popularity.recall, task
        assert default.ndcg > popularity.ndcg, task
    # Repeats dominate next purchases: the default must not lose to the customer's own history.
    nxt = result.test["next_purchases"]
    assert nxt[DEFAULT_MODEL].recall >= nxt["personal_top_frequency"].recall


def test_result_json_shape(sample_result: EvaluationResult) -> None:
    out = sample_result.to_json("sample.csv.gz")
    assert set(out) == {"dataset", "cut", "k", "default", "served", "tasks", "intervals", "tuning", "notes"}
    # Without a served row the starred default model is compared with the best baseline.
    ci = out["intervals"]["next_purchases"]
    assert ci["baseline"] in BASELINES and ci["low"] <= ci["difference"] <= ci["high"]
    assert out["tuning"] is None and out["notes"] == []
    assert out["dataset"] == "sample.csv.gz" and out["k"] == 10 and out["default"] == "hybrid"
    assert out["served"] is None  # no served configuration was given
    assert out["cut"] == "2011-11-09 00:00:00"
    assert set(out["tasks"]) == {"next_purchases", "discovery"}
    assert set(out["tasks"]["next_purchases"]) == set(BASELINES) | set(SMALL_GRIDS)
    assert set(out["tasks"]["discovery"]) == (set(BASELINES) - {"personal_top_frequency", *TIFU_KNN}) | set(
        SMALL_GRIDS
    )
    keys = {"recall@10", "precision@10", "ndcg@10", "map@10", "hit_rate@10", "coverage@10", "customers"}
    for task in out["tasks"].values():
        for metrics in task.values():
            assert set(metrics) == keys
            assert all(0.0 <= metrics[k] <= 1.0 for k in keys - {"customers"})
    json.dumps(out)  # plain JSON types only
    table = format_table(sample_result, "sample.csv.gz")
    assert "hybrid *" in table and out["cut"] in table


def test_evaluate_command_reads_a_generic_file(tmp_path: Path) -> None:
    path = three_customers_file(tmp_path)
    grids = {"hybrid": [Candidate("hybrid", {"factors": 2, "num_threads": 1}, MatrixConfig(None), {})]}
    out = evaluate_command(path, "generic", 15, 2, True, grids=grids)
    assert isinstance(out, dict)
    assert out["cut"] == "2011-02-15 00:00:00" and out["k"] == 2
    nxt = out["tasks"]["next_purchases"]
    assert nxt["popularity"]["customers"] == 2  # a and b; c bought nothing after the cut
    # a bought x (own top) and y; b bought x (own top): personal top-frequency ranks x first for both.
    assert nxt["personal_top_frequency"]["hit_rate@2"] == 1.0
    assert nxt["personal_top_frequency"]["recall@2"] == pytest.approx((1.0 + 1.0) / 2)
    assert out["tasks"]["discovery"]["popularity"]["customers"] == 1  # only a found something new (y)
    assert isinstance(evaluate_command(path, "generic", 15, 2, False, grids=grids), str)


def test_evaluate_command_rejects_bad_arguments() -> None:
    with pytest.raises(InvalidInput) as exc:
        evaluate_command(SAMPLE, "online-retail", 0, 10, False)
    assert exc.value.field == "test_days"
    with pytest.raises(InvalidInput) as exc:
        evaluate_command(SAMPLE, "online-retail", 30, 0, False)
    assert exc.value.field == "k"


def test_dense_baselines_scored_in_blocks_give_the_lists_of_one_block(
    sample_history: OrderHistory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # issue 17: personal top-frequency and TIFU-KNN held dense scores of every customer over the whole
    # catalogue (about 5 GiB on The Complete Journey); in blocks of rows the lists must not change
    import recommender.evaluation as ev
    from recommender.tifuknn import PUBLISHED_PARAMS

    split = make_split(sample_history, temporal_cut(sample_history.timestamps, 30))
    params = PUBLISHED_PARAMS["tafeng"]
    monkeypatch.setattr(ev, "BLOCK_CELLS", 1 << 40)  # one block: every customer at once
    whole = (ev._personal_top_frequency_recs(split, 10), ev._tifu_knn_recs(split, 10, params))
    monkeypatch.setattr(ev, "BLOCK_CELLS", 7 * len(split.items))  # 7 customers a block
    blocked = (ev._personal_top_frequency_recs(split, 10), ev._tifu_knn_recs(split, 10, params))
    assert split.truth["next_purchases"].user_idxs.size > 7 * 3
    for a, b in zip(whole, blocked, strict=True):
        np.testing.assert_array_equal(a, b)
