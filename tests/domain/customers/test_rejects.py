"""The reject file exists only once the import's transaction has committed."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from domain.customers.imports import import_orders
from domain.db import session_scope
from domain.models import Order

DATA = Path(__file__).resolve().parents[2] / "data"


class Boom(Exception):
    pass


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_a_transaction_that_fails_after_the_import_leaves_no_reject_file(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    # issue 16: the reject file was written before the commit and stayed when the transaction failed.
    with pytest.raises(Boom), session_scope(sessions) as s:
        summary = import_orders(s, DATA / "broken_rows.csv", "online-retail", instance_dir=tmp_path)
        assert summary.rejected == 9 and summary.reject_path is not None
        raise Boom

    assert _files(tmp_path) == []  # neither the file nor a partial one
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Order)) == 0


def test_a_commit_that_fails_leaves_no_reject_file(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    with sessions() as s:
        import_orders(s, DATA / "broken_rows.csv", "online-retail", instance_dir=tmp_path)
        s.rollback()  # what a failed commit ends in
        assert _files(tmp_path) == []
        # the same session commits something else later: the discarded rejects stay discarded
        s.commit()
    assert _files(tmp_path) == []


def test_the_reject_file_appears_at_the_commit(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    target = tmp_path / "out" / "broken.rejects.csv"
    with session_scope(sessions) as s:
        summary = import_orders(s, DATA / "broken_rows.csv", "online-retail", reject_path=target)
        assert summary.reject_path == str(target)
        assert not target.exists()
    assert target.is_file() and _files(tmp_path) == ["broken.rejects.csv"]


def test_a_savepoint_commit_does_not_publish_the_reject_file(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    target = tmp_path / "broken.rejects.csv"
    with sessions() as s:
        with s.begin_nested():
            import_orders(s, DATA / "broken_rows.csv", "online-retail", reject_path=target)
        assert not target.exists()
        s.rollback()
    assert _files(tmp_path) == []
