"""The serving process's model: newest run without a restart, rollback, corrupt artifacts, readiness."""

# ruff: noqa: F811  (pytest fixtures imported from tests.domain.serving.fixtures are redefined as arguments)

from __future__ import annotations

import dataclasses
import threading

from sqlalchemy.orm import Session, sessionmaker

from config import Settings
from domain.customers.interactions import load_customer_rows, load_interactions
from domain.models import ModelRun
from domain.serving.data import CustomerRows
from domain.serving.model_store import ModelStore
from domain.serving.recommendations import Serving, recommend_for_customer
from domain.serving.training import rollback, train_model
from tests.domain.serving.fixtures import (  # noqa: F401
    FakeClock,
    add_events,
    add_order,
    assert_same,
    clock,
    damage_stored_file,
    imported,
    imported_rows,
    sample_slice,
    serving,
    settings,
    stored_artifact,
    take_path,
)


def _train(sessions: sessionmaker[Session], settings: Settings) -> ModelRun:
    with sessions.begin() as session:
        run = train_model(session, settings)
    assert run.status == "succeeded", run.error
    return run


def _corrupt(sessions: sessionmaker[Session], run: ModelRun) -> None:
    damage_stored_file(sessions, run, "model/model.npz", truncate=True)


def _a_customer(store: ModelStore) -> str:
    data = store.current()
    assert data.model is not None
    customer_id = int(data.model.user_index.ids[0])
    return next(ext for ext, cid in data.customers.items() if cid == customer_id)


def test_a_fresh_install_is_ready_and_serves_fallbacks(serving, imported):
    status = serving.store.status()
    assert status["ok"] is True and "no trained model yet" in status["note"]
    assert "version" not in status
    customer = sorted(serving.store.current().customers)[0]
    items = recommend_for_customer(serving, customer, 5)
    assert [i.source for i in items] == ["bestsellers"] * 5


def test_the_newest_run_is_served_without_a_restart(settings, sessions, imported, serving, clock):
    first = _train(sessions, settings)
    assert serving.store.current().model.version == first.version
    second = _train(sessions, settings)
    clock.advance(settings.model.reload_interval - 1)
    assert serving.store.current().model.version == first.version  # not checked yet
    clock.advance(2)
    serving.store.current()  # the check runs (inline in these tests)
    assert serving.store.current().model.version == second.version
    assert serving.store.status()["version"] == second.version


def test_a_new_model_starts_an_empty_ranked_picks_cache(settings, sessions, imported, serving, clock):
    """The kept rankings are the old model's scores: after a swap none may answer. (New orders and events
    keep them, test_recommendations; only a new model resets them, issue 18.)"""
    _train(sessions, settings)
    customer = _a_customer(serving.store)
    recommend_for_customer(serving, customer, 5)
    old = serving.store.current()
    cid = old.customers[customer]
    assert old.ranked.get(cid, serving.store.customer(old, cid)) is not None
    other = dataclasses.replace(settings, model=dataclasses.replace(settings.model, random_state=7))
    second = _train(sessions, other)  # another start: other factors, other scores
    clock.advance(settings.model.reload_interval)
    serving.store.current()
    new = serving.store.current()
    assert new.model is not None and new.model.version == second.version
    assert new.ranked.get(cid, serving.store.customer(new, cid)) is None
    served = recommend_for_customer(serving, customer, 5)
    fresh = Serving(settings, ModelStore(settings, sessions, background=False, clock=clock), serving.catalog)
    assert fresh.store.current().model.version == second.version
    expected = recommend_for_customer(fresh, customer, 5)
    assert [(i.sku, i.score) for i in served] == [(i.sku, i.score) for i in expected]


def test_a_rollback_is_picked_up_and_the_previous_version_serves(
    settings, sessions, imported, serving, clock
):
    first, second = _train(sessions, settings), _train(sessions, settings)
    assert serving.store.current().model.version == second.version
    with sessions.begin() as session:
        rollback(session)
    clock.advance(settings.model.reload_interval)
    serving.store.current()
    assert serving.store.current().model.version == first.version
    assert recommend_for_customer(serving, _a_customer(serving.store), 5)


def test_a_corrupt_new_artifact_keeps_the_previous_model_answering(
    settings, sessions, imported, serving, clock
):
    first = _train(sessions, settings)
    customer = _a_customer(serving.store)
    before = [i.sku for i in recommend_for_customer(serving, customer, 5)]
    second = _train(sessions, settings)
    _corrupt(sessions, second)
    clock.advance(settings.model.reload_interval)
    serving.store.current()
    assert serving.store.current().model.version == first.version
    status = serving.store.status()
    assert status["ok"] is True and status["version"] == first.version
    assert second.version in status["error"] and "checksum mismatch" in status["error"]
    assert [i.sku for i in recommend_for_customer(serving, customer, 5)] == before


