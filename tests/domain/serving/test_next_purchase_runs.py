"""The next-purchase ranker's training step: the job, its artifact in the database, fall-back and pruning,
and what `giftrec model list|show` say about it."""

# ruff: noqa: F811  (pytest fixtures imported from tests.domain.serving.fixtures are redefined as arguments)

from __future__ import annotations

import tempfile
import tomllib
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.cli import cli
from config import Settings
from domain.db import session_scope
from domain.errors import Conflict
from domain.models import AuditLog, Customer, ModelArtifactChunk, NextPurchaseRun
from domain.models._types import utcnow
from domain.serving.artifact_store import store_artifact
from domain.serving.next_purchase_runs import (
    is_next_purchase_stale,
    prune_next_purchase_artifacts,
    serving_next_purchase_run,
)
from domain.serving.next_purchase_service import NextPurchaseService
from domain.serving.recommendations import Serving
from domain.serving.training import promote, rollback, serving_run, unpin
from jobs.registry import JOBS, available_jobs
from recommender.artifacts import PICKLE_FILE
from tests.domain.serving.fixtures import (  # noqa: F401
    FakeClock,
    clock,
    damage_stored_file,
    imported,
    imported_rows,
    sample_slice,
    serving,
    settings,
)

DEFAULTS = Path(__file__).resolve().parents[3] / "config" / "defaults.toml"


def test_the_training_job_is_registered_with_its_cron_in_the_defaults():
    spec = JOBS["train-next-purchase"]
    assert spec.module == "jobs.train_next_purchase" and "train-next-purchase" in available_jobs()
    with open(DEFAULTS, "rb") as fh:
        scheduler = tomllib.load(fh)["scheduler"]
    assert scheduler[spec.cron_setting] == "0 4 * * *"  # nightly, after the recommender's training


def _runs(sessions: sessionmaker[Session]) -> list[NextPurchaseRun]:
    with sessions() as session:
        return list(session.scalars(select(NextPurchaseRun).order_by(NextPurchaseRun.id)))


def test_the_job_trains_once_and_model_list_and_show_name_the_ranker(
    runner, sessions: sessionmaker[Session], imported: None
):  # type: ignore[no-untyped-def]
    ran = runner.invoke(cli, ["jobs", "run", "train-next-purchase"])
    assert ran.exit_code == 0, ran.output
    (run,) = _runs(sessions)
    assert f"next-purchase ranker {run.version}: succeeded" in ran.output
    assert run.status == "succeeded" and run.artifact_path == f"database:{run.version}"
    assert run.n_customers > 0 and run.n_items > 0 and run.data_until is not None
    assert run.metrics["fit_cpu_seconds"] > 0 and run.metrics["classifier"] is True
    with sessions() as session:
        stored = set(
            session.scalars(select(ModelArtifactChunk.path).where(ModelArtifactChunk.version == run.version))
        )
    assert {PICKLE_FILE, "manifest.json", "users.npz", "items.npz"} == stored

    skipped = runner.invoke(cli, ["train", "--next-purchase", "--if-stale"])
    assert skipped.exit_code == 0 and skipped.output.startswith("skipped: ranker"), skipped.output

    listing = runner.invoke(cli, ["model", "list"])
    assert listing.exit_code == 0, listing.output
    lines = listing.output.splitlines()
    at = lines.index("next-purchase rankers (`giftrec train --next-purchase`):")
    assert lines[at + 1].startswith(f"* {run.version}") and "succeeded" in lines[at + 1]
    assert f"trained {run.finished_at:%Y-%m-%d %H:%M:%S}" in lines[at + 1]
    assert lines[at + 2].strip().startswith("fit ") and "s CPU" in lines[at + 2]

    shown = runner.invoke(cli, ["model", "show", run.version])
    assert shown.exit_code == 0, shown.output
    assert shown.output.startswith(f"{run.version} (next-purchase ranker) serving; trained at")
    assert '"horizon_days": 30.0' in shown.output and '"fit_cpu_seconds"' in shown.output
    assert runner.invoke(cli, ["model", "show", "no-such-version"]).exit_code != 0


