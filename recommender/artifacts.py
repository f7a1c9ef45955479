"""Versioned model artifacts: written to a temporary directory, renamed into place, verified on load."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import pickle
import re
import shutil
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Imported for their side effect: each Recommender subclass registers its name, which load_model reads.
import recommender.collaborative  # noqa: F401
import recommender.hybrid  # noqa: F401
import recommender.popularity  # noqa: F401
from recommender.base import ArtifactError, Recommender
from recommender.interactions import IdIndex

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST",
    "Artifact",
    "PickledArtifact",
    "list_versions",
    "load_artifact",
    "load_model",
    "load_pickled_artifact",
    "save_artifact",
    "save_pickled_artifact",
]

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MODEL_DIR = "model"
USERS_FILE = "users.npz"
ITEMS_FILE = "items.npz"
PICKLE_FILE = "object.pkl"
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class Artifact:
    """A loaded, verified artifact."""

    path: Path
    version: str
    model: Recommender
    user_index: IdIndex
    item_index: IdIndex
    manifest: dict[str, Any]

    @property
    def params(self) -> dict[str, Any]:
        """Training parameters recorded at save time."""
        return dict(self.manifest.get("params", {}))

    @property
    def metrics(self) -> dict[str, Any]:
        """Evaluation metrics recorded at save time."""
        return dict(self.manifest.get("metrics", {}))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_tree(directory: Path) -> None:
    for path in sorted(directory.rglob("*"), reverse=True):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_artifact(
    directory_root: Path,
    version: str,
    model: Recommender,
    user_index: IdIndex,
    item_index: IdIndex,
    params: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
) -> Path:
    """Write a fitted model and its id maps as ``<directory_root>/<version>/``, atomically.

    Everything is written into a temporary sibling directory, flushed to disk, then renamed into place
    with `os.replace`, so a reader sees either no artifact or a complete one.

    Parameters
    ----------
    directory_root : Path
        Parent of all versions (created if missing).
    version : str
        Letters, digits, ``.``, ``_``, ``-``; must not exist yet (versions are immutable).
    model : Recommender
        Fitted; ``model.n_items == len(item_index)``.
    user_index, item_index : IdIndex
        Row and column ids of the training matrix.
    params, metrics : mapping, optional
        JSON-serialisable training settings and evaluation results, stored in the manifest.

    Returns
    -------
    Path of the new version directory.
    """
    if model.n_items != len(item_index):
        raise ArtifactError(f"model has {model.n_items} items but the item index has {len(item_index)}")
    if model.n_users > len(user_index):
        raise ArtifactError(f"model has {model.n_users} users but the user index has {len(user_index)}")

    def write(tmp: Path) -> None:
        model.save(tmp / MODEL_DIR)
        user_index.save(tmp / USERS_FILE)
        item_index.save(tmp / ITEMS_FILE)

    fields = {
        "model": model.name,
        "model_params": model.params,
        "params": dict(params or {}),
        "metrics": dict(metrics or {}),
        "shapes": {"users": len(user_index), "items": len(item_index), "model_users": model.n_users},
    }
    return _write_version(Path(directory_root), version, write, fields)


def _write_version(
    root: Path, version: str, write: Callable[[Path], None], fields: Mapping[str, Any]
) -> Path:
    """``write`` the files into a temporary sibling of ``<root>/<version>``, add the manifest (``fields``
    plus every file's SHA-256), flush, then rename into place: a reader sees no artifact or a whole one."""
    if not _VERSION_RE.match(version):
        raise ArtifactError(f"invalid artifact version {version!r}")
    root.mkdir(parents=True, exist_ok=True)
    final = root / version
    if final.exists():
        raise ArtifactError(f"artifact version {version!r} already exists in {root}")
    tmp = root / f".tmp-{version}-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        write(tmp)
        files = {
            p.relative_to(tmp).as_posix(): {"sha256": _sha256(p), "bytes": p.stat().st_size}
            for p in sorted(tmp.rglob("*"))
            if p.is_file()
        }
        manifest = {
            "format_version": FORMAT_VERSION,
            "version": version,
            **fields,
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "files": files,
        }
        try:
            text = json.dumps(manifest, indent=2, sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ArtifactError(f"params/metrics are not JSON-serialisable: {exc}") from exc
        (tmp / MANIFEST).write_text(text, encoding="utf-8")
        _fsync_tree(tmp)
        try:
            os.replace(tmp, final)
        except OSError as exc:
            raise ArtifactError(f"artifact version {version!r} appeared while saving: {exc}") from exc
        fd = os.open(root, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ArtifactError(f"no manifest in {path}") from exc
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"unreadable manifest in {path}: {exc}") from exc
    if not isinstance(manifest, dict):
        raise ArtifactError(f"manifest in {path} is not an object")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"unsupported artifact format {manifest.get('format_version')!r} in {path}")
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise ArtifactError(f"manifest in {path} lists no files")
    return manifest


def _verified(path: Path, required: tuple[str, ...]) -> dict[str, Any]:
    """The manifest of the artifact at ``path``, once its format, the ``required`` files and every
    listed file's SHA-256 are checked (raises ArtifactError)."""
    if not path.is_dir():
        raise ArtifactError(f"artifact directory missing: {path}")
    manifest = _read_manifest(path)
    files: dict[str, Any] = manifest["files"]
    for required_file in required:
        if required_file not in files:
            raise ArtifactError(f"manifest in {path} does not list {required_file}")
    for rel, info in files.items():
        file = path / rel
        if not file.is_file():
            raise ArtifactError(f"artifact file missing: {file}")
        if not isinstance(info, dict) or _sha256(file) != info.get("sha256"):
            raise ArtifactError(f"checksum mismatch for {file}")
    return manifest


def load_artifact(path: Path) -> Artifact:
    """Load and verify an artifact written by `save_artifact`.

    Checks the manifest format, that every listed file exists with its recorded SHA-256, that the
    required files are listed, and that the shapes agree.

    Raises
    ------
    ArtifactError
        Missing, corrupt, tampered or inconsistent artifact.
    """
    path = Path(path)
    manifest = _verified(path, (USERS_FILE, ITEMS_FILE, f"{MODEL_DIR}/model.npz", f"{MODEL_DIR}/model.json"))
    model = load_model(path / MODEL_DIR)
    users, items = _indexes(path)
    shapes = manifest.get("shapes", {})
    if model.name != manifest.get("model"):
        raise ArtifactError(f"manifest names model {manifest.get('model')!r}, files hold {model.name!r}")
    if len(items) != model.n_items or shapes.get("items") != len(items) or shapes.get("users") != len(users):
        raise ArtifactError(
            f"shapes in {path} disagree: manifest {shapes}, items {len(items)}, users {len(users)}"
        )
    return Artifact(
        path=path,
        version=str(manifest.get("version", path.name)),
        model=model,
        user_index=users,
        item_index=items,
        manifest=manifest,
    )


def _indexes(path: Path) -> tuple[IdIndex, IdIndex]:
    try:
        return IdIndex.load(path / USERS_FILE), IdIndex.load(path / ITEMS_FILE)
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise ArtifactError(f"id index unreadable in {path}: {exc}") from exc


@dataclass(frozen=True)
class PickledArtifact:
    """A loaded, verified artifact of a fitted object that is not a `Recommender` (see
    `save_pickled_artifact`)."""

    path: Path
    version: str
    kind: str
    obj: Any
    user_index: IdIndex
    item_index: IdIndex
    manifest: dict[str, Any]


def save_pickled_artifact(
    directory_root: Path,
    version: str,
    kind: str,
    obj: Any,
    user_index: IdIndex,
    item_index: IdIndex,
    params: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
) -> Path:
    """Write a fitted object of `kind` (pickled) and its id maps as ``<directory_root>/<version>/``,
    atomically, with the manifest and checksums of `save_artifact`.

    For fitted objects that have no file format of their own (a scikit-learn classifier with its arrays);
    `load_pickled_artifact` unpickles only after every checksum matched.
    """

    def write(tmp: Path) -> None:
        with open(tmp / PICKLE_FILE, "wb") as fh:
            pickle.dump(obj, fh, protocol=pickle.HIGHEST_PROTOCOL)
        user_index.save(tmp / USERS_FILE)
        item_index.save(tmp / ITEMS_FILE)

    fields = {
        "kind": kind,
        "params": dict(params or {}),
        "metrics": dict(metrics or {}),
        "shapes": {"users": len(user_index), "items": len(item_index)},
    }
    return _write_version(Path(directory_root), version, write, fields)


def load_pickled_artifact(path: Path, kind: str) -> PickledArtifact:
    """Load an artifact written by `save_pickled_artifact`, checked as `load_artifact` checks.

    Raises
    ------
    ArtifactError
        Missing, corrupt, tampered or of another kind, or an object this code cannot unpickle.
    """
    path = Path(path)
    manifest = _verified(path, (PICKLE_FILE, USERS_FILE, ITEMS_FILE))
    if manifest.get("kind") != kind:
        raise ArtifactError(f"artifact in {path} holds {manifest.get('kind')!r}, not {kind!r}")
    users, items = _indexes(path)
    shapes = manifest.get("shapes", {})
    if shapes.get("users") != len(users) or shapes.get("items") != len(items):
        raise ArtifactError(
            f"shapes in {path} disagree: manifest {shapes}, items {len(items)}, users {len(users)}"
        )
    try:
        with open(path / PICKLE_FILE, "rb") as fh:
            obj = pickle.load(fh)  # our own file: its checksum was verified above
    except Exception as exc:  # noqa: BLE001 - e.g. a class that changed since it was saved
        raise ArtifactError(f"{PICKLE_FILE} in {path} cannot be loaded: {type(exc).__name__}: {exc}") from exc
    return PickledArtifact(path, str(manifest.get("version", path.name)), kind, obj, users, items, manifest)


def list_versions(directory_root: Path) -> list[str]:
    """Names of the complete artifact directories under `directory_root` (with a manifest), sorted."""
    root = Path(directory_root)
    if not root.is_dir():
        return []
    return sorted(
        p.name
        for p in root.iterdir()
        if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST).is_file()
    )


def load_model(directory: Path) -> Recommender:
    """Load whichever `Recommender` subclass was saved in `directory` (see `Recommender.load`)."""
    # The implementations register their names when imported (at the top of this module).
    return Recommender.load(directory)
