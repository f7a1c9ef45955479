"""One truth for what is served: `giftrec evaluate`'s served row fits what `giftrec train` fits."""

# ruff: noqa: F811  (pytest fixtures imported from tests.domain.serving.fixtures are redefined as arguments)

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from config import Settings
from domain.customers.confidence import build_matrix
from domain.customers.interactions import load_interactions
from domain.customers.sources import read_order_lines
from domain.errors import InvalidInput
from domain.models import Customer, Order, OrderLine, Product
from domain.serving.evaluation import (
    evaluate_command,
    fit_served_on,
    history_from_lines,
    served_lists,
    training_rows,
)
from domain.serving.model_runs import load_run_artifact
from domain.serving.recommendations import Serving, recommend_for_customer
from domain.serving.served import discovery_model
from domain.serving.training import train_model
from recommender.evaluation import (
    SERVED,
    Candidate,
    MatrixConfig,
    evaluate,
    make_split,
    ranking_metrics,
    temporal_cut,
)
from recommender.interactions import IdIndex
from recommender.next_basket import RANKER_PARAMS
from tests.domain.serving.fixtures import (  # noqa: F401
    clock,
    imported,
    imported_rows,
    sample_slice,
    serving,
    settings,
)
from tests.orders_files import three_customers_file


def test_evaluation_serves_the_model_and_matrix_training_fits(
    sessions: sessionmaker[Session], settings: Settings, imported: None, sample_slice: Path
) -> None:
    with sessions.begin() as session:
        run = train_model(session, settings)
        assert run.status == "succeeded", run.error
        rows = load_interactions(session)
        trained, users, items = build_matrix(
            rows, settings.interactions, now=dt.datetime.fromisoformat(run.params["anchor"])
        )
        external = dict(session.execute(select(Customer.id, Customer.external_id)).all())
        skus = dict(session.execute(select(Product.id, Product.sku)).all())
        artifact = load_run_artifact(session, settings, run)
    assert artifact.user_index == users and artifact.item_index == items

    # The same file, read as `giftrec evaluate` reads it, with the cut after its last line.
    history = history_from_lines(read_order_lines(sample_slice, "online-retail").lines)
    cut = dt.datetime.fromisoformat(str(history.timestamps.max())) + dt.timedelta(days=1)
    served = fit_served_on(history, cut, settings)
    _, _, customers, products = training_rows(history)

    # Same model, same discovery blend, same decay anchor.
    assert served.model.params == run.params["model"] == artifact.model.params
    assert served.discovery.params == discovery_model(artifact.model, settings).params
    assert served.anchor.isoformat() == run.params["anchor"]

    # Same matrix, cell for cell, once rows and columns are matched by customer id and SKU.
    assert (
        served.user_items.shape == (run.n_users, run.n_items) and served.user_items.nnz == run.n_interactions
    )
    train_ids = IdIndex(np.array([external[int(c)] for c in users.ids]))
    train_skus = IdIndex(np.array([skus[int(p)] for p in items.ids]))
    row_at = train_ids.index_of(customers.id_of(served.users.ids))
    col_at = train_skus.index_of(products.id_of(served.items.ids))
    assert (row_at >= 0).all() and (col_at >= 0).all()
    aligned = trained[row_at][:, col_at]
    assert abs(aligned - served.user_items).max() < 1e-6

    # Same recent-bestsellers prior.
    trained_pop = artifact.model.popularity  # type: ignore[attr-defined]
    np.testing.assert_allclose(served.model.popularity[...], trained_pop[col_at])  # type: ignore[attr-defined]


def test_evaluate_reports_the_served_configuration(tmp_path: Path, settings: Settings) -> None:
    path = three_customers_file(tmp_path)
    grids = {"hybrid": [Candidate("hybrid", {"factors": 2, "num_threads": 1}, MatrixConfig(None), {})]}
    out = evaluate_command(path, "generic", 15, 2, True, grids=grids, settings=settings)
    assert isinstance(out, dict)
    assert out["default"] == SERVED
    # next purchases are the endpoint's ranking (the learned ranker and its settings)
    assert out["served"]["next_purchases"] == {"ranker": "next_basket", **RANKER_PARAMS}
    assert out["served"]["discovery"]["repeat"] is False
    assert out["served"]["discovery"]["interactions"]["half_life_days"] == 365.0
    nxt = out["tasks"]["next_purchases"][SERVED]
    # a and b each bought x before the cut and again after it: their own items, x comes first.
    assert nxt["customers"] == 2 and nxt["hit_rate@2"] == 1.0
    # a's only new item is y, the one other item sold before the cut: the served discovery list has it.
    assert out["tasks"]["discovery"][SERVED]["hit_rate@2"] == 1.0
    table = evaluate_command(path, "generic", 15, 2, False, grids=grids, settings=settings)
    assert f"{SERVED} *" in str(table)


def test_giftrec_evaluate_prints_the_served_row(tmp_path: Path, runner) -> None:  # type: ignore[no-untyped-def]
    from api.cli import cli

    args = [
        "evaluate",
        "--data",
        str(three_customers_file(tmp_path)),
        "--format",
        "generic",
        "--test-days",
        "15",
    ]
    result = runner.invoke(cli, [*args, "--k", "2"])
    assert result.exit_code == 0, result.output
    assert f"{SERVED} *" in result.output