def test_the_ranker_s_training_removes_a_killed_training_s_folder_and_leaves_none_of_its_own(
    runner, sessions: sessionmaker[Session], imported: None, monkeypatch, tmp_path
):  # type: ignore[no-untyped-def]
    """The ranker's training holds its temporary folder like the model's training (domain.leftovers): a
    folder a killed training left (no live process holds it) is removed, and its own is gone after it."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    killed = tmp / "giftrec-training-killed"
    killed.mkdir()
    (killed / "ranker.pkl").write_bytes(b"a copy of a ranker")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    ran = runner.invoke(cli, ["train", "--next-purchase"])
    assert ran.exit_code == 0, ran.output
    assert _runs(sessions)[-1].status == "succeeded"
    assert list(tmp.iterdir()) == []


def test_a_corrupt_newest_artifact_falls_back_to_the_previous_one(
    runner,
    serving: Serving,
    sessions: sessionmaker[Session],
    imported: None,
    clock: FakeClock,
):  # type: ignore[no-untyped-def]
    for _ in range(2):
        trained = runner.invoke(cli, ["train", "--next-purchase"])
        assert trained.exit_code == 0, trained.output
    older, newest = _runs(sessions)
    damage_stored_file(sessions, newest, PICKLE_FILE, truncate=True)  # type: ignore[arg-type]
    service = NextPurchaseService(serving, sessions, clock=clock, background=False)
    fitted = service.current()
    assert fitted.version == service.version == older.version and fitted.ranker is not None
    assert service.error is not None and newest.version in service.error and "checksum" in service.error
    assert service.status()["version"] == older.version


def _fake_run(session: Session, tmp_path: Path, n: int) -> NextPurchaseRun:
    folder = tmp_path / f"v{n}"
    folder.mkdir()
    (folder / "manifest.json").write_text("{}")
    version = f"2011120{n}T000000-next-purchase-test"
    run = NextPurchaseRun(version=version, status="succeeded", params={}, metrics={})
    run.artifact_path = store_artifact(session, version, folder)
    session.add(run)
    session.flush()
    return run


def test_old_artifacts_are_pruned_beyond_keep_runs(
    settings: Settings, sessions: sessionmaker[Session], tmp_path: Path
):
    with session_scope(sessions) as session:
        versions = [_fake_run(session, tmp_path, n).version for n in range(5)]
    with session_scope(sessions) as session:
        pruned = prune_next_purchase_artifacts(session, settings)
        assert serving_next_purchase_run(session).version == versions[-1]
    assert settings.model.keep_runs == 3 and pruned == versions[:2][::-1]
    with sessions() as session:
        left = set(session.scalars(select(ModelArtifactChunk.version)))
        kept = [r.version for r in session.scalars(select(NextPurchaseRun).order_by(NextPurchaseRun.id))]
        cleared = [
            r.version
            for r in session.scalars(select(NextPurchaseRun).where(NextPurchaseRun.artifact_path.is_(None)))
        ]
    assert left == set(versions[2:]) and kept == versions and sorted(cleared) == versions[:2]


def test_an_erasure_prunes_every_ranker_artifact_but_the_serving_one(
    settings: Settings, sessions: sessionmaker[Session], tmp_path: Path
):
    """Security rule: a ranker's artifact holds the lists of every customer it saw; after an erasure only
    the serving run's (here the pinned one) stays, until the next training, which the staleness check
    asks for, whatever ``keep_runs`` says."""
    with session_scope(sessions) as session:
        versions = [_fake_run(session, tmp_path, n).version for n in range(3)]
        rollback(session, versions[1], actor="test", kind=NextPurchaseRun)  # pins versions[1]
    with session_scope(sessions) as session:
        assert prune_next_purchase_artifacts(session, settings) == [versions[2]]  # rolled back
        session.add(Customer(external_id="GONE", erased_at=utcnow()))
    with session_scope(sessions) as session:
        stale, why = is_next_purchase_stale(session)
        assert stale and why.startswith("customers erased since ranker")
        assert prune_next_purchase_artifacts(session, settings) == [versions[0]]
    with sessions() as session:
        assert set(session.scalars(select(ModelArtifactChunk.version))) == {versions[1]}
        assert serving_next_purchase_run(session).version == versions[1]  # type: ignore[union-attr]


def test_the_ranker_s_runs_roll_back_pin_promote_and_prune_as_the_models_do(
    settings: Settings, sessions: sessionmaker[Session], tmp_path: Path
):
    """The models' rollback, pin, pruning, promote and unpin, given the ranker's runs: a rollback pins its
    target ahead of the nightly trainings after it, whose pruning (keep_runs 3) keeps the pinned artifact
    and removes the rolled-back ones; the models' runs are not touched; each step is audited."""
    with session_scope(sessions) as session:
        runs = [_fake_run(session, tmp_path, n).version for n in range(3)]
    with session_scope(sessions) as session:
        assert rollback(session, runs[0], actor="test", kind=NextPurchaseRun).version == runs[0]
    with session_scope(sessions) as session:
        runs += [_fake_run(session, tmp_path, n).version for n in range(3, 7)]  # nightly, behind the pin
        pruned = prune_next_purchase_artifacts(session, settings)
        assert is_next_purchase_stale(session)[1].startswith(f"ranker {runs[-1]}")  # the newest, not the pin
    with sessions() as session:
        found = {r.version: r for r in session.scalars(select(NextPurchaseRun))}
        assert serving_next_purchase_run(session).version == runs[0]  # type: ignore[union-attr]
        assert found[runs[0]].is_pinned and found[runs[0]].artifact_path is not None
        assert all(found[v].is_rolled_back and found[v].artifact_path is None for v in runs[1:3])
        assert sorted(pruned) == sorted(runs[1:4])  # rolled back, and past keep_runs behind the pin
        assert serving_run(session) is None  # the models: none trained, none pinned
    with session_scope(sessions) as session:
        assert promote(session, runs[5], actor="test", kind=NextPurchaseRun).is_pinned  # newer exists
        assert serving_next_purchase_run(session).version == runs[5]  # type: ignore[union-attr]
    with session_scope(sessions) as session:
        assert unpin(session, actor="test", kind=NextPurchaseRun).version == runs[-1]  # type: ignore[union-attr]
        with pytest.raises(Conflict, match="no next-purchase ranker is pinned"):
            unpin(session, kind=NextPurchaseRun)
        with pytest.raises(Conflict, match="cannot roll back to next-purchase ranker"):
            rollback(session, runs[1], kind=NextPurchaseRun)
    with sessions() as session:
        audit = session.execute(select(AuditLog.action, AuditLog.entity_type).order_by(AuditLog.id)).all()
    assert audit == [
        ("model.rollback", "next_purchase_run"),
        ("model.promote", "next_purchase_run"),
        ("model.unpin", "next_purchase_run"),
    ]
