"""Shared fixtures: settings, a migrated database (SQLite file or GIFTREC_TEST_DATABASE_URL), app, client."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import delete
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

import domain.models  # noqa: F401  (registers the tables)
from config import Settings, load_settings
from domain import schema
from domain.db import Base, make_engine, make_session_factory

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "data" / "online_retail_sample.csv.gz"


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = os.environ.get("GIFTREC_TEST_DATABASE_URL")
    if not url:
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'giftrec-test.db'}"
    return url


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    """Migrated once per session; tables are emptied after every test that used the database."""
    eng = make_engine(database_url)
    with eng.begin() as conn:  # start clean on a reused PostgreSQL database
        Base.metadata.drop_all(conn)
        conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
    schema.upgrade(database_url)
    yield eng
    eng.dispose()


def _empty_tables(eng: Engine) -> None:
    with eng.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(delete(table))


@pytest.fixture
def sessions(engine: Engine) -> Iterator[sessionmaker[Session]]:
    yield make_session_factory(engine)
    _empty_tables(engine)


@pytest.fixture
def session(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """A session for domain tests; what the test commits is emptied afterwards."""
    s = sessions()
    try:
        yield s
    finally:
        s.rollback()
        s.close()


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return load_settings(
        environ={},
        database={"url": database_url},
        server={"instance_dir": str(tmp_path / "instance"), "secret_key": "test-secret"},
        model={"artifact_dir": str(tmp_path / "models"), "num_threads": 1},
        demo={"enabled": True},
    )


@pytest.fixture
def app(settings: Settings, sessions: sessionmaker[Session]):  # type: ignore[no-untyped-def]
    from api import create_app

    application = create_app(settings)
    application.config["TESTING"] = True
    yield application
    application.extensions["giftrec"].close()


@pytest.fixture
def client(app):  # type: ignore[no-untyped-def]
    return app.test_client()


@pytest.fixture
def runner(app):  # type: ignore[no-untyped-def]
    return app.test_cli_runner()


@pytest.fixture
def today() -> dt.date:
    """The fixed 'today' of the tests: the sample's last day is 2011-12-09."""
    return dt.date(2011, 12, 1)