def test_at_start_up_a_missing_artifact_falls_back_to_the_older_run(settings, sessions, imported):
    first, second = _train(sessions, settings), _train(sessions, settings)
    damage_stored_file(sessions, second, "manifest.json")
    store = ModelStore(settings, sessions, background=False)
    assert store.current().model.version == first.version
    status = store.status()
    assert status["ok"] is True and second.version in status["error"]


def test_readiness_fails_only_when_no_model_at_all_can_be_loaded(settings, sessions, imported):
    run = _train(sessions, settings)
    _corrupt(sessions, run)
    store = ModelStore(settings, sessions, background=False)
    assert store.current().model is None
    status = store.status()
    assert status["ok"] is False and run.version in status["error"]


def test_health_ready_reports_the_served_model(app, client, sessions, imported):
    from domain.access.api_keys import create_key

    settings = app.extensions["giftrec"].settings
    with sessions() as session:
        admin = {"Authorization": f"Bearer {create_key(session, 'admin')[1]}"}
        session.commit()
    body = client.get("/health/ready", headers=admin).get_json()
    assert body["checks"]["model"]["ok"] is True and "note" in body["checks"]["model"]
    run = _train(sessions, settings)
    store = app.extensions["giftrec"].services["model_store"]
    store.refresh()
    response = client.get("/health/ready", headers=admin)
    assert response.status_code == 200
    assert response.get_json()["checks"]["model"]["version"] == run.version


def test_a_reload_runs_in_the_background_while_requests_are_answered(settings, sessions, imported):
    clock = FakeClock()
    store = ModelStore(settings, sessions, background=True, clock=clock)
    first = _train(sessions, settings)
    store.start()  # what a serving process does once it is up
    store.wait()
    assert store.current().model.version == first.version
    second = _train(sessions, settings)
    gate = threading.Event()
    load_run = store._load_run

    def slow_load(session: Session, run: ModelRun):  # type: ignore[no-untyped-def]
        gate.wait(30)  # hold the reload until the test has been answered
        return load_run(session, run)

    store._load_run = slow_load  # type: ignore[method-assign]
    clock.advance(settings.model.reload_interval)
    during = store.current()  # starts the reload thread and returns at once
    assert during.model.version == first.version
    assert store.current().model.version == first.version
    gate.set()
    store.wait()
    assert store.current().model.version == second.version


def test_a_reload_gives_the_rows_the_general_path_gives_every_customer(
    settings, sessions, imported, monkeypatch
):
    # The rows a web process reloads after a write (one customer) or in its freshness check (a batch)
    # take the few-rows path; the general one (scipy), forced, gives the same rows to the bit.
    add_events(sessions)
    _train(sessions, settings)
    with sessions.begin() as session:  # after training: a customer the model never saw, with a return
        add_order(session, "new-after-training", ["85123A", "22423"], order_id="N-1")
        add_order(session, "new-after-training", ["22423"], order_id="N-2", kind="return")
    store = ModelStore(settings, sessions, background=False)
    data = store.current()
    with sessions() as session:
        customers = sorted({int(c) for c in load_interactions(session).customer_ids})
    groups = [[c] for c in customers] + [customers[i::9] for i in range(3)]

    def reload(few: bool) -> list[CustomerRows]:
        take_path(monkeypatch, few=few)
        data.fresh.clear()
        reloaded = []
        with sessions() as session:
            for group in groups:
                store._fresh.reload(session, data, group)
                reloaded.extend(data.fresh[c] for c in group)
        return reloaded

    few, general = reload(few=True), reload(few=False)
    assert len(few) == len(general) == sum(len(group) for group in groups)
    assert any(rows.user_idx == -1 for rows in few)  # the newcomer
    for a, b in zip(few, general, strict=True):
        assert a.same_as(b) and a.recalculate
        assert_same(a.row, b.row)


def _in_transaction(session: Session) -> bool:
    """Whether the database connection under ``session`` holds a transaction open now."""
    dbapi = session.connection().connection.dbapi_connection
    info = getattr(dbapi, "info", None)  # psycopg
    if info is not None and hasattr(info, "transaction_status"):
        return info.transaction_status.name != "IDLE"
    return bool(dbapi.in_transaction)  # type: ignore[union-attr]  # sqlite3


def test_a_written_customers_reload_holds_no_transaction(settings, sessions, imported, serving, monkeypatch):
    """The read after a write is one statement: on PostgreSQL a transaction around it cost a BEGIN and a
    ROLLBACK round trip, each write's next recommendation (SQLite begins none for a read either way)."""
    from domain.serving import kept_rows

    _train(sessions, settings)
    customer = _a_customer(serving.store)
    data = serving.store.current()
    cid = data.customers[customer]
    open_after_read: list[bool] = []

    def spied(session: Session, *args, **kwargs):  # type: ignore[no-untyped-def]
        rows = load_customer_rows(session, *args, **kwargs)
        open_after_read.append(_in_transaction(session))
        return rows

    monkeypatch.setattr(kept_rows, "load_customer_rows", spied)
    serving.store.customer_changed(cid)
    rows = serving.store.customer(data, cid)
    assert open_after_read == [False]
    assert rows.recalculate  # reloaded: the fresh rows, folded in