def test_evaluate_can_train_the_served_row_with_simulated_rejections(
    tmp_path: Path, settings: Settings
) -> None:
    path = three_customers_file(tmp_path)
    grids = {"hybrid": [Candidate("hybrid", {"factors": 2, "num_threads": 1}, MatrixConfig(None), {})]}
    messages: list[str] = []
    out = evaluate_command(
        path,
        "generic",
        15,
        2,
        True,
        grids=grids,
        settings=settings,
        reject_share=1.0,
        progress=messages.append,
    )
    assert isinstance(out, dict)
    # only "a" has a product left to be shown before the cut (y); with share 1 it is removed
    assert out["served"]["discovery"]["simulated_rejections"] == 1
    assert "simulated 1 rejections for 1 of 3 customers" in messages
    plain = evaluate_command(path, "generic", 15, 2, True, grids=grids, settings=settings)
    assert isinstance(plain, dict) and plain["served"]["discovery"]["simulated_rejections"] == 0
    for share, per, field in ((1.5, 1, "simulate_rejections"), (0.1, 0, "rejections_per_customer")):
        with pytest.raises(InvalidInput) as err:
            evaluate_command(path, "generic", 15, 2, True, settings=settings, reject_share=share,
                             reject_per_customer=per)  # fmt: skip
        assert err.value.field == field


@pytest.mark.parametrize("tune", [False, True], ids=["train", "train --tune"])
def test_evaluated_served_figures_equal_those_of_the_model_train_saved(
    sessions: sessionmaker[Session],
    settings: Settings,
    imported: None,
    sample_slice: Path,
    serving: Serving,
    tune: bool,
) -> None:
    """Regression: evaluate's served row was not what the saved model serves. It filled the lists with its
    own copy of serving's fill order, and its fit differed from training's: customers numbered by id
    rather than as the import numbers them, and lines dated each on its own rather than at their order's
    time (ALS's start depends on the row order, and a 1e-6 difference in the matrix moved its factors).
    With `tune`, `evaluate --tune`'s served row is the model `train --tune` saved (issue 17's test)."""
    if tune:  # the slice has fewer buyers in its validation window than the default minimum
        settings = dataclasses.replace(
            settings, model=dataclasses.replace(settings.model, tune_min_customers=5)
        )
    history = history_from_lines(read_order_lines(sample_slice, "online-retail").lines)
    k, test_days = 10, 30
    cut_np = temporal_cut(history.timestamps, test_days)
    cut = cut_np.astype("datetime64[s]").item()
    # The database as it was at the cut: later orders gone, products first sold later not on sale.
    with sessions.begin() as session:
        later = select(Order.id).where(Order.ordered_at >= cut)
        session.execute(delete(OrderLine).where(OrderLine.order_id.in_(later)))
        session.execute(delete(Order).where(Order.ordered_at >= cut))
        sold = select(OrderLine.product_id)
        session.execute(update(Product).where(Product.id.not_in(sold)).values(is_active=False))
        run = train_model(session, settings, now=cut, tune=tune)
        assert run.status == "succeeded", run.error
        assert run.params["served"]["source"] == ("tuned" if tune else "settings")

    grids = {"hybrid": [Candidate("hybrid", {"factors": 2, "iterations": 2, "num_threads": 1})]}
    served = served_lists(settings, tune=tune)
    result = evaluate(history, test_days=test_days, k=k, grids=grids, served=served)
    if tune:  # the same choice on the same window
        assert result.tuning is not None and result.tuning["status"] == "tuned"
        assert result.tuning["tasks"] == run.metrics["tuning"]["tasks"]
    split = make_split(history, cut_np)
    # Discovery here; next purchases are the endpoint's ranking, compared list for list in
    # test_next_purchase.py::test_the_endpoint_ranks_as_evaluate_measures.
    for task in ("discovery",):
        truth = split.truth[task]
        lists = np.full((truth.user_idxs.size, k), -1, dtype=np.int64)
        for r, u in enumerate(truth.user_idxs.tolist()):
            shown = recommend_for_customer(serving, str(split.users.ids[u]), k)
            lists[r, : len(shown)] = split.items.index_of(np.array([item.sku for item in shown]))
        assert (lists >= 0).all()  # every shown product was sold before the cut: in the split's catalogue
        loaded = ranking_metrics(lists, truth.relevant, k, len(split.items), truth.n_relevant)
        assert loaded.customers > 0
        assert result.test[task][SERVED] == loaded, task


def test_evaluate_gives_the_served_rows_difference_to_the_best_baseline_with_its_interval(
    tmp_path: Path, settings: Settings
) -> None:
    path = three_customers_file(tmp_path)
    grids = {"hybrid": [Candidate("hybrid", {"factors": 2, "num_threads": 1}, MatrixConfig(None), {})]}
    out = evaluate_command(path, "generic", 15, 2, True, grids=grids, settings=settings, tune=True)
    assert isinstance(out, dict)
    ci = out["intervals"]["next_purchases"]
    rows = out["tasks"]["next_purchases"]
    assert ci["baseline"] in ("popularity", "personal_top_frequency", "item_knn")
    assert ci["difference"] == pytest.approx(rows[SERVED]["recall@2"] - rows[ci["baseline"]]["recall@2"])
    assert ci["low"] <= ci["difference"] <= ci["high"] and ci["customers"] == 2
    # Three customers cannot validate anything: the served blends are the configured ones, and it says so.
    assert out["tuning"]["status"] == "default"
    assert any("safe default" in note for note in out["notes"])
    table = evaluate_command(path, "generic", 15, 2, False, grids=grids, settings=settings, tune=True)
    assert "best baseline" in str(table) and "paired bootstrap" in str(table)
