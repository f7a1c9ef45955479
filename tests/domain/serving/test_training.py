"""Training from the database: the ModelRun, the artifact on disk, staleness, pruning, rollback, the CLI."""

# ruff: noqa: F811  (pytest fixtures imported from tests.domain.serving.fixtures are redefined as arguments)

from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from api.cli import cli
from config import Settings
from domain.customers.confidence import build_matrix
from domain.customers.interactions import load_interactions
from domain.errors import Conflict, NotFound
from domain.models import AuditLog, ModelArtifactChunk, ModelRun, Order
from domain.origin import SIMULATED
from domain.serving.model_runs import load_newest_usable
from domain.serving.training import (
    is_stale,
    list_runs,
    promote,
    prune_artifacts,
    rollback,
    serving_run,
    train_model,
    unpin,
)
from tests.domain.serving.fixtures import (  # noqa: F401
    FakeClock,
    add_order,
    clock,
    imported,
    imported_rows,
    sample_slice,
    serving,
    settings,
    stored_artifact,
)


def _train(sessions: sessionmaker[Session], settings: Settings, **kw: object) -> ModelRun:
    """Train and commit, then prune (as the job and the CLI do)."""
    with sessions.begin() as session:
        run = train_model(session, settings, **kw)  # type: ignore[arg-type]
    with sessions.begin() as session:
        prune_artifacts(session, settings)
    return run


def test_training_records_a_succeeded_run_with_its_artifact(sessions, settings, imported):
    run = _train(sessions, settings)
    assert run.status == "succeeded", run.error
    assert run.algorithm == "hybrid"
    with sessions() as session:
        stored = session.scalars(select(ModelRun)).one()
        customers_with_orders = session.scalar(
            select(func.count(func.distinct(Order.customer_id))).where(Order.customer_id.is_not(None))
        )
    assert stored.version == run.version and stored.finished_at is not None
    assert 0 < stored.n_users <= customers_with_orders
    assert stored.n_items > 100 and stored.n_interactions > stored.n_users
    with sessions() as session:
        newest = session.scalar(select(func.max(Order.ordered_at)).where(Order.customer_id.is_not(None)))
    assert stored.data_until == newest
    assert stored.params["model"]["factors"] == 8
    assert stored.params["watermark"]["order_id"] > 0
    assert stored.metrics["fit_seconds"] >= 0
    assert stored.artifact_path == f"database:{run.version}"
    assert not Path(settings.model.artifact_dir).exists(), "nothing of it on this host's disk"
    artifact = stored_artifact(sessions, settings, stored)
    assert artifact.model.n_items == stored.n_items
    assert len(artifact.user_index) == stored.n_users


def test_the_model_sees_purchases_net_of_returns(sessions, settings, imported):
    with sessions() as session:
        rows = load_interactions(session)
    assert set(rows.kinds.tolist()) == {"purchase", "return"}  # the sample has orders only, no events
    user_items, users, items = build_matrix(rows, settings.interactions)
    net: dict[tuple[int, int], float] = {}
    for c, p, kind, q in zip(rows.customer_ids, rows.product_ids, rows.kinds, rows.quantities, strict=True):
        net[(int(c), int(p))] = net.get((int(c), int(p)), 0.0) + (-q if kind == "return" else q)
    cancelled = [cell for cell, q in net.items() if q <= 0]
    assert cancelled, "the slice has returns that cancel a purchase"
    for cells, present in ((cancelled, False), ([c for c, q in net.items() if q > 0][:200], True)):
        for c, p in cells:
            row, col = int(users.index_of(c)[0]), int(items.index_of(p)[0])
            # A product or customer seen only in returns has no position at all: absent, not column -1.
            value = user_items[row, col] if row >= 0 and col >= 0 else 0.0
            assert bool(value > 0) == present, (c, p)


def test_training_on_an_empty_database_records_a_failed_run(sessions, settings):
    run = _train(sessions, settings)
    assert run.status == "failed"
    assert "no interactions" in (run.error or "")
    with sessions() as session:
        assert session.scalars(select(ModelRun.status)).one() == "failed"
        assert serving_run(session) is None


