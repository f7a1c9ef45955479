"""One fall-back rule for serving and planning: the newest usable run that loads; failed loads retried."""

# ruff: noqa: F811  (pytest fixtures imported from tests.domain.serving.fixtures are redefined as arguments)

from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from config import Settings
from domain.models import Customer, GiftSelection, ImportantDate, ModelRun, Recipient
from domain.reminders.planning import plan_selections
from domain.serving.candidates import latest_model_scorer
from domain.serving.model_store import ModelStore
from domain.serving.training import train_model
from tests.domain.serving.fixtures import (  # noqa: F401
    FakeClock,
    clock,
    damage_stored_file,
    imported,
    imported_rows,
    sample_slice,
    serving,
    settings,
    stored_artifact,
)

NOW = dt.datetime(2011, 12, 1, 6, 0)


def _train(sessions: sessionmaker[Session], settings: Settings) -> ModelRun:
    with sessions.begin() as session:
        run = train_model(session, settings)
    assert run.status == "succeeded", run.error
    return run


def _corrupt(sessions: sessionmaker[Session], run: ModelRun) -> None:
    damage_stored_file(sessions, run, "model/model.npz", truncate=True)


def _plan_for_known_customers(sessions: sessionmaker[Session], settings: Settings, run: ModelRun) -> list:
    """Birthdays a week ahead for three customers the model knows; plan; the selections' picks."""
    users = stored_artifact(sessions, settings, run).user_index
    with sessions.begin() as session:
        for customer_id in users.ids[:3].tolist():
            customer = session.get(Customer, int(customer_id))
            assert customer is not None
            recipient = Recipient(customer_id=customer.id, name="Anna", relationship_="wife", gender="female")
            session.add(recipient)
            session.flush()
            session.add(ImportantDate(recipient_id=recipient.id, kind="birthday", month=12, day=8))
        summary = plan_selections(session, settings, now=NOW)
        assert summary.planned == 3, summary
        found = session.scalars(select(GiftSelection)).all()
        return [(s.model_run_id, sorted({p.source for p in s.picks})) for s in found]


def test_a_corrupt_newest_artifact_makes_serving_and_planning_use_the_previous_run(
    settings, sessions, imported
):
    # issue 16: with a corrupt newest artifact, serving fell back to the previous run but planning
    # dropped collaborative filtering altogether.
    first, second = _train(sessions, settings), _train(sessions, settings)
    _corrupt(sessions, second)

    store = ModelStore(settings, sessions, background=False)
    assert store.current().model.version == first.version
    assert second.version in store.status()["error"]

    with sessions() as session:
        scorer, run_id = latest_model_scorer(session, settings)
    assert scorer is not None and run_id == first.id

    planned = _plan_for_known_customers(sessions, settings, first)
    assert {run_id for run_id, _ in planned} == {first.id}
    assert all("collaborative" in sources for _, sources in planned), planned


def test_a_missing_newest_artifact_makes_planning_use_the_previous_run(settings, sessions, imported):
    first, second = _train(sessions, settings), _train(sessions, settings)
    damage_stored_file(sessions, second, "manifest.json")
    with sessions() as session:
        scorer, run_id = latest_model_scorer(session, settings)
    assert scorer is not None and run_id == first.id


def test_a_transient_load_failure_is_retried_after_the_back_off(settings, sessions, imported, clock):
    # issue 16: a version that failed to load once was never tried again for the life of the process.
    settings = dataclasses.replace(
        settings, model=dataclasses.replace(settings.model, reload_interval=30.0, load_retry_seconds=300.0)
    )
    store = ModelStore(settings, sessions, background=False, clock=clock)
    first = _train(sessions, settings)
    assert store.current().model.version == first.version
    second = _train(sessions, settings)
    # e.g. a database replica that has not caught up yet
    damage_stored_file(sessions, second, "manifest.json", rename="manifest.aside")

    clock.advance(30)
    store.current()
    assert store.current().model.version == first.version
    assert second.version in store.status()["error"]

    damage_stored_file(sessions, second, "manifest.aside", rename="manifest.json")  # the file is back
    clock.advance(30)
    store.current()
    assert store.current().model.version == first.version  # inside the back-off: not tried again yet
    clock.advance(300)
    store.current()
    assert store.current().model.version == second.version
    assert "error" not in store.status()


def test_a_load_that_keeps_failing_is_retried_on_each_back_off_and_the_previous_model_serves(
    settings, sessions, imported, clock
):
    settings = dataclasses.replace(
        settings, model=dataclasses.replace(settings.model, reload_interval=30.0, load_retry_seconds=60.0)
    )
    store = ModelStore(settings, sessions, background=False, clock=clock)
    first = _train(sessions, settings)
    store.current()
    second = _train(sessions, settings)
    _corrupt(sessions, second)
    tries: list[str] = []
    load_run = store._load_run

    def counting(session: Session, run: ModelRun):  # type: ignore[no-untyped-def]
        tries.append(run.version)
        return load_run(session, run)

    store._load_run = counting  # type: ignore[method-assign]
    for _ in range(8):  # 240 s of checks every 30 s, a retry every 60 s
        clock.advance(30)
        store.current()
    assert store.current().model.version == first.version
    assert tries == [second.version] * 4
