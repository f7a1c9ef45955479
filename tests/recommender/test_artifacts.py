"""Versioned artifacts: atomic save, manifest, and detection of missing or corrupt files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from recommender.artifacts import (
    MANIFEST,
    PICKLE_FILE,
    list_versions,
    load_artifact,
    load_pickled_artifact,
    save_artifact,
    save_pickled_artifact,
)
from recommender.base import ArtifactError, Recommender
from recommender.collaborative import ALSRecommender, ItemItemRecommender
from recommender.interactions import IdIndex
from tests.recommender.conftest import N_ITEMS, N_USERS, checkerboard


@pytest.fixture(scope="module")
def model() -> ALSRecommender:
    return ALSRecommender(factors=2, num_threads=1).fit(checkerboard())


@pytest.fixture
def indexes() -> tuple[IdIndex, IdIndex]:
    users = IdIndex(np.arange(1000, 1000 + N_USERS))
    items = IdIndex(np.array([f"SKU-{i:03d}" for i in range(N_ITEMS)]))
    return users, items


@pytest.fixture
def saved(tmp_path: Path, model: ALSRecommender, indexes: tuple[IdIndex, IdIndex]) -> Path:
    users, items = indexes
    return save_artifact(
        tmp_path / "models", "20111209-0300", model, users, items, {"half_life_days": 90}, {"recall@10": 0.25}
    )


def test_round_trip_restores_model_indexes_and_manifest(
    saved: Path, model: ALSRecommender, indexes: tuple[IdIndex, IdIndex]
) -> None:
    assert saved.name == "20111209-0300"
    artifact = load_artifact(saved)
    assert isinstance(artifact.model, ALSRecommender)
    assert artifact.user_index == indexes[0] and artifact.item_index == indexes[1]
    assert artifact.params == {"half_life_days": 90} and artifact.metrics == {"recall@10": 0.25}
    assert artifact.version == "20111209-0300"
    manifest = artifact.manifest
    assert manifest["model"] == "als" and manifest["model_params"] == model.params
    assert manifest["shapes"] == {"users": N_USERS, "items": N_ITEMS, "model_users": N_USERS}
    assert manifest["created_at"].endswith("+00:00")
    assert {"users.npz", "items.npz", "model/model.npz", "model/model.json"} <= set(manifest["files"])
    user_items = checkerboard()
    a = model.recommend_batch(np.arange(N_USERS), user_items, 5)
    b = artifact.model.recommend_batch(np.arange(N_USERS), user_items, 5)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_no_temporary_directory_is_left_behind(saved: Path) -> None:
    assert [p.name for p in saved.parent.iterdir()] == [saved.name]
    assert list_versions(saved.parent) == [saved.name]


def test_existing_version_is_never_overwritten(
    saved: Path, model: ALSRecommender, indexes: tuple[IdIndex, IdIndex]
) -> None:
    before = (saved / MANIFEST).read_bytes()
    with pytest.raises(ArtifactError, match="already exists"):
        save_artifact(saved.parent, saved.name, model, *indexes, {}, {})
    assert (saved / MANIFEST).read_bytes() == before
    assert [p.name for p in saved.parent.iterdir()] == [saved.name]


def test_failed_save_leaves_nothing(
    tmp_path: Path, model: ALSRecommender, indexes: tuple[IdIndex, IdIndex]
) -> None:
    root = tmp_path / "models"
    with pytest.raises(ArtifactError, match="JSON"):
        save_artifact(root, "v1", model, *indexes, {"bad": object()}, {})
    assert list(root.iterdir()) == []
    with pytest.raises(ArtifactError, match="invalid artifact version"):
        save_artifact(root, "../escape", model, *indexes, {}, {})
    with pytest.raises(ArtifactError, match="items"):
        save_artifact(root, "v2", model, indexes[0], IdIndex(np.arange(3)), {}, {})
    assert list_versions(root) == []


@pytest.mark.parametrize("name", ["model/model.npz", "users.npz", "items.npz", "model/model.json"])
def test_flipped_byte_is_detected(saved: Path, name: str) -> None:
    path = saved / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="checksum"):
        load_artifact(saved)


@pytest.mark.parametrize("name", ["model/model.npz", "items.npz"])
def test_missing_file_is_detected(saved: Path, name: str) -> None:
    (saved / name).unlink()
    with pytest.raises(ArtifactError, match="missing"):
        load_artifact(saved)


def test_bad_manifests_are_detected(saved: Path) -> None:
    manifest_path = saved / MANIFEST
    good = json.loads(manifest_path.read_text())
    manifest_path.write_text("{not json")
    with pytest.raises(ArtifactError, match="unreadable manifest"):
        load_artifact(saved)
    manifest_path.write_text(json.dumps({**good, "format_version": 99}))
    with pytest.raises(ArtifactError, match="unsupported"):
        load_artifact(saved)
    files = dict(good["files"])
    del files["users.npz"]
    manifest_path.write_text(json.dumps({**good, "files": files}))
    with pytest.raises(ArtifactError, match="does not list users.npz"):
        load_artifact(saved)
    manifest_path.write_text(json.dumps({**good, "shapes": {**good["shapes"], "items": 3}}))
    with pytest.raises(ArtifactError, match="disagree"):
        load_artifact(saved)
    manifest_path.unlink()
    with pytest.raises(ArtifactError, match="no manifest"):
        load_artifact(saved)
    assert list_versions(saved.parent) == []


def test_missing_directory_is_an_artifact_error(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="missing"):
        load_artifact(tmp_path / "nope")


def test_every_model_kind_round_trips_through_an_artifact(tmp_path: Path, fitted: Recommender) -> None:
    users = IdIndex(np.arange(N_USERS))
    items = IdIndex(np.arange(N_ITEMS))
    path = save_artifact(tmp_path, "v1", fitted, users, items, {}, {"ndcg@10": float("0.5")})
    loaded = load_artifact(path).model
    assert type(loaded) is type(fitted) and loaded.params == fitted.params
    assert ItemItemRecommender.name != ALSRecommender.name


class _Fitted:
    """A fitted object with no file format of its own (the next-purchase ranker is one)."""

    def __init__(self, scores: np.ndarray) -> None:
        self.scores = scores


def test_a_pickled_object_round_trips_and_is_unpickled_only_once_verified(
    tmp_path: Path, indexes: tuple[IdIndex, IdIndex]
) -> None:
    users, items = indexes
    path = save_pickled_artifact(
        tmp_path, "20111209-0400", "ranker", _Fitted(np.arange(5.0)), users, items, {"horizon": 30}
    )
    loaded = load_pickled_artifact(path, "ranker")
    assert isinstance(loaded.obj, _Fitted) and np.array_equal(loaded.obj.scores, np.arange(5.0))
    assert loaded.version == "20111209-0400" and loaded.manifest["params"] == {"horizon": 30}
    assert np.array_equal(loaded.user_index.ids, users.ids) and np.array_equal(
        loaded.item_index.ids, items.ids
    )
    with pytest.raises(ArtifactError, match="holds 'ranker', not 'other'"):
        load_pickled_artifact(path, "other")
    with pytest.raises(ArtifactError, match="does not list"):
        load_artifact(path)  # not a Recommender's artifact
    data = bytearray((path / PICKLE_FILE).read_bytes())
    data[-2] ^= 0xFF
    (path / PICKLE_FILE).write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        load_pickled_artifact(path, "ranker")