@pytest.mark.parametrize("algorithm", ["als", "bpr", "item_bm25", "popularity"])
def test_every_configured_algorithm_trains(sessions, settings, imported, algorithm):
    configured = replace(settings, model=replace(settings.model, algorithm=algorithm))
    run = _train(sessions, configured)
    assert run.status == "succeeded", run.error
    assert stored_artifact(sessions, settings, run).model.name == {"item_bm25": "item_item"}.get(
        algorithm, algorithm
    )


def test_if_stale_skips_until_a_new_order_arrives(sessions, settings, imported):
    with sessions() as session:
        assert is_stale(session, settings) == (True, "no trained model yet")
    _train(sessions, settings)
    with sessions() as session:
        stale, reason = is_stale(session, settings)
    assert not stale and "already covers" in reason
    with sessions.begin() as session:
        add_order(session, "12347", ["85123A"], order_id="API-1")
    with sessions() as session:
        stale, reason = is_stale(session, settings)
    assert stale and "new data" in reason


def test_a_simulated_order_is_no_new_data_for_training_or_a_web_process(
    sessions, settings, imported, serving
):
    """Regression: an order `giftrec demo simulate-uplift` generated made `train --if-stale` train again
    (the watermark counted it) and every web process read the data again and reloaded the customer, for
    an order that training and serving leave out."""
    _train(sessions, settings)
    data = serving.store.refresh()
    with sessions.begin() as session:
        add_order(session, "12347", ["85123A"], order_id="SIM-1", source=SIMULATED)
    with sessions() as session:
        stale, reason = is_stale(session, settings)
    assert not stale and "already covers" in reason
    assert serving.store.refresh() is data and not data.fresh
    with sessions.begin() as session:
        add_order(session, "12347", ["85123A"], order_id="API-1")
    with sessions() as session:
        assert is_stale(session, settings)[0]
    assert serving.store.refresh() is not data


def test_old_artifacts_beyond_keep_runs_are_pruned(sessions, settings, imported):
    settings = replace(settings, model=replace(settings.model, keep_runs=2))
    runs = [_train(sessions, settings) for _ in range(3)]
    with sessions() as session:
        stored = set(session.scalars(select(ModelArtifactChunk.version).distinct()))
    assert stored == {r.version for r in runs[1:]}
    with sessions() as session:
        first = session.scalars(select(ModelRun).where(ModelRun.version == runs[0].version)).one()
        assert first.artifact_path is None and first.status == "succeeded"


def test_a_training_whose_commit_fails_deletes_no_old_artifact(sessions, settings, imported):
    """Regression: old artifacts were deleted before the commit recording the new run; a failed commit
    left the database's serving run pointing at a deleted folder."""
    settings = replace(settings, model=replace(settings.model, keep_runs=1))
    old = _train(sessions, settings)
    with pytest.raises(RuntimeError), sessions.begin() as session:
        assert train_model(session, settings).status == "succeeded"
        raise RuntimeError("the commit fails")
    stored_artifact(sessions, settings, old)  # still loads
    with sessions() as session:
        assert serving_run(session).version == old.version  # type: ignore[union-attr]


def test_rollback_goes_back_to_the_previous_run_and_is_audited(sessions, settings, imported):
    first, second = _train(sessions, settings), _train(sessions, settings)
    with sessions.begin() as session:
        assert serving_run(session).version == second.version  # type: ignore[union-attr]
        target = rollback(session, actor="test")
        assert target.version == first.version
    with sessions() as session:
        assert serving_run(session).version == first.version  # type: ignore[union-attr]
        runs = {r.version: r for r in list_runs(session)}
        assert runs[second.version].is_rolled_back
        audit = session.scalars(select(AuditLog).where(AuditLog.action == "model.rollback")).one()
        assert audit.entity_id == first.version and audit.details["rolled_back"] == [second.version]
    with sessions.begin() as session, pytest.raises(Conflict, match="nothing to roll back to"):
        rollback(session)


