"""A training killed while it stores its artifact (SIGKILL of a real `giftrec train`): nothing of it stays
in the database, the model served before keeps serving, the next training succeeds and removes the killed
one's temporary folder."""

# ruff: noqa: F811  (pytest fixtures imported from tests.domain.serving.fixtures are redefined as arguments)

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from config import Settings
from domain.models import ModelArtifactChunk, ModelRun
from domain.serving.training import serving_run
from tests.domain.serving.fixtures import (  # noqa: F401
    imported,
    imported_rows,
    sample_slice,
    settings,
    stored_artifact,
)
from tests.domain.serving.test_training import _train
from tests.killed import REPO, kill_where_it_stops


def _env(settings: Settings, tmp: Path) -> dict[str, str]:
    """A `giftrec` process on the test's database and small model; its temporary files under ``tmp``."""
    model = settings.model
    return os.environ | {
        "GIFTREC_DATABASE_URL": settings.database.url,
        "GIFTREC_SERVER_INSTANCE_DIR": settings.server.instance_dir,
        "GIFTREC_SERVER_SECRET_KEY": "test-secret",
        "GIFTREC_MODEL_ARTIFACT_DIR": model.artifact_dir,
        "GIFTREC_MODEL_NUM_THREADS": str(model.num_threads),
        "GIFTREC_MODEL_FACTORS": str(model.factors),
        "GIFTREC_MODEL_ITERATIONS": str(model.iterations),
        "TMPDIR": str(tmp),
    }


def _stored(sessions: sessionmaker[Session]) -> tuple[list[str], set[str]]:
    with sessions() as session:
        runs = list(session.scalars(select(ModelRun.version).order_by(ModelRun.id)))
        return runs, set(session.scalars(select(ModelArtifactChunk.version).distinct()))


def train_then_kill(
    sessions: sessionmaker[Session], settings: Settings, tmp_path: Path, module: str
) -> tuple[ModelRun, Path]:
    """Train and serve a model, then run ``module`` (a ``giftrec`` process on its temporary folder) and
    kill it where it stops; the served run and that temporary folder, which holds the killed process's
    artifact folder and nothing else."""
    served = _train(sessions, settings)
    assert served.status == "succeeded", served.error
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    kill_where_it_stops(module, [], _env(settings, tmp))

    left = list(tmp.iterdir())
    assert len(left) == 1 and list(left[0].rglob("manifest.json")), left  # its temporary artifact folder
    return served, tmp


def test_a_training_killed_while_storing_its_artifact_leaves_the_served_model_and_the_next_one_works(
    sessions, settings, imported, tmp_path
):
    served, tmp = train_then_kill(sessions, settings, tmp_path, "tests.domain.serving.killed_training")
    # Nothing of the killed run: no run row, no piece of its artifact (its transaction never committed).
    assert _stored(sessions) == ([served.version], {served.version})
    with sessions() as session:
        assert serving_run(session).version == served.version  # type: ignore[union-attr]
    assert stored_artifact(sessions, settings, served).model is not None  # and it still loads

    next_training = subprocess.run(
        [sys.executable, "-c", "from api.cli import main; main()", "train"],
        cwd=REPO,
        env=_env(settings, tmp),
        capture_output=True,
        text=True,
    )
    assert next_training.returncode == 0, next_training.stderr
    # Regression: the killed training's folder (a copy of the model) stayed in the temporary folder for good.
    assert list(tmp.iterdir()) == []
    runs, artifacts = _stored(sessions)
    assert len(runs) == 2 and runs[0] == served.version and artifacts == set(runs)
    with sessions() as session:
        newest = serving_run(session)
        assert newest is not None and newest.version == runs[1] and newest.status == "succeeded"
