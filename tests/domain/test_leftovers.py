"""Held files and folders (domain.leftovers): what another process's sweep may and may not remove."""

from __future__ import annotations

import shutil
from pathlib import Path

from domain.leftovers import hold_new, remove_if_stale


def test_a_folder_swept_away_before_it_was_opened_is_made_again(tmp_path: Path) -> None:
    """Regression: a training started while another process swept the temporary folder (trainings of
    several processes at once) failed with FileNotFoundError: the sweep found the new folder not yet
    locked and removed it before its creator opened it. Now the creator makes another one."""
    made: list[Path] = []

    def create() -> Path:
        path = tmp_path / f"giftrec-training-{len(made)}"
        path.mkdir()
        made.append(path)
        if len(made) == 1:
            shutil.rmtree(path)  # another process's remove_if_stale, between mkdtemp and our open
        return path

    held = hold_new(create)
    try:
        assert held.path == made[1] and held.path.is_dir()
        assert not remove_if_stale(held.path)  # held: a sweep leaves it alone
    finally:
        held.release()
    assert remove_if_stale(held.path) and not held.path.exists()  # released: a sweep removes it