def test_rollback_to_a_named_version_skips_every_newer_run(sessions, settings, imported):
    runs = [_train(sessions, settings) for _ in range(3)]
    with sessions.begin() as session:
        assert rollback(session, runs[0].version).version == runs[0].version
    with sessions() as session:
        assert serving_run(session).version == runs[0].version  # type: ignore[union-attr]
    with sessions.begin() as session, pytest.raises(NotFound):
        rollback(session, "no-such-version")
    with sessions.begin() as session, pytest.raises(Conflict, match="was rolled back"):
        rollback(session, runs[2].version)


def test_cli_train_model_list_and_rollback(app, runner, sessions, imported):
    result = runner.invoke(cli, args=["train"])
    assert result.exit_code == 0, result.output
    assert "succeeded: model" in result.output
    result = runner.invoke(cli, args=["train", "--if-stale"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("skipped: model")
    assert runner.invoke(cli, args=["train"]).exit_code == 0
    listing = runner.invoke(cli, args=["model", "list"])
    assert listing.exit_code == 0
    # One line per run, each followed by how its blends were chosen.
    lines = [line for line in listing.output.splitlines() if not line.startswith("    blends: ")]
    assert len(lines) == 2 and lines[0].startswith("* ")
    assert listing.output.count("    blends: configured (not tuned)") == 2
    newest, older = lines[0].split()[1], lines[1].split()[0]
    result = runner.invoke(cli, args=["model", "rollback"])
    assert result.exit_code == 0, result.output
    assert f"serving model {older}" in result.output
    listing = runner.invoke(cli, args=["model", "list"]).output.splitlines()[::2]
    assert "rolled back" in listing[0] and newest in listing[0] and listing[1].startswith("* ")
    result = runner.invoke(cli, args=["model", "rollback"])
    assert result.exit_code == 1 and "nothing to roll back to" in result.output


def test_cli_train_failure_exits_non_zero_and_keeps_the_failed_run(runner, sessions):
    result = runner.invoke(cli, args=["train"])
    assert result.exit_code == 1
    assert "training failed" in result.output
    with sessions() as session:
        assert session.scalars(select(ModelRun.status)).one() == "failed"


def test_a_rejected_pick_is_negative_feedback_in_the_next_training(sessions, settings, imported):
    """Issue 13: a pick a manager removed lowers the model's score of that product for that customer."""
    from domain.models import GiftSelection

    baseline = _train(
        sessions, replace(settings, interactions=replace(settings.interactions, weight_rejected=0))
    )
    artifact = stored_artifact(sessions, settings, baseline)
    users, items = artifact.user_index, artifact.item_index
    als = artifact.model.als  # type: ignore[attr-defined]
    cid = int(users.ids[0])
    scores = als.user_factors[0] @ als.item_factors.T
    seen = set(build_matrix(load_interactions(sessions(), customer_ids=[cid]), settings.interactions)[2].ids)
    best = next(int(i) for i in np.argsort(-scores) if int(items.ids[i]) not in seen)
    pid = int(items.ids[best])
    with sessions.begin() as session:
        selection = GiftSelection(
            customer_id=cid, occasion_key="occasion:test", occasion_code="christmas",
            occasion_on=date(2011, 12, 25), year=2011,
        )  # fmt: skip
        session.add(selection)
        session.flush()
        session.add(
            AuditLog(
                actor="user:am@example.com",
                action="selection.pick_removed",
                entity_type="gift_selection",
                entity_id=str(selection.id),
                details={"pick_id": 1, "tier": 1, "product_id": pid},
            )
        )
    run = _train(
        sessions, replace(settings, interactions=replace(settings.interactions, weight_rejected=10.0))
    )
    assert run.params["interactions"]["rejections"] == 1
    assert run.params["interactions"]["weights"]["rejected"] == 10.0
    after = stored_artifact(sessions, settings, run).model.als  # type: ignore[attr-defined]
    new_scores = after.user_factors[0] @ after.item_factors.T
    unseen = np.array([int(i) not in seen for i in items.ids])
    # measured: 0.00364 -> 0.00293, from the customer's best new product to the sixth
    assert new_scores[best] < 0.9 * scores[best]
    assert (new_scores[unseen] > new_scores[best]).sum() >= 1


def test_a_rollback_survives_the_next_nightly_training(sessions, settings, imported):
    """Regression (issue 16): the nightly training's new run superseded an operator's rollback."""
    settings = replace(settings, model=replace(settings.model, keep_runs=2))
    first, second = _train(sessions, settings), _train(sessions, settings)
    with sessions.begin() as session:
        assert rollback(session, actor="test").version == first.version
    nightly = [_train(sessions, settings) for _ in range(3)]  # more runs than keep_runs
    assert all(r.status == "succeeded" for r in nightly)
    with sessions() as session:
        assert serving_run(session).version == first.version  # type: ignore[union-attr]
        picked = load_newest_usable(session, settings, lambda run: run.version)
        assert picked.loaded == first.version
        pinned = session.scalars(select(ModelRun).where(ModelRun.version == first.version)).one()
        assert pinned.is_pinned and pinned.artifact_path is not None  # never pruned while pinned
    with sessions() as session:  # its artifact is still stored
        stored = set(session.scalars(select(ModelArtifactChunk.version).distinct()))
    assert first.version in stored
    with sessions.begin() as session:
        assert unpin(session, actor="test").version == nightly[-1].version
    with sessions() as session:
        assert serving_run(session).version == nightly[-1].version  # type: ignore[union-attr]
        runs = {r.version: r for r in list_runs(session)}
        assert runs[second.version].is_rolled_back  # what was rolled back stays rolled back
        assert not any(r.is_pinned for r in runs.values())
        actions = session.scalars(select(AuditLog.action).order_by(AuditLog.id)).all()
        assert actions == ["model.rollback", "model.unpin"]


def test_promote_serves_a_named_version_ahead_of_newer_ones_until_unpin(sessions, settings, imported):
    first, second = _train(sessions, settings), _train(sessions, settings)
    with sessions.begin() as session:
        rollback(session, actor="test")
    with sessions.begin() as session:  # the rolled-back run still has its artifact: it can come back
        assert promote(session, second.version, actor="test").version == second.version
    with sessions() as session:
        assert serving_run(session).version == second.version  # type: ignore[union-attr]
        assert not any(r.is_pinned or r.is_rolled_back for r in list_runs(session))
    with sessions.begin() as session:
        rollback(session, actor="test")
    third, fourth = _train(sessions, settings), _train(sessions, settings)  # second is pruned meanwhile
    with sessions.begin() as session:
        assert serving_run(session).version == first.version  # type: ignore[union-attr]
        assert promote(session, third.version, actor="test").version == third.version
    with sessions() as session:
        assert serving_run(session).version == third.version  # type: ignore[union-attr]
        runs = {r.version: r for r in list_runs(session)}
        assert runs[third.version].is_pinned and not runs[first.version].is_pinned
    with sessions.begin() as session:
        assert unpin(session, actor="test").version == fourth.version  # type: ignore[union-attr]
    with sessions.begin() as session, pytest.raises(Conflict, match="no model is pinned"):
        unpin(session)
    with sessions.begin() as session, pytest.raises(Conflict, match="has no artifact any more"):
        promote(session, second.version)
    with sessions.begin() as session, pytest.raises(NotFound):
        promote(session, "no-such-version")


def test_cli_rollback_pins_and_unpin_releases(app, runner, sessions, imported):
    for _ in range(2):
        assert runner.invoke(cli, args=["train"]).exit_code == 0
    result = runner.invoke(cli, args=["model", "rollback"])
    assert result.exit_code == 0 and "pinned" in result.output, result.output
    assert runner.invoke(cli, args=["train"]).exit_code == 0
    listing = _run_lines(runner.invoke(cli, args=["model", "list"]).output)
    assert listing[0].startswith("  ") and listing[2].startswith("* ") and "pinned" in listing[2]
    result = runner.invoke(cli, args=["model", "unpin"])
    assert result.exit_code == 0, result.output
    listing = _run_lines(runner.invoke(cli, args=["model", "list"]).output)
    assert listing[0].startswith("* ")


def _run_lines(output: str) -> list[str]:
    """`model list`'s one line per run, without the indented "blends:" line under each."""
    return [line for line in output.splitlines() if not line.lstrip().startswith("blends:")]
