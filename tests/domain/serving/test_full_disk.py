"""A full disk where training writes its artifact: training fails cleanly, leaves no partial artifact, the
previous model serves.

Training writes the artifact's files to a temporary folder (``TMPDIR``) and then stores them in the
database (:mod:`domain.serving.artifact_store`): the small disk here is that temporary folder."""

# ruff: noqa: F811  (pytest fixtures imported from tests.domain.serving.fixtures are redefined as arguments)

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from domain.models import ModelArtifactChunk, ModelRun
from domain.serving.model_runs import load_newest_usable, load_run_artifact
from domain.serving.training import serving_run
from tests.domain.serving.fixtures import imported, imported_rows, sample_slice, settings  # noqa: F401
from tests.domain.serving.test_training import _train

#: A disk of 512 KiB holds one artifact of the test's small model (~135 KB) with room to spare.
DISK_BYTES = 512 * 1024
#: What is left free before the second training: less than its model file (~100 KB), more than nothing,
#: so the write fails half-way.
LEFT_FREE = 40 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of DISK_BYTES. Mounting needs root, which CI has (it installs its Debian packages); a
    user who is not root cannot run this test (RLIMIT_FSIZE would also stop the SQLite file's writes)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        assert os.geteuid() != 0, mounted.stderr  # root must be able to mount it: a failure, not a skip
        pytest.skip(f"mounting a tmpfs needs root: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def _fill(disk: Path, leave: int) -> Path:
    """Fill the tmpfs until ``leave`` bytes are free."""
    stat = os.statvfs(disk)
    filler = disk / "filler"
    filler.write_bytes(b"\0" * (stat.f_bavail * stat.f_frsize - leave))
    return filler


def test_a_full_artifact_disk_fails_training_cleanly_and_the_previous_model_serves(
    sessions, settings, imported, small_disk, tmp_path
):
    disk = small_disk
    old = _train(sessions, settings)
    assert old.status == "succeeded", old.error
    filler = _fill(disk, LEFT_FREE)

    giftrec = shutil.which("giftrec", path=os.path.dirname(sys.executable)) or "giftrec"
    env = os.environ | {
        "GIFTREC_DATABASE_URL": settings.database.url,
        "GIFTREC_SERVER_INSTANCE_DIR": str(tmp_path / "instance"),
        "GIFTREC_SERVER_SECRET_KEY": "test-secret",
        "GIFTREC_MODEL_ARTIFACT_DIR": settings.model.artifact_dir,
        "TMPDIR": str(disk),  # where training writes the artifact's files before storing them
        "GIFTREC_MODEL_FACTORS": "8",
        "GIFTREC_MODEL_ITERATIONS": "4",
        "GIFTREC_MODEL_NUM_THREADS": "1",
    }
    done = subprocess.run([giftrec, "train"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "training failed" in done.stdout + done.stderr
    with sessions() as session:
        failed = session.scalars(select(ModelRun).where(ModelRun.status == "failed")).one()
        assert "No space left on device" in (failed.error or "")
        assert failed.artifact_path is None
        # the previous model keeps serving, and its artifact still loads and verifies
        assert serving_run(session).version == old.version  # type: ignore[union-attr]
        picked = load_newest_usable(session, settings, lambda run: load_run_artifact(session, settings, run))
        assert picked.run is not None and picked.run.version == old.version and not picked.errors
        # no partial artifact: nothing of the failed version stored ...
        stored = set(session.scalars(select(ModelArtifactChunk.version).distinct()))
        assert stored == {old.version}
    # ... and no temporary folder left on the full disk
    assert sorted(p.name for p in disk.iterdir()) == ["filler"]

    filler.unlink()  # space freed: the next training succeeds and serves
    again = _train(sessions, settings)
    assert again.status == "succeeded", again.error
    with sessions() as session:
        assert serving_run(session).version == again.version  # type: ignore[union-attr]
