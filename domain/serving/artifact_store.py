"""Model artifacts in the database: every web process and host that reaches the database can load them.

An artifact is still the folder :func:`recommender.artifacts.save_artifact` writes (manifest with each
file's SHA-256, model, id indexes). Training writes it to a temporary folder and stores each file here
as rows of ``model_artifact_chunks`` (pieces of at most :data:`CHUNK_BYTES`, so no single value grows
with the model) in the same transaction that records the run. Loading writes the pieces back into a
temporary folder and hands it to :func:`recommender.artifacts.load_artifact`, which verifies every
checksum as before: a corrupt or incomplete artifact raises :class:`ArtifactError`, and the fall-back
rule of :mod:`domain.serving.model_runs` takes the previous usable run.

A run's ``artifact_path`` says where its artifact is: :data:`IN_DATABASE` followed by the version, or
(runs trained before the artifacts moved into the database) a folder on the host that trained it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from domain.leftovers import held_temp_folder
from domain.models import ModelArtifactChunk
from recommender.artifacts import Artifact, load_artifact
from recommender.base import ArtifactError

__all__ = [
    "CHUNK_BYTES",
    "IN_DATABASE",
    "delete_artifact",
    "fetch_artifact",
    "load_stored",
    "load_stored_artifact",
    "store_artifact",
]

T = TypeVar("T")

#: Largest piece of a file in one row: small enough for any driver's buffers, large enough to be few.
CHUNK_BYTES = 4 << 20
#: Prefix of ``ModelRun.artifact_path`` for an artifact held in ``model_artifact_chunks``.
IN_DATABASE = "database:"


def store_artifact(session: Session, version: str, folder: Path, *, chunk_bytes: int = CHUNK_BYTES) -> str:
    """Store every file under ``folder`` as chunks of ``version``; returns the run's ``artifact_path``.

    Nothing is committed: the caller's transaction stores the artifact together with its run.
    """
    if chunk_bytes < 1:
        raise ValueError("chunk_bytes must be positive")
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    if not files:
        raise ArtifactError(f"nothing to store in {folder}")
    for file in files:
        rel = file.relative_to(folder).as_posix()
        with open(file, "rb") as fh:
            seq = 0
            while True:
                data = fh.read(chunk_bytes)
                if not data and seq > 0:
                    break
                session.execute(
                    insert(ModelArtifactChunk).values(version=version, path=rel, seq=seq, data=data)
                )
                seq += 1
                if len(data) < chunk_bytes:
                    break
    return IN_DATABASE + version


def fetch_artifact(session: Session, version: str, into: Path) -> None:
    """Write the stored files of ``version`` under ``into`` (checksums are checked by the loader).

    Raises ArtifactError when nothing is stored for the version or a file's pieces are not 0, 1, ...
    """
    into = Path(into)
    rows = session.execute(
        select(ModelArtifactChunk.path, ModelArtifactChunk.seq, ModelArtifactChunk.data)
        .where(ModelArtifactChunk.version == version)
        .order_by(ModelArtifactChunk.path, ModelArtifactChunk.seq)
        .execution_options(yield_per=8)
    )
    current: str | None = None
    expected = 0
    fh = None
    try:
        for rel, seq, data in rows:
            if rel != current:
                if fh is not None:
                    fh.close()
                target = (into / rel).resolve()
                if not target.is_relative_to(into.resolve()):
                    raise ArtifactError(f"artifact {version} names a file outside its folder: {rel!r}")
                target.parent.mkdir(parents=True, exist_ok=True)
                fh = open(target, "wb")  # noqa: SIM115 - closed when the next file starts or below
                current, expected = rel, 0
            if seq != expected:
                raise ArtifactError(f"artifact {version}: piece {expected} of {rel} is missing")
            assert fh is not None
            fh.write(bytes(data))
            expected += 1
    finally:
        rows.close()  # a server-side cursor on PostgreSQL (yield_per): closed even when a check failed
        if fh is not None:
            fh.close()
    if current is None:
        raise ArtifactError(f"artifact {version} is not in the database")


def load_stored_artifact(session: Session, version: str) -> Artifact:
    """Fetch ``version`` into a temporary folder, load and verify it there (the folder is removed)."""
    return load_stored(session, version, load_artifact)


def load_stored(session: Session, version: str, load: Callable[[Path], T]) -> T:
    """Fetch ``version`` into a temporary folder and ``load`` it there (the folder is removed); ``load``
    verifies the checksums (the next-purchase ranker's artifacts pass their own loader).

    The folder is held as the trainings hold theirs (:func:`domain.leftovers.held_temp_folder`): one left
    by a process killed while loading (a copy of the model) is removed by the next load on the host."""
    with held_temp_folder(prefix="giftrec-artifact-") as tmp:
        folder = tmp / version
        folder.mkdir()
        fetch_artifact(session, version, folder)
        return load(folder)


def delete_artifact(session: Session, version: str) -> int:
    """Delete the stored pieces of ``version``; returns how many rows went."""
    result = session.execute(delete(ModelArtifactChunk).where(ModelArtifactChunk.version == version))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
