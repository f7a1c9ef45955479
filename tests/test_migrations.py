"""Migrations: upgrade an empty database to head, models agree with it, downgrade and upgrade again."""

from __future__ import annotations

import os

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

import domain.models  # noqa: F401
from domain import schema
from domain.db import Base, make_engine


@pytest.fixture
def empty_url(tmp_path):
    """A database of its own: a fresh SQLite file, or the PostgreSQL test database emptied."""
    url = os.environ.get("GIFTREC_TEST_DATABASE_URL")
    if not url:
        yield f"sqlite:///{tmp_path / 'migrations.db'}"
        return
    # PostgreSQL: use a separate schema so the session database stays intact.
    eng = make_engine(url)
    with eng.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA IF EXISTS migration_check CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA migration_check")
    eng.dispose()
    sep = "&" if "?" in url else "?"
    yield f"{url}{sep}options=-csearch_path%3Dmigration_check"
    eng = make_engine(url)
    with eng.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA IF EXISTS migration_check CASCADE")
    eng.dispose()


def _diff(url: str) -> list:
    eng = make_engine(url)
    try:
        with eng.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            return compare_metadata(ctx, Base.metadata)
    finally:
        eng.dispose()


def test_upgrade_to_head_creates_every_table(empty_url):
    schema.upgrade(empty_url)
    eng = make_engine(empty_url)
    try:
        tables = set(inspect(eng).get_table_names())
        assert set(Base.metadata.tables) <= tables
        assert schema.is_at_head(eng)
    finally:
        eng.dispose()


def test_models_agree_with_migrations(empty_url):
    schema.upgrade(empty_url)
    assert _diff(empty_url) == []


def test_downgrade_to_base_then_upgrade_again(empty_url):
    schema.upgrade(empty_url)
    schema.downgrade(empty_url, "base")
    eng = make_engine(empty_url)
    try:
        assert set(inspect(eng).get_table_names()) <= {"alembic_version"}
    finally:
        eng.dispose()
    schema.upgrade(empty_url)
    assert _diff(empty_url) == []
