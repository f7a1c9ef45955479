"""Model artifacts in the database: stored in pieces, restored byte for byte, verified, deleted."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from config import load_settings
from domain.models import ModelArtifactChunk, ModelRun
from domain.serving.artifact_store import (
    IN_DATABASE,
    delete_artifact,
    fetch_artifact,
    load_stored_artifact,
    store_artifact,
)
from domain.serving.model_runs import load_run_artifact
from recommender.artifacts import save_artifact
from recommender.base import ArtifactError
from recommender.collaborative import ALSRecommender
from recommender.interactions import IdIndex
from tests.recommender.conftest import N_ITEMS, N_USERS, checkerboard

VERSION = "20111209T030000-als-ab12"


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = ALSRecommender(factors=2, num_threads=1).fit(checkerboard())
    users = IdIndex(np.arange(1000, 1000 + N_USERS))
    items = IdIndex(np.array([f"SKU-{i:03d}" for i in range(N_ITEMS)]))
    return save_artifact(tmp_path_factory.mktemp("artifact"), VERSION, model, users, items, {}, {})


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_an_artifact_stored_in_small_pieces_comes_back_byte_for_byte(
    sessions: sessionmaker[Session], folder: Path, tmp_path: Path
) -> None:
    with sessions.begin() as session:
        assert store_artifact(session, VERSION, folder, chunk_bytes=64) == IN_DATABASE + VERSION
    with sessions() as session:
        pieces = session.scalar(select(func.count()).select_from(ModelArtifactChunk))
        largest = session.scalar(select(func.max(func.length(ModelArtifactChunk.data))))
        fetch_artifact(session, VERSION, tmp_path / "back")
        artifact = load_stored_artifact(session, VERSION)
    assert largest == 64 and pieces is not None and pieces > len(_files(folder))
    assert _files(tmp_path / "back") == _files(folder)
    assert artifact.version == VERSION and artifact.item_index.ids[0] == "SKU-000"


def test_a_missing_piece_is_reported_not_loaded_short(sessions: sessionmaker[Session], folder: Path) -> None:
    with sessions.begin() as session:
        store_artifact(session, VERSION, folder, chunk_bytes=64)
        piece = session.get(ModelArtifactChunk, (VERSION, "model/model.npz", 1))
        assert piece is not None
        session.delete(piece)
    with sessions() as session, pytest.raises(ArtifactError, match="piece 1 of model/model.npz is missing"):
        load_stored_artifact(session, VERSION)


def test_a_changed_byte_fails_the_checksum(sessions: sessionmaker[Session], folder: Path) -> None:
    with sessions.begin() as session:
        store_artifact(session, VERSION, folder)
        piece = session.get(ModelArtifactChunk, (VERSION, "users.npz", 0))
        assert piece is not None
        piece.data = piece.data[:-1] + bytes([piece.data[-1] ^ 1])
    with sessions() as session, pytest.raises(ArtifactError, match="checksum mismatch"):
        load_stored_artifact(session, VERSION)


def test_an_unknown_version_and_a_deleted_one_are_not_in_the_database(
    sessions: sessionmaker[Session], folder: Path
) -> None:
    with sessions.begin() as session:
        store_artifact(session, VERSION, folder)
    with sessions.begin() as session:
        assert delete_artifact(session, VERSION) > 0
    for version in (VERSION, "other"):
        with sessions() as session, pytest.raises(ArtifactError, match="not in the database"):
            load_stored_artifact(session, version)


def test_a_stored_path_outside_the_folder_is_refused(
    sessions: sessionmaker[Session], folder: Path, tmp_path: Path
) -> None:
    with sessions.begin() as session:
        session.add(ModelArtifactChunk(version=VERSION, path="../escape.npz", seq=0, data=b"x"))
    with sessions() as session, pytest.raises(ArtifactError, match="outside its folder"):
        fetch_artifact(session, VERSION, tmp_path / "inside")
    assert not (tmp_path / "escape.npz").exists()


def test_a_run_trained_before_the_database_held_artifacts_loads_from_its_folder(
    sessions: sessionmaker[Session], folder: Path, tmp_path: Path
) -> None:
    """Runs recorded before migration 0011 keep their folder path: the host that trained them still
    serves them (until the next training stores one in the database)."""
    settings = load_settings(environ={}, model={"artifact_dir": str(tmp_path / "models")})
    shutil.copytree(folder, tmp_path / "models" / VERSION)
    run = ModelRun(version=VERSION, algorithm="als", artifact_path=str(tmp_path / "models" / VERSION))
    with sessions() as session:
        assert load_run_artifact(session, settings, run).version == VERSION
        assert not session.scalars(select(ModelArtifactChunk)).all()
